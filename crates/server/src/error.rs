//! The server's one error type, [`ApiError`], and how it becomes a response:
//! an OpenAI-shaped body (`{"error": {"message", "type", "param", "code"}}`)
//! on OpenAI routes, Ollama's `{"error": "..."}` on Ollama routes,
//! Anthropic's `{"type": "error", "error": {"type", "message"}}` on the
//! Messages routes ([`ApiError::for_path`]), with the
//! right status code and, for 429, a `Retry-After` header.
//!
//! Errors from the layers below (a body that does not parse, the
//! scheduler's refusals, a provider's failures) are turned into `ApiError`
//! here and nowhere else, so each status code is decided in one place.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lucid_providers::ProviderError;
use lucid_scheduler::SchedulerError;
use serde::Serialize;

/// An error answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's error `type`: `invalid_request_error`, `authentication_error`, ...
    pub kind: &'static str,
    /// The request field at fault, as a path (`messages[0].content`).
    pub param: Option<String>,
    pub code: Option<&'static str>,
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after: None,
        }
    }

    /// 400 about one field of the request.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError {
            param: Some(param.into()),
            ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
        }
    }

    /// 400 about the request as a whole.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    pub fn model_not_found(model: &str, available: &[String]) -> ApiError {
        // A name is echoed back whole only while it is of a sensible length.
        const ECHO_CHARS: usize = 200;
        let shown: String = model.chars().take(ECHO_CHARS).collect();
        let model = if shown.len() < model.len() {
            format!("{shown}… ({} bytes)", model.len())
        } else {
            shown
        };
        ApiError::model_missing(format!(
            "The model `{model}` does not exist or is not loaded; this server serves: {}",
            if available.is_empty() {
                "no local models".to_owned()
            } else {
                available.join(", ")
            }
        ))
    }

    /// 404 about the request's `model`, saying why.
    pub fn model_missing(message: impl Into<String>) -> ApiError {
        ApiError {
            param: Some("model".into()),
            code: Some("model_not_found"),
            ..ApiError::new(StatusCode::NOT_FOUND, "invalid_request_error", message)
        }
    }

    pub fn unauthorized() -> ApiError {
        ApiError {
            code: Some("invalid_api_key"),
            ..ApiError::new(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "Incorrect or missing API key: send `Authorization: Bearer <key>` \
                 (or `x-api-key: <key>`)",
            )
        }
    }

    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("The request body is larger than the limit of {limit} bytes"),
        )
    }

    /// 403 for a request the server will not take from where it came.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "permission_error", message)
    }

    /// 408: the body did not arrive in time (a client trickling it).
    pub fn body_timeout(limit: Duration) -> ApiError {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            format!(
                "The request body did not arrive within {} s (--body-timeout)",
                limit.as_secs()
            ),
        )
    }

    pub fn not_found_route(path: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!(
                "No route for {}",
                path.chars().take(200).collect::<String>()
            ),
        )
    }

    pub fn shutting_down() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "The server is shutting down",
        )
    }

    /// A generation the server stopped before the model did (a shutdown
    /// whose deadline passed): the reply is incomplete and must not be
    /// reported as finished.
    pub fn cut_off() -> ApiError {
        ApiError {
            code: Some("generation_cancelled"),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "The server stopped this generation before it finished (it is shutting down); \
                 the reply is incomplete",
            )
        }
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// An error from the scheduler, for a request whose prompt was in `prompt_param`.
    pub fn from_scheduler(e: SchedulerError, prompt_param: &str) -> ApiError {
        match &e {
            SchedulerError::Busy { retry_after, .. } => ApiError {
                retry_after: Some(*retry_after),
                code: Some("rate_limit_exceeded"),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    e.to_string(),
                )
            },
            SchedulerError::PromptTooLong { .. } => ApiError {
                code: Some("context_length_exceeded"),
                ..ApiError::invalid(prompt_param, e.to_string())
            },
            SchedulerError::EmptyPrompt => ApiError::invalid(prompt_param, e.to_string()),
            SchedulerError::InputTooLong { .. } => ApiError {
                code: Some("context_length_exceeded"),
                ..ApiError::invalid(prompt_param, e.to_string())
            },
            // The model cannot do what the route asks (an embedding model
            // asked to generate): the request's `model` is at fault.
            SchedulerError::Unsupported(_) => ApiError {
                code: Some("model_not_supported"),
                ..ApiError::invalid("model", e.to_string())
            },
            SchedulerError::TooLarge { .. } => ApiError::invalid("max_tokens", e.to_string()),
            SchedulerError::InvalidParams(_) => ApiError::bad_request(e.to_string()),
            SchedulerError::Schema(s) => ApiError::invalid("response_format", s.to_string()),
            SchedulerError::Engine(_) => ApiError::internal(e.to_string()),
            SchedulerError::Stopped => ApiError::shutting_down(),
        }
    }

    /// The OpenAI-shaped body.
    pub fn openai_body(&self) -> serde_json::Value {
        #[derive(Serialize)]
        struct Body<'a> {
            error: Inner<'a>,
        }
        #[derive(Serialize)]
        struct Inner<'a> {
            message: &'a str,
            #[serde(rename = "type")]
            kind: &'a str,
            param: Option<&'a str>,
            code: Option<&'a str>,
        }
        serde_json::to_value(Body {
            error: Inner {
                message: &self.message,
                kind: self.kind,
                param: self.param.as_deref(),
                code: self.code,
            },
        })
        .unwrap_or_default()
    }

    /// The Anthropic-shaped body, whose error `type` follows the status.
    pub fn anthropic_body(&self) -> serde_json::Value {
        let kind = match self.status.as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 => "overloaded_error",
            500..=599 => "api_error",
            _ => "invalid_request_error",
        };
        // Anthropic's errors have no `param`; its messages begin with the
        // field instead (`max_tokens: Field required`).
        let message = match &self.param {
            Some(param) => format!("{param}: {}", self.message),
            None => self.message.clone(),
        };
        serde_json::json!({
            "type": "error",
            "error": {"type": kind, "message": message},
        })
    }

    /// The response in the shape the route's clients read: Ollama's on
    /// `/api/…`, Anthropic's on `/v1/messages…`, OpenAI's elsewhere.
    pub fn for_path(self, path: &str) -> Response {
        if path.starts_with("/api/") {
            OllamaError(self).into_response()
        } else if path.starts_with("/v1/messages") {
            AnthropicError(self).into_response()
        } else {
            self.into_response()
        }
    }

    fn with_headers(&self, mut res: Response) -> Response {
        if let Some(d) = self.retry_after {
            let secs = d.as_secs().max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        res
    }
}

