//! Errors that name the real problem: a path to nothing is a missing file
//! (not an unknown model), and a negative number given with a space reaches
//! the check that explains the range (not clap's `-- -1` tip). And output
//! that shows what was asked for: control tokens only with `--show-special`.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

fn lucid(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lucid"));
    cmd.env("LUCID_HOME", home)
        .env(
            "LUCID_LOCAL_MODELS",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models"),
        )
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .env("LUCID_PYPI_URL", "http://127.0.0.1:9/pypi")
        .env("RUST_BACKTRACE", "0")
        .env("NO_COLOR", "1");
    cmd
}

fn fails_saying(cmd: &mut Command, expected: &str) {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "succeeded: {stderr}");
    assert!(stderr.contains(expected), "{stderr}");
}

#[test]
fn a_missing_file_and_a_negative_temperature_are_named() {
    let home = tempfile::tempdir().unwrap();
    fails_saying(
        lucid(home.path()).args(["run", "./nope.gguf", "hi"]),
        "no such file or directory: ./nope.gguf",
    );
    fails_saying(
        lucid(home.path()).args([
            "run",
            "smollm2",
            "hi",
            "--temperature",
            "-1",
            "--threads",
            "2",
        ]),
        "temperature must be a number >= 0, not -1",
    );
}

/// Log lines written to a pipe carry no colour codes.
#[test]
fn logs_to_a_pipe_are_plain_text() {
    let home = tempfile::tempdir().unwrap();
    let out = lucid(home.path())
        .args(["pull", "smollm2"])
        .env("LUCID_LOCAL_MODELS", home.path().join("no-mirror"))
        .env("LUCID_LOG", "info")
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("INFO"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "escape codes in piped logs: {stderr:?}"
    );
}

