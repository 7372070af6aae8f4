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
