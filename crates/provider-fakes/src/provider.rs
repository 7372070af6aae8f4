//! The four kinds of provider lucid reaches, as the CLI's and the server's
//! end-to-end tests address them: each vendor's `provider:model` name, what
//! its fake should be asked for, and how lucid is pointed at the fake.

use crate::anthropic::Anthropic;
use crate::gemini::Gemini;
use crate::openai::OpenAi;
use crate::{Fake, Fault, Recorded};

/// The variable the `compat:fake` endpoint's key is read from.
pub const COMPAT_KEY_VAR: &str = "LUCID_TEST_COMPAT_KEY";

/// Variables through which a test's own environment could hand lucid a key
/// or an endpoint; a test clears them.
pub const PROVIDER_VARS: &[&str] = &[
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "GEMINI_BASE_URL",
];

/// One vendor, or an OpenAI-compatible endpoint named `fake` in the
/// providers config.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Provider {
    OpenAi,
    Anthropic,
    Gemini,
    Compat,
}

impl Provider {
    /// The model name a user gives lucid.
    pub fn model(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai:gpt-4o-mini",
            Provider::Anthropic => "anthropic:claude-3-5-haiku-latest",
            Provider::Gemini => "gemini:gemini-1.5-flash",
            Provider::Compat => "compat:fake",
        }
    }

    /// The provider's name, as lucid's errors give it.
    pub fn provider(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
            Provider::Gemini => "gemini",
            Provider::Compat => "compat:fake",
        }
    }

    /// The model the vendor should be asked for (for `compat:fake`, the
    /// `model` of its config table).
    pub fn vendor_model(self) -> &'static str {
        match self {
            Provider::OpenAi => "gpt-4o-mini",
            Provider::Anthropic => "claude-3-5-haiku-latest",
            Provider::Gemini => "gemini-1.5-flash",
            Provider::Compat => "served/model-8B",
        }
    }

    /// The key and base-URL variables of the three vendors.
    pub fn env(self) -> Option<(&'static str, &'static str)> {
        match self {
            Provider::OpenAi => Some(("OPENAI_API_KEY", "OPENAI_BASE_URL")),
            Provider::Anthropic => Some(("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL")),
            Provider::Gemini => Some(("GEMINI_API_KEY", "GEMINI_BASE_URL")),
            Provider::Compat => None,
        }
    }

    /// What the vendor answers a wrong key with: Gemini's is a 400 with
    /// reason `API_KEY_INVALID`.
    pub fn rejection_status(self) -> u16 {
        if self == Provider::Gemini { 400 } else { 401 }
    }

    /// Starts this vendor's fake, answering normally.
    pub async fn start_fake(self) -> Fake {
        self.start_fake_with(vec![]).await
    }

    /// Starts this vendor's fake; each request takes the next of `faults`.
    pub async fn start_fake_with(self, faults: Vec<Fault>) -> Fake {
        match self {
            Provider::OpenAi => Fake::start(OpenAi::new(), faults).await,
            Provider::Anthropic => Fake::start(Anthropic, faults).await,
            Provider::Gemini => Fake::start(Gemini, faults).await,
            Provider::Compat => Fake::start(OpenAi::compat(true), faults).await,
        }
    }

    /// The `providers.toml` that names `fake` as `compat:fake` (empty for
    /// the three vendors, which are configured by their variables).
    pub fn config_toml(self, fake: &Fake) -> String {
        match self {
            Provider::Compat => format!(
                "[providers.compat.fake]\nbase_url = \"{}\"\napi_key_env = \"{COMPAT_KEY_VAR}\"\nmodel = \"{}\"\n",
                fake.base_url,
                self.vendor_model()
            ),
            _ => String::new(),
        }
    }

    /// The variables that point lucid at `fake` with `key`: the vendor's own,
    /// or the compat endpoint's key variable.
    pub fn env_vars(self, fake: &Fake, key: &str) -> Vec<(&'static str, String)> {
        match self.env() {
            Some((key_var, url_var)) => {
                vec![(key_var, key.to_owned()), (url_var, fake.base_url.clone())]
            }
            None => vec![(COMPAT_KEY_VAR, key.to_owned())],
        }
    }

    /// Checks that `req` went to this vendor's path for its model, asking
    /// for a stream or not as `stream` says.
    pub fn check_request(self, req: &Recorded, stream: bool) {
        assert_eq!(req.method, "POST");
        let model = self.vendor_model();
        match self {
            Provider::OpenAi | Provider::Compat | Provider::Anthropic => {
                let path = if self == Provider::Anthropic {
                    "/v1/messages"
                } else {
                    "/v1/chat/completions"
                };
                assert_eq!(req.path, path);
                assert_eq!(req.body["model"], model);
                assert_eq!(req.body["stream"].as_bool().unwrap_or(false), stream);
            }
            Provider::Gemini => {
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
