//! What lucid knows about models and their licenses, as data: catalog entries
//! with sources and hashes, and a license knowledge base with cited clauses.
//!
//! The catalog is a set of TOML documents, one per model, under
//! `catalog/models/` at the root of the repository. They are compiled into the
//! binary (see [`builtin`](crate::Catalog::builtin)), parsed into typed
//! [`ModelEntry`] values and validated once, so every other crate can trust an
//! entry's names, hashes and sources without checking them again.
//!
//! This crate only describes models; it never touches the network or the disk.
//! Fetching the files an entry names is the store's job (`lucid-store`).

mod builtin;
mod catalog;
mod entry;
mod error;

pub use catalog::Catalog;
pub use entry::{
    Format, HuggingFaceSource, LicenseId, LocalSource, ModelEntry, ModelFile, ModelKind,
    PypiSource, Sha256Digest, Source, WheelPart,
};
pub use error::CatalogError;
