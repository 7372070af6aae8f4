//! `provider:model` addressing.
//!
//! A model string names a vendor and that vendor's model (`openai:gpt-4o-mini`),
//! a configured OpenAI-compatible endpoint (`compat:uni` or
//! `compat:uni:meta-llama/Llama-3.1-8B-Instruct`), or, when it has no known
//! provider prefix, a local model. Local names may themselves contain colons
//! (`llama3.2:1b`), which is why only the known prefixes are treated as
//! providers; `local:NAME` forces the local reading.

use std::fmt;

use crate::ProviderError;

/// A parsed model string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModelRef {
    /// `openai:MODEL`
    OpenAi {
        /// The OpenAI model name.
        model: String,
    },
    /// `anthropic:MODEL`
    Anthropic {
        /// The Anthropic model name.
        model: String,
    },
    /// `gemini:MODEL`
    Gemini {
        /// The Gemini model name (`models/` prefix optional).
        model: String,
    },
    /// `compat:ENDPOINT` or `compat:ENDPOINT:MODEL`
    Compat {
        /// The endpoint's name in the config file.
        endpoint: String,
        /// The model to ask for; `None` means the endpoint's configured `model`.
        model: Option<String>,
    },
    /// A bare name, or `local:NAME`.
    Local {
        /// The local model's name.
        model: String,
    },
}

impl ModelRef {
    /// Parses a model string.
    ///
    /// ```
    /// use lucid_providers::ModelRef;
    /// assert_eq!(
    ///     ModelRef::parse("openai:gpt-4o-mini").unwrap(),
    ///     ModelRef::OpenAi { model: "gpt-4o-mini".into() }
    /// );
    /// assert_eq!(
    ///     ModelRef::parse("llama3.2:1b").unwrap(),
    ///     ModelRef::Local { model: "llama3.2:1b".into() }
    /// );
    /// ```
    pub fn parse(input: &str) -> Result<ModelRef, ProviderError> {
        let invalid = |reason: &str| ProviderError::InvalidModel {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        let input_trimmed = input.trim();
        if input_trimmed.is_empty() {
            return Err(invalid("the model name is empty"));
        }
        let Some((prefix, rest)) = input_trimmed.split_once(':') else {
            return Ok(ModelRef::Local {
                model: input_trimmed.to_owned(),
            });
        };
        let need_model = |rest: &str| {
            if rest.is_empty() {
                Err(invalid("no model name after the provider prefix"))
            } else {
                Ok(rest.to_owned())
            }
        };
        match prefix {
            "openai" => Ok(ModelRef::OpenAi {
                model: need_model(rest)?,
            }),
            "anthropic" => Ok(ModelRef::Anthropic {
                model: need_model(rest)?,
            }),
            "gemini" => Ok(ModelRef::Gemini {
                model: need_model(rest)?,
            }),
            "local" => Ok(ModelRef::Local {
                model: need_model(rest)?,
            }),
            "compat" => {
                let (endpoint, model) = match rest.split_once(':') {
                    Some((endpoint, model)) => (endpoint, Some(need_model(model)?)),
                    None => (rest, None),
                };
                if endpoint.is_empty() {
                    return Err(invalid("no endpoint name after `compat:`"));
                }
                Ok(ModelRef::Compat {
                    endpoint: endpoint.to_owned(),
                    model,
                })
            }
            _ => Ok(ModelRef::Local {
                model: input_trimmed.to_owned(),
            }),
        }
    }

    /// The key of the provider that serves this model (`openai`,
    /// `compat:uni`), or `None` for a local model.
    pub fn provider_key(&self) -> Option<String> {
        match self {
            ModelRef::OpenAi { .. } => Some("openai".to_owned()),
            ModelRef::Anthropic { .. } => Some("anthropic".to_owned()),
            ModelRef::Gemini { .. } => Some("gemini".to_owned()),
            ModelRef::Compat { endpoint, .. } => Some(format!("compat:{endpoint}")),
            ModelRef::Local { .. } => None,
        }
    }

    /// The model name the provider is asked for, if the string gave one.
    pub fn model(&self) -> Option<&str> {
        match self {
            ModelRef::OpenAi { model }
            | ModelRef::Anthropic { model }
            | ModelRef::Gemini { model }
            | ModelRef::Local { model } => Some(model),
            ModelRef::Compat { model, .. } => model.as_deref(),
        }
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelRef::OpenAi { model } => write!(f, "openai:{model}"),
            ModelRef::Anthropic { model } => write!(f, "anthropic:{model}"),
            ModelRef::Gemini { model } => write!(f, "gemini:{model}"),
            ModelRef::Compat {
                endpoint,
                model: None,
            } => write!(f, "compat:{endpoint}"),
            ModelRef::Compat {
                endpoint,
                model: Some(m),
            } => write!(f, "compat:{endpoint}:{m}"),
            ModelRef::Local { model } => f.write_str(model),
        }
    }
}

impl std::str::FromStr for ModelRef {
    type Err = ProviderError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ModelRef::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: &str) {
        let got = match ModelRef::parse(input) {
            Ok(m) => format!("{m:?} -> {m}"),
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got, expect, "input: {input}");
    }

    #[test]
    fn parses_model_strings() {
        check(
            "openai:gpt-4o-mini",
            r#"OpenAi { model: "gpt-4o-mini" } -> openai:gpt-4o-mini"#,
        );
        check(
            "anthropic:claude-3-5-haiku-latest",
            r#"Anthropic { model: "claude-3-5-haiku-latest" } -> anthropic:claude-3-5-haiku-latest"#,
        );
        check(
            "gemini:gemini-1.5-flash",
            r#"Gemini { model: "gemini-1.5-flash" } -> gemini:gemini-1.5-flash"#,
        );
        check(
            "compat:uni",
            r#"Compat { endpoint: "uni", model: None } -> compat:uni"#,
        );
        check(
            "compat:ollama:llama3.2:1b",
            r#"Compat { endpoint: "ollama", model: Some("llama3.2:1b") } -> compat:ollama:llama3.2:1b"#,
        );
        check(
            "compat:vllm:meta-llama/Llama-3.1-8B-Instruct",
            r#"Compat { endpoint: "vllm", model: Some("meta-llama/Llama-3.1-8B-Instruct") } -> compat:vllm:meta-llama/Llama-3.1-8B-Instruct"#,
        );
        check(
            "llama3.2:1b",
            r#"Local { model: "llama3.2:1b" } -> llama3.2:1b"#,
        );
        check("tinyllama", r#"Local { model: "tinyllama" } -> tinyllama"#);
        check(
            "local:openai:x",
            r#"Local { model: "openai:x" } -> openai:x"#,
        );
        check(
            "openai:",
            "error: invalid model `openai:`: no model name after the provider prefix",
        );
        check(
            "compat:",
            "error: invalid model `compat:`: no endpoint name after `compat:`",
        );
        check("  ", "error: invalid model `  `: the model name is empty");
    }
}
