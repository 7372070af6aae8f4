//! The one error type every provider returns.
//!
//! Each variant names the provider, so that a message read in a terminal or a
//! server log says where it came from; none ever contains a key (server text
//! is scrubbed with [`Secret::redact`](crate::Secret::redact) before it gets here).
//! The retry and fallback logic reads the variants through
//! [`ProviderError::is_retryable`] and [`ProviderError::retry_after`].

use std::fmt;
use std::time::Duration;

use crate::Secret;

/// Which wait ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    /// Opening the TCP/TLS connection.
    Connect,
    /// Waiting for the response (headers, or a whole non-streamed body).
    Response,
    /// Waiting for the next chunk of a streamed body.
    Stream,
}

impl fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeoutPhase::Connect => "connecting",
            TimeoutPhase::Response => "waiting for the response",
            TimeoutPhase::Stream => "waiting for the next streamed chunk",
        })
    }
}

/// One model tried by the router that failed.
#[derive(Debug)]
pub struct Attempt {
    /// The model string tried, e.g. `openai:gpt-4o-mini`.
    pub model: String,
    /// How it failed (after its own retries).
    pub error: ProviderError,
}

/// Anything that can go wrong asking a provider for a completion.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider rejected the key (HTTP 401 or 403, or Gemini's
    /// `API_KEY_INVALID`).
    #[error("{provider}: unauthorized (HTTP {status}): {message}")]
    Unauthorized {
        /// The provider's name.
        provider: String,
        /// The HTTP status.
        status: u16,
        /// The server's explanation, scrubbed of the key.
        message: String,
    },
    /// HTTP 429.
    #[error("{provider}: rate limited (HTTP 429{}): {message}", RetryAfter(*retry_after))]
    RateLimited {
        /// The provider's name.
        provider: String,
        /// How long the server asked us to wait, if it said.
        retry_after: Option<Duration>,
        /// The server's explanation, scrubbed of the key.
        message: String,
    },
    /// Any other unsuccessful HTTP status.
    #[error("{provider}: HTTP {status}: {message}")]
    Status {
        /// The provider's name.
        provider: String,
        /// The HTTP status.
        status: u16,
        /// The server's explanation, scrubbed of the key.
        message: String,
        /// How long the server asked us to wait (503 may carry Retry-After).
        retry_after: Option<Duration>,
    },
    /// A wait ran past its limit.
    #[error("{provider}: timed out {phase} (after {after:?})")]
    Timeout {
        /// The provider's name.
        provider: String,
        /// Which wait.
        phase: TimeoutPhase,
        /// The limit that ran out.
        after: Duration,
    },
    /// The connection could not be opened, or broke (refused, reset, closed
    /// before the response was complete).
    #[error("{provider}: connection failed: {detail}")]
    Connect {
        /// The provider's name.
        provider: String,
        /// What the network stack said.
        detail: String,
    },
    /// The server sent something that does not follow its own protocol: bad
    /// JSON, a malformed event, a stream that ended without finishing.
    #[error("{provider}: protocol error: {detail}")]
    Protocol {
        /// The provider's name.
        provider: String,
        /// What was wrong.
        detail: String,
    },
    /// The server reported an error inside a successful response (an SSE
    /// `error` event, or an `error` object in a stream).
    #[error("{provider}: server error ({kind}): {message}")]
    Upstream {
        /// The provider's name.
        provider: String,
        /// The vendor's error type, e.g. `overloaded_error`.
        kind: String,
        /// The vendor's message, scrubbed of the key.
        message: String,
        /// Whether the vendor's error type means "try again".
        retryable: bool,
    },
    /// A sampling parameter this vendor cannot honour.
    #[error("{provider} does not support `{param}`: {reason}")]
    UnsupportedParameter {
        /// The provider's name.
        provider: String,
        /// The parameter, as named in [`SamplingParams`](crate::SamplingParams).
        param: String,
        /// Why, and what to do instead.
        reason: String,
    },
    /// A `provider:model` string named a provider nobody configured.
    #[error("unknown provider `{name}` (configured: {})", known.join(", "))]
    UnknownProvider {
        /// The provider part of the model string.
        name: String,
        /// The providers that are configured.
        known: Vec<String>,
    },
    /// A bare model name was given but no local provider is registered.
    #[error("`{model}` is a local model name, but no local engine is available")]
    NoLocalProvider {
        /// The model name.
        model: String,
    },
    /// The model string cannot be understood.
    #[error("invalid model `{input}`: {reason}")]
    InvalidModel {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No key is configured for a provider that needs one.
    #[error(
        "{provider}: no API key; set the environment variable {env_var} or `api_key` in the providers config file"
    )]
    MissingApiKey {
        /// The provider's name.
        provider: String,
        /// The environment variable that was looked at.
        env_var: String,
    },
    /// The request was cancelled before it finished.
    #[error("{provider}: request cancelled")]
    Cancelled {
        /// The provider's name.
        provider: String,
    },
    /// The model and all its fallbacks failed.
    #[error("all {} models failed: {}", attempts.len(), Attempts(attempts))]
    AllFailed {
        /// One entry per model tried, in order.
        attempts: Vec<Attempt>,
    },
}