/// `lucid models` says why a model is not pullable and what to do instead.
#[test]
fn models_not_pullable_are_explained() {
    let home = tempfile::tempdir().unwrap();
    let out = lucid(home.path()).arg("models").output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let rows = stdout.matches("no (not pullable*)").count();
    assert!(rows > 0, "{stdout}");
    assert!(
        stderr.contains(&format!(
            "* {rows} models are not pullable: the catalog records the publisher's release"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("give lucid its path"), "{stderr}");
}

/// Chatting with a base model warns once that `--raw` is what it was
/// trained for; the catalog's display name replaces the file's mangled one.
#[test]
fn a_chat_with_a_base_model_warns() {
    let home = tempfile::tempdir().unwrap();
    let out = lucid(home.path())
        .args(["run", "gemma3", "--threads", "2", "--max-tokens", "1", "hi"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr
            .matches("lucid: Gemma 3 270M is a base (pre-trained) model, not trained to chat")
            .count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("--raw completes a text"), "{stderr}");
    let out = lucid(home.path())
        .args([
            "run",
            "gemma3",
            "--raw",
            "--threads",
            "2",
            "--max-tokens",
            "1",
            "hi",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("base"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = lucid(home.path())
        .args([
            "run",
            "smollm2",
            "--threads",
            "2",
            "--max-tokens",
            "1",
            "hi",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("base"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A reply cut by a full context says so on stderr.
#[test]
fn a_full_context_is_reported() {
    let home = tempfile::tempdir().unwrap();
    let out = lucid(home.path())
        .args(["run", "smollm2", "Write a long story.", "--ctx-size", "60"])
        .args(["--temperature", "0", "--threads", "2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("the context of 60 tokens is full"),
        "{stderr}"
    );
}

/// Chat commands are handled by lucid, not sent to the model: each says
/// what it did, a bad one says why, and a saved conversation loads back.
#[test]
fn chat_commands_are_handled_locally() {
    use std::io::Write;
    let home = tempfile::tempdir().unwrap();
    let saved = home.path().join("chat.json");
    let mut child = lucid(home.path())
        .args(["run", "smollm2", "--threads", "2"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let commands = format!(
        "/help\n/reset\n/frobnicate\n/set\n/set temperature -1\n/set top_k 7\n/set\n\
         /system Answer in one word.\n/system\n/save {0}\n/reset\n/load {0}\n/load /nonexistent/chat.json\n/bye\n",
        saved.display()
    );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(commands.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for expected in [
        "forget the conversation (the system message stays)",
        "(conversation cleared)",
        "unknown command /frobnicate; /help lists them",
        // /set shows the catalog's defaults for SmolLM2, then the change.
        "temperature 0.2\ntop_p 0.9\ntop_k 40",
        "temperature must be a number >= 0, not -1",
        "(top_k = 7)",
        "temperature 0.2\ntop_p 0.9\ntop_k 7",
        "(system message set)",
        "Answer in one word.\n",
        ": 1 message)",
        "cannot read /nonexistent/chat.json",
    ] {
        assert!(stderr.contains(expected), "no {expected:?} in:\n{stderr}");
    }
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert_eq!(
        saved,
        serde_json::json!({"messages": [{"role": "system", "content": "Answer in one word."}]})
    );
    assert!(
        out.stdout.is_empty(),
        "the model answered a command: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Control tokens stay out of `--raw` output unless `--show-special` asks
/// for them: SmolLM2 past its end of turn (`--ignore-eos`) writes
/// `<|im_end|>` and the next `<|im_start|>`.
#[test]
fn control_tokens_are_shown_only_when_asked() {
    let home = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        let out = lucid(home.path())
            .args([
                "run",
                "smollm2",
                "--raw",
                "--ignore-eos",
                "--temperature",
                "0",
                "--max-tokens",
                "40",
                "--threads",
                "2",
                "--json",
                "<|im_start|>user\nSay hi.<|im_end|>\n<|im_start|>assistant\n",
            ])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let plain = run(&[]);
    let special = run(&["--show-special"]);
    // The same tokens either way; only the text differs.
    assert_eq!(plain["tokens"], special["tokens"]);
    let (plain, special) = (
        plain["text"].as_str().unwrap(),
        special["text"].as_str().unwrap(),
    );
    assert!(special.contains("<|im_end|>"), "{special:?}");
    assert!(!plain.contains("<|im_"), "{plain:?}");
    assert_eq!(
        special
            .replace("<|im_end|>", "")
            .replace("<|im_start|>", ""),
        plain
    );
}

/// `lucid ps` with no server to ask says so and how to start one.
#[test]
fn ps_without_a_server_says_so() {
    let home = tempfile::tempdir().unwrap();
    fails_saying(
        lucid(home.path()).args(["ps", "--host", "127.0.0.1:9"]),
        "no lucid server answers at http://127.0.0.1:9",
    );
}

/// Gemma 3's image markers, which its base model writes after "a photo:",
/// stay out of `--raw` output as control tokens do, unless `--show-special`
/// asks for them.
#[test]
fn image_markers_are_shown_only_when_asked() {
    let home = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        let out = lucid(home.path())
            .args([
                "run",
                "gemma3",
                "--raw",
                "--temperature",
                "0",
                "--max-tokens",
                "8",
                "--threads",
                "2",
                "--json",
                "Here is a photo of my cat:",
            ])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let plain = run(&[]);
    let special = run(&["--show-special"]);
    assert_eq!(plain["tokens"], special["tokens"]);
    let (plain, special) = (
        plain["text"].as_str().unwrap(),
        special["text"].as_str().unwrap(),
    );
    assert!(special.contains("<start_of_image>"), "{special:?}");
    assert!(!plain.contains("_of_image>"), "{plain:?}");
}

/// A model that does not fit in the memory available is refused before it
/// loads, naming both amounts; `lucid show` says what a context needs.
#[test]
fn a_model_larger_than_the_memory_is_refused_and_show_sizes_a_context() {
    let home = tempfile::tempdir().unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let size = std::fs::metadata(&model).unwrap().len();
    let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1 << 20) as f64);
    fails_saying(
        lucid(home.path())
            .arg("run")
            .arg(&model)
            .arg("hi")
            .env("LUCID_MEMORY_LIMIT", "50MiB"),
        &format!("needs {} of memory, but 50.0 MiB is available", mib(size)),
    );
    fails_saying(
        lucid(home.path())
            .arg("run")
            .arg(&model)
            .arg("hi")
            .env("LUCID_MEMORY_LIMIT", "lots"),
        "LUCID_MEMORY_LIMIT: 'lots' is not a size",
    );
    // Told to plan with enough, or not to check, it runs.
    for limit in ["1GiB", "none"] {
        let out = lucid(home.path())
            .arg("run")
            .arg(&model)
            .args(["hi", "--max-tokens", "2", "--threads", "2"])
            .env("LUCID_MEMORY_LIMIT", limit)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{limit}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // SmolLM2: 30 layers, 3 key/value heads of 64, in f16: 22.5 KiB a token.
    let out = lucid(home.path())
        .arg("show")
        .arg(&model)
        .args(["--ctx-size", "1024"])
        .env("LUCID_MEMORY_LIMIT", "2GiB")
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    let per_token = 30 * 2 * 3 * 64 * 2;
    let expected = format!(
        "memory                {} ({} weights + 22.5 MiB KV cache for 1024 tokens); 2.0 GiB available",
        mib(size + 1024 * per_token),
        mib(size)
    );
    assert!(shown.contains(&expected), "{shown}\nwants: {expected}");
}