impl From<ProviderError> for ApiError {
    /// A provider's failure: the upstream's status where it means something
    /// to the caller (429 stays 429), else 502; our own configuration
    /// problems are 400 or 404.
    fn from(e: ProviderError) -> ApiError {
        let message = e.to_string();
        match &e {
            ProviderError::UnknownProvider { .. } | ProviderError::InvalidModel { .. } => {
                ApiError {
                    code: Some("model_not_found"),
                    param: Some("model".into()),
                    ..ApiError::new(StatusCode::NOT_FOUND, "invalid_request_error", message)
                }
            }
            ProviderError::NoLocalProvider { .. } => ApiError {
                code: Some("model_not_found"),
                param: Some("model".into()),
                ..ApiError::new(StatusCode::NOT_FOUND, "invalid_request_error", message)
            },
            ProviderError::UnsupportedParameter { param, .. } => {
                ApiError::invalid(param.clone(), message)
            }
            ProviderError::MissingApiKey { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
            }
            ProviderError::RateLimited { retry_after, .. } => ApiError {
                retry_after: *retry_after,
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", message)
            },
            ProviderError::Timeout { .. } => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "server_error", message)
            }
            ProviderError::Cancelled { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
            }
            _ => ApiError::new(StatusCode::BAD_GATEWAY, "server_error", message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let res = (self.status, axum::Json(self.openai_body())).into_response();
        self.with_headers(res)
    }
}

/// An [`ApiError`] in Ollama's shape, for the `/api/*` routes.
#[derive(Debug)]
pub struct OllamaError(pub ApiError);

impl From<ApiError> for OllamaError {
    fn from(e: ApiError) -> Self {
        OllamaError(e)
    }
}

impl IntoResponse for OllamaError {
    fn into_response(self) -> Response {
        let res = (
            self.0.status,
            axum::Json(serde_json::json!({ "error": self.0.message })),
        )
            .into_response();
        self.0.with_headers(res)
    }
}

/// An [`ApiError`] in Anthropic's shape, for the `/v1/messages` routes.
#[derive(Debug)]
pub struct AnthropicError(pub ApiError);

impl From<ApiError> for AnthropicError {
    fn from(e: ApiError) -> Self {
        AnthropicError(e)
    }
}

impl IntoResponse for AnthropicError {
    fn into_response(self) -> Response {
        let res = (self.0.status, axum::Json(self.0.anthropic_body())).into_response();
        self.0.with_headers(res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_model_name_is_not_echoed_whole() {
        let name = "x".repeat(1 << 20);
        let err = ApiError::model_not_found(&name, &["smollm2".to_owned()]);
        assert!(err.message.len() < 400, "{} bytes", err.message.len());
        assert!(err.message.contains("(1048576 bytes)"), "{}", err.message);
        let short = ApiError::model_not_found("nope", &[]);
        assert!(short.message.contains("`nope`"), "{}", short.message);
    }
}
