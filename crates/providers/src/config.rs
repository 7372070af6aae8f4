//! Provider configuration: the TOML config file, the conventional environment
//! variables, and the settings each adapter is built from.
//!
//! Precedence, for each provider: a key comes from the environment variable
//! (`api_key_env`, else the vendor's conventional one) and, if that is unset,
//! from `api_key` in the file; a base URL comes from the vendor's
//! `*_BASE_URL` variable, else `base_url` in the file, else the vendor's
//! public endpoint. Keys are held as [`Secret`] from the moment they are read,
//! so `{:?}` of a [`Config`] never shows one, and TOML errors are reported
//! without the offending line, which could hold a key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::{RetryPolicy, Secret};

/// Default time to open a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time to wait for a response, or between two chunks of a stream.
/// Generous, because a non-streamed answer arrives only when it is complete.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(300);

/// What an adapter needs to reach its vendor.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSettings {
    /// The root that the vendor's paths are appended to:
    /// `https://api.openai.com/v1`, `https://api.anthropic.com`,
    /// `https://generativelanguage.googleapis.com/v1beta`.
    pub base_url: String,
    /// The key, if one was found.
    pub api_key: Option<Secret>,
    /// Where a key was looked for, named in
    /// [`ProviderError::MissingApiKey`](crate::ProviderError::MissingApiKey);
    /// `None` uses the vendor's conventional variable.
    pub api_key_env: Option<String>,
    /// Time to open a connection.
    pub connect_timeout: Duration,
    /// Time to wait for a response, or between two chunks of a stream.
    pub read_timeout: Duration,
}

impl HttpSettings {
    /// Settings for `base_url` with no key and the default timeouts.
    pub fn new(base_url: impl Into<String>) -> Self {
        HttpSettings {
            base_url: base_url.into(),
            api_key: None,
            api_key_env: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
        }
    }

    /// With a key.
    pub fn with_api_key(mut self, key: Secret) -> Self {
        self.api_key = Some(key);
        self
    }

    /// With both timeouts.
    pub fn with_timeouts(mut self, connect: Duration, read: Duration) -> Self {
        self.connect_timeout = connect;
        self.read_timeout = read;
        self
    }
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read.
    #[error("cannot read providers config {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has unknown or mistyped fields.
    #[error("invalid providers config{}: {message}", InPath(path.as_deref()))]
    Parse {
        /// The file, if the config came from one.
        path: Option<PathBuf>,
        /// What is wrong and where (line and column), without quoting the line.
        message: String,
    },
    /// The config parses but does not make sense.
    #[error("invalid providers config{}: {message}", InPath(path.as_deref()))]
    Invalid {
        /// The file, if the config came from one.
        path: Option<PathBuf>,
        /// What is wrong.
        message: String,
    },
    /// A base URL is not an http(s) URL.
    #[error("{provider}: invalid base URL `{url}`: {reason}")]
    InvalidBaseUrl {
        /// The provider.
        provider: String,
        /// The URL given.
        url: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A key cannot be put into an HTTP header (a newline, say).
    #[error("{provider}: the API key contains characters that cannot be sent in an HTTP header")]
    InvalidApiKey {
        /// The provider.
        provider: String,
    },
    /// The HTTP client cannot be built (TLS initialisation failed).
    #[error("{provider}: cannot build the HTTP client: {detail}")]
    HttpClient {
        /// The provider.
        provider: String,
        /// Why.
        detail: String,
    },
}

struct InPath<'a>(Option<&'a Path>);

impl fmt::Display for InPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(p) => write!(f, " {}", p.display()),
            None => Ok(()),
        }
    }
}

/// The providers config file.
///
/// ```toml
/// [defaults]
/// connect_timeout_secs = 10
/// read_timeout_secs = 300
/// max_retries = 2
///
/// [providers.openai]
/// api_key_env = "OPENAI_API_KEY"
/// fallbacks = ["anthropic:claude-3-5-haiku-latest"]
///
/// [providers.compat.uni]
/// base_url = "https://llm.example.edu/v1"
/// api_key_env = "UNI_LLM_KEY"
/// model = "meta-llama/Llama-3.1-8B-Instruct"
///
/// [fallbacks]
/// "gemini:gemini-1.5-flash" = ["openai:gpt-4o-mini"]
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Timeouts and retries for every provider that does not set its own.
    #[serde(default)]
    pub defaults: Tuning,
    /// Per-provider settings.
    #[serde(default)]
    pub providers: Providers,
    /// Fallback models per model string; these win over a provider's own
    /// `fallbacks`.
    #[serde(default)]
    pub fallbacks: BTreeMap<String, Vec<String>>,
}

