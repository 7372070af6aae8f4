//! Errors of the glass-box routes, as HTTP statuses with an OpenAI-shaped
//! body.

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use lucid_engine::EngineError;
use lucid_glass::GlassError;

use crate::wire::ErrorBody;

/// A failed request: the status, and what to tell the client.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct WebError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    pub param: Option<String>,
}

impl WebError {
    pub fn invalid(param: Option<&str>, message: impl Into<String>) -> WebError {
        WebError {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            message: message.into(),
            param: param.map(str::to_string),
        }
    }

    pub fn model_not_found(name: &str, available: &[String]) -> WebError {
        WebError {
            status: StatusCode::NOT_FOUND,
            kind: "invalid_request_error",
            message: format!(
                "the model {name:?} is not loaded for explaining (loaded: {})",
                if available.is_empty() {
                    "none".to_string()
                } else {
                    available.join(", ")
                }
            ),
            param: Some("model".into()),
        }
    }

    /// 413 for a body over `limit` bytes.
    pub fn too_large(limit: usize) -> WebError {
        WebError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            kind: "invalid_request_error",
            message: format!("the request body is larger than the limit of {limit} bytes"),
            param: None,
        }
    }

    /// 408 for a body that did not arrive in time.
    pub fn body_timeout(secs: u64) -> WebError {
        WebError {
            status: StatusCode::REQUEST_TIMEOUT,
            kind: "invalid_request_error",
            message: format!("the request body did not arrive within {secs} s"),
            param: None,
        }
    }

    /// 429: every explain slot is taken and the queue behind them is full.
    pub fn busy(queued: usize) -> WebError {
        WebError {
            status: StatusCode::TOO_MANY_REQUESTS,
            kind: "rate_limit_error",
            message: format!(
                "the glass box is busy: every explain slot is in use and {queued} requests \
                 are waiting; retry shortly"
            ),
            param: None,
        }
    }

    pub fn internal(message: impl Into<String>) -> WebError {
        WebError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "server_error",
            message: message.into(),
            param: None,
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            message: self.message.clone(),
            kind: self.kind.to_string(),
            param: self.param.clone(),
            code: None,
        }
    }
}

impl From<GlassError> for WebError {
    fn from(e: GlassError) -> WebError {
        let param = match &e {
            GlassError::LayerOutOfRange { .. } => Some("attention.layers"),
            GlassError::HeadOutOfRange { .. } => Some("attention.heads"),
            GlassError::Zero { what } | GlassError::TooLarge { what, .. } => {
                Some(*what).filter(|w| !w.contains(' '))
            }
            GlassError::EmptyPrompt | GlassError::Tokenizer(_) => Some("prompt"),
            GlassError::ContextTooSmall { .. } => Some("max_tokens"),
            GlassError::NotAGenerator { .. } => Some("model"),
            GlassError::TooFewTexts { .. } => Some("texts"),
            GlassError::PairOutOfRange { .. } => Some("pairs"),
            _ => None,
        };
        let client_side = match &e {
            GlassError::Engine(inner) => matches!(
                **inner,
                EngineError::TokenOutOfRange { .. }
                    | EngineError::ContextFull { .. }
                    | EngineError::EmptyPrompt
                    | EngineError::Sampling(_)
                    | EngineError::Template(_)
            ),
            GlassError::NoLogits
            | GlassError::MissingHook { .. }
            | GlassError::HiddenStates { .. } => false,
            _ => true,
        };
        if client_side {
            WebError::invalid(param, e.to_string())
        } else {
            WebError::internal(e.to_string())
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let mut res = (
            self.status,
            Json(serde_json::json!({ "error": self.body() })),
        )
            .into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            res.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                HeaderValue::from_static("5"),
            );
        }
        res
    }
}
