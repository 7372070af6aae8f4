//! The model store behind a server: what Ollama's `/api/pull`,
//! `/api/delete`, `/api/copy` and `/api/create` change, and where a model
//! the server was not started with comes from when a request names it.
//!
//! Clients name models only as the store knows them (catalog names and
//! aliases of pulled models, user models): never as paths, so nothing a
//! client sends makes the server read a file outside the store.

use std::sync::Arc;

use axum::http::StatusCode;
use lucid_store::{Store, StoreError};

use crate::error::ApiError;
use crate::state::LocalModel;

/// Loads a model from the store to serve it, as the server loads the models
/// it starts with (license policy, scheduler settings, a loader to load it
/// again); the error says why it could not.
pub type Opener = Arc<dyn Fn(&str) -> Result<LocalModel, String> + Send + Sync>;

/// The store a server manages, and how it opens the models in it.
pub struct Library {
    pub store: Store,
    pub open: Opener,
    /// Held while a model is opened on a request's behalf, so that requests
    /// arriving together open it once.
    pub(crate) opening: tokio::sync::Mutex<()>,
}

impl Library {
    pub fn new(store: Store, open: Opener) -> Library {
        Library {
            store,
            open,
            opening: tokio::sync::Mutex::new(()),
        }
    }
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library")
            .field("home", &self.store.home())
            .finish_non_exhaustive()
    }
}

/// A model name as Ollama clients send it: `name:latest` is `name`.
pub fn untagged(name: &str) -> &str {
    name.strip_suffix(":latest").unwrap_or(name)
}

/// The API error for a store error about `model`.
pub(crate) fn store_error(model: &str, e: StoreError) -> ApiError {
    let status = match &e {
        StoreError::UnknownModel { .. }
        | StoreError::NotPulled { .. }
        | StoreError::NotInStore { .. }
        | StoreError::FileNotFound { .. } => StatusCode::NOT_FOUND,
        StoreError::NotDownloadable { .. }
        | StoreError::CannotCreate { .. }
        | StoreError::ModelFile { .. } => StatusCode::BAD_REQUEST,
        StoreError::AllSourcesFailed { .. } => StatusCode::BAD_GATEWAY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let kind = if status.is_client_error() {
        "invalid_request_error"
    } else {
        "server_error"
    };
    if status == StatusCode::NOT_FOUND {
        return ApiError::model_missing(format!("{model}: {e}"));
    }
    ApiError::new(status, kind, format!("{model}: {e}"))
}
