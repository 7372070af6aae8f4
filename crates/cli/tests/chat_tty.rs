//! The interactive chat at a real terminal, driven through tmux as a person
//! would type: Ctrl-C stops a reply and the chat goes on, slash commands
//! answer locally, Ctrl-C twice at the prompt leaves with status 130, and
//! what was typed comes back with the up arrow in the next chat.
//!
//! Needs `tmux` (scripts/test.sh installs it where it is missing).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models")
}

/// A tmux server of its own (`-L`), so the test never touches a user's.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Runs `lucid ARGS` with `home` as its `$LUCID_HOME`.
    fn start(home: &Path, args: &str) -> Tmux {
        static SESSIONS: AtomicUsize = AtomicUsize::new(0);
        let socket = format!(
            "lucid-test-{}-{}",
            std::process::id(),
            SESSIONS.fetch_add(1, Ordering::SeqCst)
        );
        let command = format!(
            "env LUCID_HOME={} LUCID_LOCAL_MODELS={} HF_ENDPOINT=http://127.0.0.1:9 \
             LUCID_PYPI_URL=http://127.0.0.1:9/pypi {} {args}; echo EXITED $?; sleep 60",
            home.display(),
            models_dir().display(),
            env!("CARGO_BIN_EXE_lucid"),
        );
        let tmux = Tmux { socket };
        let out = tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "chat",
            "-x",
            "200",
            "-y",
            "50",
            &command,
        ]);
        assert!(
            out.status.success(),
            "tmux could not start (is it installed?): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tmux
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("running tmux (scripts/test.sh installs it)")
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "chat"];
        args.extend_from_slice(keys);
        assert!(self.run(&args).status.success());
    }

    /// Types `line` and presses Enter.
    fn line(&self, line: &str) {
        self.keys(&["-l", line]);
        self.keys(&["Enter"]);
    }

    /// The whole pane, scroll-back included.
    fn screen(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-J", "-S", "-", "-t", "chat"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until `done` holds for the screen, and returns it.
    fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "waited 120 s for {what}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

fn prompts(screen: &str) -> usize {
    screen.matches(">>> ").count()
}

#[test]
fn ctrl_c_stops_the_reply_and_the_chat_goes_on() {
    let home = tempfile::tempdir().unwrap();
    let tmux = Tmux::start(
        home.path(),
        "run smollm2 --threads 2 --temperature 0 --max-tokens 2000",
    );
    tmux.wait_for("the first prompt", |s| {
        s.contains("Chatting with SmolLM2 135M Instruct") && prompts(s) == 1
    });

    // A reply long enough to be stopped: Ctrl-C once it has begun.
    tmux.line("Write a long story about a dragon and a knight.");
    tmux.wait_for("the reply to begin", |s| {
        s.split("a dragon and a knight.")
            .nth(1)
            .is_some_and(|reply| reply.trim().len() >= 40)
    });
    tmux.keys(&["C-c"]);
    let screen = tmux.wait_for("the reply to stop", |s| {
        s.contains("(reply stopped)") && prompts(s) == 2
    });
    assert!(
        !screen.contains("EXITED"),
        "Ctrl-C left the chat:\n{screen}"
    );

    // Commands answer locally.
    tmux.line("/system");
    tmux.wait_for("the system message", |s| {
        s.contains("You are a helpful AI assistant.") && prompts(s) == 3
    });
    tmux.line("/set temperature hot");
    tmux.wait_for("a refused setting", |s| {
        s.contains("temperature takes a number, not \"hot\"") && prompts(s) == 4
    });

    // The chat goes on: a new question gets its answer.
    tmux.line("/reset");
    tmux.wait_for("the reset", |s| {
        s.contains("(conversation cleared)") && prompts(s) == 5
    });
    tmux.line("What is the capital of France?");
    let screen = tmux.wait_for("the answer", |s| prompts(s) == 6);
    let answer = screen
        .rsplit("What is the capital of France?")
        .next()
        .unwrap();
    assert!(answer.contains("Paris"), "{screen}");

    // Ctrl-C at the prompt says how to leave; a second one leaves.
    tmux.keys(&["C-c"]);
    tmux.wait_for("the hint", |s| {
        s.contains("(Ctrl-C again, /bye or Ctrl-D leaves)")
    });
    tmux.keys(&["C-c"]);
    let screen = tmux.wait_for("the exit", |s| s.contains("EXITED"));
    assert!(screen.contains("EXITED 130"), "{screen}");
}

#[test]
fn the_up_arrow_brings_back_a_line_from_an_earlier_chat() {
    let home = tempfile::tempdir().unwrap();
    let first = Tmux::start(home.path(), "run smollm2");
    first.wait_for("the first prompt", |s| prompts(s) == 1);
    first.line("/set temperature 0.25");
    first.wait_for("the setting", |s| s.contains("(temperature = 0.25)"));
    first.line("/bye");
    first.wait_for("the exit", |s| s.contains("EXITED 0"));
    drop(first);
    let history = std::fs::read_to_string(home.path().join("history")).unwrap();
    assert!(history.contains("/set temperature 0.25"), "{history}");

    // A new chat: the up arrow twice (past `/bye`) and Enter run the same
    // line again.
    let second = Tmux::start(home.path(), "run smollm2");
    second.wait_for("the first prompt", |s| prompts(s) == 1);
    second.keys(&["Up"]);
    second.wait_for("the last line", |s| s.contains(">>> /bye"));
    second.keys(&["Up"]);
    second.wait_for("the recalled line", |s| {
        s.contains(">>> /set temperature 0.25")
    });
    second.keys(&["Enter"]);
    second.wait_for("the setting again", |s| s.contains("(temperature = 0.25)"));
    second.line("/bye");
    second.wait_for("the exit", |s| s.contains("EXITED 0"));
}