/// Timeouts and retries.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tuning {
    /// Seconds to open a connection.
    pub connect_timeout_secs: Option<f64>,
    /// Seconds to wait for a response, or between two chunks of a stream.
    pub read_timeout_secs: Option<f64>,
    /// Retries after the first attempt.
    pub max_retries: Option<u32>,
    /// Milliseconds before the first retry (doubling after).
    pub initial_backoff_ms: Option<u64>,
    /// The longest backoff, in milliseconds.
    pub max_backoff_ms: Option<u64>,
    /// The longest `Retry-After` to honour, in seconds; longer means give up.
    pub max_retry_after_secs: Option<f64>,
}

/// The `[providers]` table.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Providers {
    /// `[providers.openai]`
    pub openai: Option<ProviderConfig>,
    /// `[providers.anthropic]`
    pub anthropic: Option<ProviderConfig>,
    /// `[providers.gemini]`
    pub gemini: Option<ProviderConfig>,
    /// `[providers.compat.NAME]`, reached as `compat:NAME`.
    #[serde(default)]
    pub compat: BTreeMap<String, ProviderConfig>,
}

/// One provider's table.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The root the vendor's paths are appended to (required for `compat`).
    pub base_url: Option<String>,
    /// The environment variable holding the key.
    pub api_key_env: Option<String>,
    /// The key itself (prefer `api_key_env`: a file is easier to leak).
    pub api_key: Option<Secret>,
    /// Seconds to open a connection.
    pub connect_timeout_secs: Option<f64>,
    /// Seconds to wait for a response, or between two chunks of a stream.
    pub read_timeout_secs: Option<f64>,
    /// Retries after the first attempt.
    pub max_retries: Option<u32>,
    /// Milliseconds before the first retry (doubling after).
    pub initial_backoff_ms: Option<u64>,
    /// The longest backoff, in milliseconds.
    pub max_backoff_ms: Option<u64>,
    /// The longest `Retry-After` to honour, in seconds.
    pub max_retry_after_secs: Option<f64>,
    /// Models to try, in order, when one of this provider's models fails.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// `compat` only: the model asked for when the string is just `compat:NAME`.
    pub model: Option<String>,
    /// `anthropic` only: the `anthropic-version` header.
    pub anthropic_version: Option<String>,
    /// `anthropic` only: `max_tokens` when the request sets none (the
    /// Messages API requires one).
    pub default_max_tokens: Option<u32>,
}

impl Config {
    /// Reads and parses a config file.
    pub fn from_path(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, Some(path))
    }

    /// Parses config text.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, None)
    }

    fn parse(text: &str, path: Option<&Path>) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| {
            // `toml`'s Display quotes the offending line, which may hold a
            // key; report the message and position only.
            let position = e.span().map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                format!(" (line {line}, column {column})")
            });
            ConfigError::Parse {
                path: path.map(Path::to_owned),
                message: format!("{}{}", e.message().trim_end(), position.unwrap_or_default()),
            }
        })
    }

    /// Where the CLI and server look for the file when not told:
    /// `$XDG_CONFIG_HOME/lucid/providers.toml`, else
    /// `$HOME/.config/lucid/providers.toml`.
    pub fn default_path() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|v| !v.is_empty())
                    .map(|h| PathBuf::from(h).join(".config"))
            })?;
        Some(base.join("lucid").join("providers.toml"))
    }
}

/// A vendor's conventions.
pub(crate) struct Vendor {
    pub name: &'static str,
    pub key_envs: &'static [&'static str],
    pub base_url_env: &'static str,
    pub default_base_url: &'static str,
}

pub(crate) const OPENAI: Vendor = Vendor {
    name: "openai",
    key_envs: &["OPENAI_API_KEY"],
    base_url_env: "OPENAI_BASE_URL",
    default_base_url: "https://api.openai.com/v1",
};

pub(crate) const ANTHROPIC: Vendor = Vendor {
    name: "anthropic",
    key_envs: &["ANTHROPIC_API_KEY"],
    base_url_env: "ANTHROPIC_BASE_URL",
    default_base_url: "https://api.anthropic.com",
};

