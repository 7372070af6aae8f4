//! Errors of the glass-box routes, as HTTP statuses with an OpenAI-shaped
//! body.

use axum::Json;
use axum::http::StatusCode;
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
            GlassError::NoLogits | GlassError::MissingHook { .. } => false,
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
        (
            self.status,
            Json(serde_json::json!({ "error": self.body() })),
        )
            .into_response()
    }
}
