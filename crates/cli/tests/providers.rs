//! `lucid run provider:model` and `lucid serve` through the built binary,
//! against the protocol-faithful vendor fakes of `lucid-provider-fakes` on
//! loopback: for OpenAI, Anthropic, Gemini and an OpenAI-compatible endpoint
//! named in `providers.toml`, a streamed answer, an answer in one piece
//! (`--json`), a key the vendor rejects, and the same model served over
//! `/v1/chat/completions`.
//!
//! The binary finds each fake the way a user points it at a self-hosted
//! endpoint: the vendor's `*_BASE_URL` and key variables, or the config file
//! for `compat:`. Every other provider variable is removed, so nothing from
//! the environment the tests run in can reach a real vendor.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use lucid_provider_fakes::{
    Fake, Fault, KEY, PIECES, PROVIDER_VARS, Provider, TEXT, WRONG_KEY, words,
};
use serde_json::{Value, json};

/// The prompt every test sends.
const PROMPT: &str = "Say hello to the world";
/// The system message of the `--json` tests.
const SYSTEM: &str = "Be brief.";

/// A fake vendor on its own runtime, and a home directory for the binary.
struct Setup {
    vendor: Provider,
    // Declared before the runtime, so that it is dropped first.
    fake: Fake,
    runtime: tokio::runtime::Runtime,
    home: tempfile::TempDir,
}

impl Setup {
    fn start(vendor: Provider) -> Setup {
        Setup::start_with(vendor, vec![])
    }

    /// A fake whose requests take `faults` in turn.
    fn start_with(vendor: Provider, faults: Vec<Fault>) -> Setup {
        // One worker serves the fake while the test thread waits for the binary.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let fake = runtime.block_on(vendor.start_fake_with(faults));
        let home = tempfile::tempdir().unwrap();
        let config_dir = home.path().join("config/lucid");
        std::fs::create_dir_all(&config_dir).unwrap();
        std::fs::write(config_dir.join("providers.toml"), vendor.config_toml(&fake)).unwrap();
        Setup {
            vendor,
            fake,
            runtime,
            home,
        }
    }

    /// `lucid` with a home of its own, `key` as the provider's key, the
    /// fake as its endpoint, and `log` as `LUCID_LOG`.
    fn lucid(&self, key: &str, log: Option<&str>) -> Command {
        let home = self.home.path();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lucid"));
        cmd.env("HOME", home)
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("LUCID_HOME", home.join("lucid"))
            .env_remove("LUCID_LOCAL_MODELS")
            // A proxy from the environment must not stand between the
            // binary and the fake.
            .env("NO_PROXY", "127.0.0.1");
        for var in PROVIDER_VARS {
            cmd.env_remove(var);
        }
        match log {
            Some(filter) => cmd.env("LUCID_LOG", filter),
            None => cmd.env_remove("LUCID_LOG"),
        };
        cmd.envs(self.vendor.env_vars(&self.fake, key));
        cmd
    }

    /// `lucid run MODEL [args] PROMPT`.
    fn run(&self, key: &str, args: &[&str], log: Option<&str>) -> Output {
        self.lucid(key, log)
            .arg("run")
            .arg(self.vendor.model())
            .args(args)
            .arg(PROMPT)
            .output()
            .unwrap()
    }

    /// Checks that the fake saw one request, to the vendor's path for its
    /// model, asking for a stream or not as `stream` says.
    fn saw_one_request(&self, stream: bool) {
        let requests = self.fake.requests();
        assert_eq!(requests.len(), 1, "{requests:#?}");
        self.vendor.check_request(&requests[0], stream);
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Without `--json` the answer streams to stdout, and only the answer.
fn streams_the_answer(vendor: Provider) {
    let setup = Setup::start(vendor);
    let out = setup.run(KEY, &[], None);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout, format!("{TEXT}\n"), "stderr: {stderr}");
    setup.saw_one_request(true);
}

/// A reader that stops reading (`lucid run … | head`) ends the run quietly
/// and the vendor sees the connection close, for an answer that would
/// otherwise never end.
fn a_closed_stdout_cancels_the_request(vendor: Provider) {
    let setup = Setup::start_with(vendor, vec![Fault::Endless]);
    let mut child = setup
        .lucid(KEY, None)
        .arg("run")
        .arg(vendor.model())
        .arg(PROMPT)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 8];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("lucid kept running after its reader went away");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = common::stderr_of(&mut child);
    assert!(status.success(), "{status}: {stderr}");
    assert!(
        setup
            .runtime
            .block_on(setup.fake.wait_client_gone(Duration::from_secs(5))),
        "the vendor never saw the connection close"
    );
}