impl ProviderError {
    /// Whether trying the same request again may succeed: rate limits, server
    /// errors (5xx, and Anthropic's 529), timeouts, broken connections and
    /// retryable error events.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProviderError::RateLimited { .. }
            | ProviderError::Timeout { .. }
            | ProviderError::Connect { .. } => true,
            ProviderError::Status { status, .. } => *status >= 500 || *status == 408,
            ProviderError::Upstream { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// How long the server asked us to wait before trying again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::RateLimited { retry_after, .. }
            | ProviderError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The upstream HTTP status, for errors that came with one.
    pub fn upstream_status(&self) -> Option<u16> {
        match self {
            ProviderError::Unauthorized { status, .. } | ProviderError::Status { status, .. } => {
                Some(*status)
            }
            ProviderError::RateLimited { .. } => Some(429),
            _ => None,
        }
    }

    /// The provider the error came from, where there is one.
    pub fn provider(&self) -> Option<&str> {
        match self {
            ProviderError::Unauthorized { provider, .. }
            | ProviderError::RateLimited { provider, .. }
            | ProviderError::Status { provider, .. }
            | ProviderError::Timeout { provider, .. }
            | ProviderError::Connect { provider, .. }
            | ProviderError::Protocol { provider, .. }
            | ProviderError::Upstream { provider, .. }
            | ProviderError::UnsupportedParameter { provider, .. }
            | ProviderError::MissingApiKey { provider, .. }
            | ProviderError::Cancelled { provider } => Some(provider),
            ProviderError::UnknownProvider { .. }
            | ProviderError::NoLocalProvider { .. }
            | ProviderError::InvalidModel { .. }
            | ProviderError::AllFailed { .. } => None,
        }
    }

    /// The error with `secret` scrubbed from every text that may have come
    /// from a server. Adapters scrub where they build errors; the stream
    /// driver applies this too, so that no path is missed.
    pub(crate) fn redact(self, secret: Option<&Secret>) -> Self {
        let Some(s) = secret else {
            return self;
        };
        match self {
            ProviderError::Unauthorized {
                provider,
                status,
                message,
            } => ProviderError::Unauthorized {
                provider,
                status,
                message: s.redact(&message),
            },
            ProviderError::RateLimited {
                provider,
                retry_after,
                message,
            } => ProviderError::RateLimited {
                provider,
                retry_after,
                message: s.redact(&message),
            },
            ProviderError::Status {
                provider,
                status,
                message,
                retry_after,
            } => ProviderError::Status {
                provider,
                status,
                message: s.redact(&message),
                retry_after,
            },
            ProviderError::Connect { provider, detail } => ProviderError::Connect {
                provider,
                detail: s.redact(&detail),
            },
            ProviderError::Protocol { provider, detail } => ProviderError::Protocol {
                provider,
                detail: s.redact(&detail),
            },
            ProviderError::Upstream {
                provider,
                kind,
                message,
                retryable,
            } => ProviderError::Upstream {
                provider,
                kind: s.redact(&kind),
                message: s.redact(&message),
                retryable,
            },
            other => other,
        }
    }

    pub(crate) fn unsupported(provider: &str, param: &str, reason: impl Into<String>) -> Self {
        ProviderError::UnsupportedParameter {
            provider: provider.to_owned(),
            param: param.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn protocol(provider: &str, detail: impl Into<String>) -> Self {
        ProviderError::Protocol {
            provider: provider.to_owned(),
            detail: detail.into(),
        }
    }
}

struct RetryAfter(Option<Duration>);

impl fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(d) => write!(f, ", retry after {:.1}s", d.as_secs_f64()),
            None => Ok(()),
        }
    }
}

struct Attempts<'a>(&'a [Attempt]);

impl fmt::Display for Attempts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "[{}] {}", a.model, a.error)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_provider_and_status() {
        let e = ProviderError::Status {
            provider: "openai".into(),
            status: 500,
            message: "boom".into(),
            retry_after: None,
        };
        assert_eq!(e.to_string(), "openai: HTTP 500: boom");
        let e = ProviderError::RateLimited {
            provider: "anthropic".into(),
            retry_after: Some(Duration::from_secs(2)),
            message: "slow down".into(),
        };
        assert_eq!(
            e.to_string(),
            "anthropic: rate limited (HTTP 429, retry after 2.0s): slow down"
        );
        let all = ProviderError::AllFailed {
            attempts: vec![
                Attempt {
                    model: "openai:a".into(),
                    error: e,
                },
                Attempt {
                    model: "gemini:b".into(),
                    error: ProviderError::Timeout {
                        provider: "gemini".into(),
                        phase: TimeoutPhase::Stream,
                        after: Duration::from_millis(300),
                    },
                },
            ],
        };
        assert_eq!(
            all.to_string(),
            "all 2 models failed: [openai:a] anthropic: rate limited (HTTP 429, retry after 2.0s): \
             slow down; [gemini:b] gemini: timed out waiting for the next streamed chunk (after 300ms)"
        );
    }

    #[test]
    fn redaction_reaches_every_server_text() {
        let key = Secret::new("sk-k");
        let errors = [
            ProviderError::protocol("p", "bad sk-k"),
            ProviderError::Connect {
                provider: "p".into(),
                detail: "sk-k".into(),
            },
            ProviderError::Upstream {
                provider: "p".into(),
                kind: "sk-k".into(),
                message: "sk-k".into(),
                retryable: false,
            },
            ProviderError::Unauthorized {
                provider: "p".into(),
                status: 401,
                message: "sk-k".into(),
            },
        ];
        for e in errors {
            let e = e.redact(Some(&key));
            assert!(!format!("{e} {e:?}").contains("sk-k"), "{e:?}");
        }
    }

    #[test]
    fn retryability() {
        let status = |s| ProviderError::Status {
            provider: "p".into(),
            status: s,
            message: String::new(),
            retry_after: None,
        };
        assert!(status(500).is_retryable());
        assert!(status(529).is_retryable());
        assert!(!status(400).is_retryable());
        assert!(
            !ProviderError::Unauthorized {
                provider: "p".into(),
                status: 401,
                message: String::new()
            }
            .is_retryable()
        );
    }
}