pub(crate) const GEMINI: Vendor = Vendor {
    name: "gemini",
    key_envs: &["GEMINI_API_KEY", "GOOGLE_API_KEY"],
    base_url_env: "GEMINI_BASE_URL",
    default_base_url: "https://generativelanguage.googleapis.com/v1beta",
};

/// One provider's settings after the file, the environment and the defaults
/// have been combined.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub http: HttpSettings,
    pub retry: RetryPolicy,
}

/// Looks up environment variables; tests pass a map instead of the process
/// environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

pub(crate) fn resolve(
    vendor: Option<&Vendor>,
    name: &str,
    file: Option<&ProviderConfig>,
    defaults: &Tuning,
    env: EnvLookup<'_>,
    path: Option<&Path>,
) -> Result<Resolved, ConfigError> {
    let empty = ProviderConfig::default();
    let file = file.unwrap_or(&empty);
    let invalid = |message: String| ConfigError::Invalid {
        path: path.map(Path::to_owned),
        message,
    };
    let non_empty = |v: String| if v.trim().is_empty() { None } else { Some(v) };

    let base_url = vendor
        .and_then(|v| env(v.base_url_env).and_then(non_empty))
        .or_else(|| file.base_url.clone())
        .or_else(|| vendor.map(|v| v.default_base_url.to_owned()))
        .ok_or_else(|| {
            invalid(format!(
                "[providers.{}] needs a base_url",
                name.replace(':', ".")
            ))
        })?;

    let key_envs: Vec<String> = match (&file.api_key_env, vendor) {
        (Some(var), _) => vec![var.clone()],
        (None, Some(v)) => v.key_envs.iter().map(|s| (*s).to_owned()).collect(),
        (None, None) => Vec::new(),
    };
    let api_key = key_envs
        .iter()
        .find_map(|var| env(var).and_then(non_empty))
        .map(Secret::new)
        .or_else(|| file.api_key.clone().filter(|k| !k.expose().is_empty()));
    let api_key_env = if key_envs.is_empty() {
        None
    } else {
        Some(key_envs.join(" or "))
    };

    let secs = |field: &str,
                own: Option<f64>,
                default: Option<f64>|
     -> Result<Option<Duration>, ConfigError> {
        match own.or(default) {
            None => Ok(None),
            Some(s) => Duration::try_from_secs_f64(s).map(Some).map_err(|_| {
                invalid(format!(
                    "{name}: {field} must be a non-negative number of seconds"
                ))
            }),
        }
    };
    let connect_timeout = secs(
        "connect_timeout_secs",
        file.connect_timeout_secs,
        defaults.connect_timeout_secs,
    )?
    .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let read_timeout = secs(
        "read_timeout_secs",
        file.read_timeout_secs,
        defaults.read_timeout_secs,
    )?
    .unwrap_or(DEFAULT_READ_TIMEOUT);
    let base = RetryPolicy::default();
    let retry = RetryPolicy {
        max_retries: file
            .max_retries
            .or(defaults.max_retries)
            .unwrap_or(base.max_retries),
        initial_backoff: file
            .initial_backoff_ms
            .or(defaults.initial_backoff_ms)
            .map_or(base.initial_backoff, Duration::from_millis),
        max_backoff: file
            .max_backoff_ms
            .or(defaults.max_backoff_ms)
            .map_or(base.max_backoff, Duration::from_millis),
        max_retry_after: secs(
            "max_retry_after_secs",
            file.max_retry_after_secs,
            defaults.max_retry_after_secs,
        )?
        .unwrap_or(base.max_retry_after),
    };

    let vendor_name = vendor.map(|v| v.name);
    if file.model.is_some() && vendor_name.is_some() {
        return Err(invalid(format!(
            "{name}: `model` is only for [providers.compat.NAME]"
        )));
    }
    if (file.anthropic_version.is_some() || file.default_max_tokens.is_some())
        && vendor_name != Some("anthropic")
    {
        return Err(invalid(format!(
            "{name}: `anthropic_version` and `default_max_tokens` are only for [providers.anthropic]"
        )));
    }

    Ok(Resolved {
        http: HttpSettings {
            base_url,
            api_key,
            api_key_env,
            connect_timeout,
            read_timeout,
        },
        retry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let config = Config::from_toml(
            r#"
            [defaults]
            connect_timeout_secs = 10
            read_timeout_secs = 300
            max_retries = 2

            [providers.openai]
            api_key_env = "OPENAI_API_KEY"
            fallbacks = ["anthropic:claude-3-5-haiku-latest"]

            [providers.compat.uni]
            base_url = "https://llm.example.edu/v1"
            api_key_env = "UNI_LLM_KEY"
            model = "meta-llama/Llama-3.1-8B-Instruct"

            [fallbacks]
            "gemini:gemini-1.5-flash" = ["openai:gpt-4o-mini"]
            "#,
        )
        .unwrap();
        assert_eq!(config.defaults.max_retries, Some(2));
        assert_eq!(
            config.providers.compat["uni"].model.as_deref(),
            Some("meta-llama/Llama-3.1-8B-Instruct")
        );
        assert_eq!(
            config.fallbacks["gemini:gemini-1.5-flash"],
            vec!["openai:gpt-4o-mini".to_owned()]
        );
    }

    #[test]
    fn parse_errors_do_not_quote_the_line() {
        let err = Config::from_toml("[providers.openai]\napi_key = sk-secret-123\n").unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("sk-secret-123"), "{text}");
        assert!(text.contains("line 2"), "{text}");
        let err = Config::from_toml("[providers.openai]\napi_kee = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("api_kee"), "{err}");
    }

    #[test]
    fn debug_hides_keys() {
        let config =
            Config::from_toml("[providers.openai]\napi_key = \"sk-secret-123\"\n").unwrap();
        assert!(!format!("{config:?}").contains("sk-secret-123"));
    }

    #[test]
    fn environment_wins_then_file_then_default() {
        let env = |k: &str| match k {
            "GOOGLE_API_KEY" => Some("g-key".to_owned()),
            "OPENAI_BASE_URL" => Some("http://127.0.0.1:9/v1".to_owned()),
            _ => None,
        };
        let file = ProviderConfig {
            api_key: Some(Secret::new("file-key")),
            ..Default::default()
        };
        let r = resolve(
            Some(&GEMINI),
            "gemini",
            Some(&file),
            &Tuning::default(),
            &env,
            None,
        )
        .unwrap();
        assert_eq!(r.http.api_key.as_ref().map(Secret::expose), Some("g-key"));
        assert_eq!(
            r.http.base_url,
            "https://generativelanguage.googleapis.com/v1beta"
        );
        assert_eq!(
            r.http.api_key_env.as_deref(),
            Some("GEMINI_API_KEY or GOOGLE_API_KEY")
        );

        let r = resolve(
            Some(&OPENAI),
            "openai",
            Some(&file),
            &Tuning::default(),
            &env,
            None,
        )
        .unwrap();
        assert_eq!(
            r.http.api_key.as_ref().map(Secret::expose),
            Some("file-key")
        );
        assert_eq!(r.http.base_url, "http://127.0.0.1:9/v1");

        let compat = ProviderConfig {
            base_url: Some("http://h/v1".into()),
            ..Default::default()
        };
        let r = resolve(
            None,
            "compat:x",
            Some(&compat),
            &Tuning::default(),
            &env,
            None,
        )
        .unwrap();
        assert!(r.http.api_key_env.is_none());
        assert!(r.http.api_key.is_none());
        let err = resolve(None, "compat:y", None, &Tuning::default(), &env, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid providers config: [providers.compat.y] needs a base_url"
        );
    }

    #[test]
    fn tuning_falls_back_to_defaults() {
        let defaults = Tuning {
            max_retries: Some(5),
            read_timeout_secs: Some(1.5),
            ..Default::default()
        };
        let file = ProviderConfig {
            max_retries: Some(1),
            ..Default::default()
        };
        let r = resolve(
            Some(&OPENAI),
            "openai",
            Some(&file),
            &defaults,
            &|_| None,
            None,
        )
        .unwrap();
        assert_eq!(r.retry.max_retries, 1);
        assert_eq!(r.http.read_timeout, Duration::from_millis(1500));
        let bad = Tuning {
            connect_timeout_secs: Some(-1.0),
            ..Default::default()
        };
        assert!(resolve(Some(&OPENAI), "openai", None, &bad, &|_| None, None).is_err());
    }
}