/// `--json` asks for the answer in one request that does not stream and
/// prints it with the finish reason and the usage the vendor reported.
fn json_is_one_plain_request(vendor: Provider) {
    let setup = Setup::start(vendor);
    let out = setup.run(KEY, &["--json", "--system", SYSTEM], None);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(
        v,
        json!({
            "model": vendor.model(),
            "text": TEXT,
            "finish_reason": "stop",
            // The fakes count words; the system message reached the vendor.
            "usage": {
                "prompt_tokens": words(SYSTEM) + words(PROMPT),
                "completion_tokens": PIECES.len(),
            },
        })
    );
    setup.saw_one_request(false);
}

/// A wrong key fails with the provider and the status on stderr, and the key
/// appears nowhere, not even in the most verbose logs.
fn a_rejected_key_names_the_provider(vendor: Provider) {
    let setup = Setup::start(vendor);
    let out = setup.run(WRONG_KEY, &[], Some("trace"));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout, "", "stderr: {stderr}");
    let expected = format!(
        "{}: unauthorized (HTTP {})",
        vendor.provider(),
        vendor.rejection_status()
    );
    assert!(stderr.contains(&expected), "no `{expected}` in:\n{stderr}");
    // The logs were on, so the check below has something to look at.
    assert!(stderr.contains("sending request"), "{stderr}");
    for key in [KEY, WRONG_KEY] {
        assert!(!stderr.contains(key), "a key on stderr:\n{stderr}");
    }
    // A rejected key is not retried.
    setup.saw_one_request(true);
}

/// `lucid serve` with no local model answers `provider:model` on the OpenAI
/// route, in one piece and streamed, through the provider the environment
/// (or, for `compat:`, the default config file) configures.
fn serves_the_provider(vendor: Provider) {
    let setup = Setup::start(vendor);
    let server = common::Server::start(setup.lucid(KEY, None), &[]);
    let request = json!({
        "model": vendor.model(),
        "messages": [{"role": "user", "content": PROMPT}],
    });
    let (status, body) = server.chat(request.clone());
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["choices"][0]["message"]["content"], TEXT, "{body}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{body}");

    let mut streamed = request;
    streamed["stream"] = json!(true);
    let (status, body) = server.chat(streamed);
    assert_eq!(status, 200, "{body}");
    let events: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(events.last(), Some(&"[DONE]"), "{body}");
    let answer: String = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str::<Value>(e).unwrap())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(String::from)
        })
        .collect();
    assert_eq!(answer, TEXT, "{body}");
    let requests = setup.fake.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    setup.vendor.check_request(&requests[0], false);
    setup.vendor.check_request(&requests[1], true);
}

/// The same tests for each vendor, in a module named after it, so that
/// a failure says which (`gemini::streams_the_answer`).
macro_rules! vendor_tests {
    ($($module:ident: $vendor:ident),* $(,)?) => {$(
        mod $module {
            use super::Provider;

            #[test]
            fn streams_the_answer() {
                super::streams_the_answer(Provider::$vendor);
            }

            #[test]
            fn json_is_one_plain_request() {
                super::json_is_one_plain_request(Provider::$vendor);
            }

            #[test]
            fn a_rejected_key_names_the_provider() {
                super::a_rejected_key_names_the_provider(Provider::$vendor);
            }

            #[test]
            fn a_closed_stdout_cancels_the_request() {
                super::a_closed_stdout_cancels_the_request(Provider::$vendor);
            }

            #[test]
            fn serves_the_provider() {
                super::serves_the_provider(Provider::$vendor);
            }
        }
    )*};
}

vendor_tests! {
    openai: OpenAi,
    anthropic: Anthropic,
    gemini: Gemini,
    compat: Compat,
}

/// `compat:NAME:MODEL` asks the endpoint for that model instead of the
/// config file's default.
#[test]
fn compat_model_in_the_name_wins_over_the_config() {
    let setup = Setup::start(Provider::Compat);
    let out = setup
        .lucid(KEY, None)
        .args(["run", "compat:fake:other/model", PROMPT])
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout, format!("{TEXT}\n"));
    let requests = setup.fake.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].body["model"], "other/model");
}

/// `lucid serve --providers-config FILE` reads the endpoints from that file
/// instead of the default one, which here does not exist.
#[test]
fn serve_reads_the_named_providers_config() {
    let setup = Setup::start(Provider::Compat);
    let default = setup.home.path().join("config/lucid/providers.toml");
    let elsewhere = setup.home.path().join("endpoints.toml");
    std::fs::rename(&default, &elsewhere).unwrap();
    let server = common::Server::start(
        setup.lucid(KEY, None),
        &["--providers-config", elsewhere.to_str().unwrap()],
    );
    let (status, body) = server.chat(json!({
        "model": Provider::Compat.model(),
        "messages": [{"role": "user", "content": PROMPT}],
    }));
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], TEXT, "{body}");
}
