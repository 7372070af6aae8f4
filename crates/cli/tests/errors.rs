//! Errors that name the real problem: a path to nothing is a missing file
//! (not an unknown model), and a negative number given with a space reaches
//! the check that explains the range (not clap's `-- -1` tip).

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

/// Chat commands are handled by lucid, not sent to the model.
#[test]
fn chat_commands_are_handled_locally() {
    use std::io::Write;
    let home = tempfile::tempdir().unwrap();
    let mut child = lucid(home.path())
        .args(["run", "smollm2", "--threads", "2"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"/help\n/reset\n/frobnicate\n/bye\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("/reset  forget the conversation"),
        "{stderr}"
    );
    assert!(stderr.contains("(conversation cleared)"), "{stderr}");
    assert!(stderr.contains("unknown command /frobnicate"), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "the model answered a command: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
}
