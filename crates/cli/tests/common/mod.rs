//! Helpers shared by the CLI's test files.

// Each test file uses some of these.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// Everything a child started with a piped stderr wrote there.
pub fn stderr_of(child: &mut Child) -> String {
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_string(&mut stderr)
            .expect("reading the child's stderr");
    }
    stderr
}

/// A running `lucid serve`, killed when dropped.
pub struct Server {
    child: Child,
    /// Where it listens (`http://127.0.0.1:PORT`).
    pub base: String,
    pub client: reqwest::blocking::Client,
}

impl Server {
    /// Starts `cmd` (a `lucid` command) as `serve --port 0 [args]` and waits
    /// for the line that says where it listens.
    pub fn start(mut cmd: Command, args: &[&str]) -> Server {
        let mut child = cmd
            .args(["serve", "--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Some((_, addr)) = line.trim().rsplit_once(" on ") else {
            let _ = child.kill();
            panic!("lucid serve did not say where it listens: {line:?}");
        };
        let client = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        Server {
            child,
            base: addr.to_string(),
            client,
        }
    }

    /// `POST /v1/chat/completions` with `body`; the status and the body.
    pub fn chat(&self, body: Value) -> (u16, String) {
        let response = self
            .client
            .post(format!("{}/v1/chat/completions", self.base))
            .json(&body)
            .send()
            .unwrap();
        (response.status().as_u16(), response.text().unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
