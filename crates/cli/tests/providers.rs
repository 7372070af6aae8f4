//! `lucid run provider:model` through the built binary, against the
//! protocol-faithful vendor fakes of `lucid-provider-fakes` on loopback: for
//! OpenAI, Anthropic, Gemini and an OpenAI-compatible endpoint named in
//! `providers.toml`, a streamed answer, an answer in one piece (`--json`),
//! and a key the vendor rejects.
//!
//! The binary finds each fake the way a user points it at a self-hosted
//! endpoint: the vendor's `*_BASE_URL` and key variables, or the config file
//! for `compat:`. Every other provider variable is removed, so nothing from
//! the environment the tests run in can reach a real vendor.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

use lucid_provider_fakes::{
    Fake, KEY, PIECES, TEXT, WRONG_KEY, anthropic::Anthropic, gemini::Gemini, openai::OpenAi, words,
};
use serde_json::{Value, json};

/// The prompt every test sends.
const PROMPT: &str = "Say hello to the world";
/// The system message of the `--json` tests.
const SYSTEM: &str = "Be brief.";

/// Variables through which the tests' own environment could hand the binary
/// a key or an endpoint.
const PROVIDER_VARS: &[&str] = &[
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "GEMINI_BASE_URL",
];

/// The variable the `compat:fake` endpoint's key is read from.
const COMPAT_KEY_VAR: &str = "LUCID_TEST_COMPAT_KEY";

#[derive(Clone, Copy, PartialEq)]
enum Vendor {
    OpenAi,
    Anthropic,
    Gemini,
    Compat,
}

impl Vendor {
    /// The model string given to `lucid run`.
    fn model(self) -> &'static str {
        match self {
            Vendor::OpenAi => "openai:gpt-4o-mini",
            Vendor::Anthropic => "anthropic:claude-3-5-haiku-latest",
            Vendor::Gemini => "gemini:gemini-1.5-flash",
            Vendor::Compat => "compat:fake",
        }
    }

    /// The provider's name, as errors give it.
    fn provider(self) -> &'static str {
        match self {
            Vendor::OpenAi => "openai",
            Vendor::Anthropic => "anthropic",
            Vendor::Gemini => "gemini",
            Vendor::Compat => "compat:fake",
        }
    }

    /// The model the vendor should be asked for.
    fn vendor_model(self) -> &'static str {
        match self {
            Vendor::OpenAi => "gpt-4o-mini",
            Vendor::Anthropic => "claude-3-5-haiku-latest",
            Vendor::Gemini => "gemini-1.5-flash",
            // `model` in the config file's `[providers.compat.fake]`.
            Vendor::Compat => "served/model-8B",
        }
    }

    /// The key and base-URL variables, for the three vendors.
    fn env(self) -> Option<(&'static str, &'static str)> {
        match self {
            Vendor::OpenAi => Some(("OPENAI_API_KEY", "OPENAI_BASE_URL")),
            Vendor::Anthropic => Some(("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL")),
            Vendor::Gemini => Some(("GEMINI_API_KEY", "GEMINI_BASE_URL")),
            Vendor::Compat => None,
        }
    }

    /// What the vendor answers a wrong key with: Gemini's is a 400 with
    /// reason `API_KEY_INVALID`.
    fn rejection_status(self) -> u16 {
        if self == Vendor::Gemini { 400 } else { 401 }
    }
}

/// A fake vendor on its own runtime, and a home directory for the binary.
struct Setup {
    vendor: Vendor,
    // Declared before the runtime, so that it is dropped first.
    fake: Fake,
    _runtime: tokio::runtime::Runtime,
    home: tempfile::TempDir,
}

impl Setup {
    fn start(vendor: Vendor) -> Setup {
        // One worker serves the fake while the test thread waits for the binary.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let fake = runtime.block_on(async {
            match vendor {
                Vendor::OpenAi => Fake::start(OpenAi::new(), vec![]).await,
                Vendor::Anthropic => Fake::start(Anthropic, vec![]).await,
                Vendor::Gemini => Fake::start(Gemini, vec![]).await,
                Vendor::Compat => Fake::start(OpenAi::compat(true), vec![]).await,
            }
        });
        let home = tempfile::tempdir().unwrap();
        let config_dir = home.path().join("config/lucid");
        std::fs::create_dir_all(&config_dir).unwrap();
        if vendor == Vendor::Compat {
            std::fs::write(
                config_dir.join("providers.toml"),
                format!(
                    "[providers.compat.fake]\nbase_url = \"{}\"\napi_key_env = \"{COMPAT_KEY_VAR}\"\nmodel = \"{}\"\n",
                    fake.base_url,
                    vendor.vendor_model()
                ),
            )
            .unwrap();
        }
        Setup {
            vendor,
            fake,
            _runtime: runtime,
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
        match self.vendor.env() {
            Some((key_var, url_var)) => cmd.env(key_var, key).env(url_var, &self.fake.base_url),
            None => cmd.env(COMPAT_KEY_VAR, key),
        };
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

    /// Checks that the fake saw one request, to the vendor's path for `model`,
    /// asking for a stream or not as `stream` says.
    fn saw_one_request(&self, stream: bool) {
        let mut requests = self.fake.requests();
        assert_eq!(requests.len(), 1, "{requests:#?}");
        let req = requests.remove(0);
        assert_eq!(req.method, "POST");
        let model = self.vendor.vendor_model();
        match self.vendor {
            Vendor::OpenAi | Vendor::Compat => {
                assert_eq!(req.path, "/v1/chat/completions");
                assert_eq!(req.body["model"], model);
                assert_eq!(req.body["stream"].as_bool().unwrap_or(false), stream);
            }
            Vendor::Anthropic => {
                assert_eq!(req.path, "/v1/messages");
                assert_eq!(req.body["model"], model);
                assert_eq!(req.body["stream"].as_bool().unwrap_or(false), stream);
            }
            Vendor::Gemini => {
                let method = if stream {
                    "streamGenerateContent"
                } else {
                    "generateContent"
                };
                assert_eq!(req.path, format!("/v1beta/models/{model}:{method}"));
            }
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Without `--json` the answer streams to stdout, and only the answer.
fn streams_the_answer(vendor: Vendor) {
    let setup = Setup::start(vendor);
    let out = setup.run(KEY, &[], None);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout, format!("{TEXT}\n"), "stderr: {stderr}");
    setup.saw_one_request(true);
}

/// `--json` asks for the answer in one request that does not stream and
/// prints it with the finish reason and the usage the vendor reported.
fn json_is_one_plain_request(vendor: Vendor) {
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
fn a_rejected_key_names_the_provider(vendor: Vendor) {
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

/// The same three tests for each vendor, in a module named after it, so that
/// a failure says which (`gemini::streams_the_answer`).
macro_rules! vendor_tests {
    ($($module:ident: $vendor:ident),* $(,)?) => {$(
        mod $module {
            use super::Vendor;

            #[test]
            fn streams_the_answer() {
                super::streams_the_answer(Vendor::$vendor);
            }

            #[test]
            fn json_is_one_plain_request() {
                super::json_is_one_plain_request(Vendor::$vendor);
            }

            #[test]
            fn a_rejected_key_names_the_provider() {
                super::a_rejected_key_names_the_provider(Vendor::$vendor);
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
    let setup = Setup::start(Vendor::Compat);
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
