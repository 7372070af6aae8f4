//! What lucid knows about models and their licenses, as data: catalog entries
//! with sources and hashes, and a license knowledge base with cited clauses.
//!
//! - The catalog is a set of TOML documents under `catalog/models/` at the
//!   root of the repository, one per model or per family. They are compiled
//!   into the binary (see [`Catalog::builtin`]), parsed into typed
//!   [`ModelEntry`] values and validated once, so every other crate can trust
//!   an entry's names, hashes and sources without checking them again.
//! - The license knowledge base is a TOML document per license under
//!   `catalog/licenses/` ([`Licenses::builtin`]): for each [`Use`] a
//!   [`VerdictKind`], the [`Clause`] it rests on and the conditions that come
//!   with it. [`check`] answers "may I do this with this model?", and
//!   [`Policy`] turns the answer into a refusal for a server to enforce.
//! - [`describe_local`] describes a model file or directory on disk from its
//!   own metadata, and matches it to its catalog entry when it is one.
//! - [`bom::cyclonedx`] writes a CycloneDX 1.6 ML-BOM of a set of models.
//!
//! This crate never touches the network. It reads the disk only to describe
//! local models; fetching the files an entry names is the store's job
//! (`lucid-store`), and serving is the server's.

pub mod bom;
mod builtin;
mod catalog;
mod check;
mod entry;
mod error;
mod license;
mod local;
mod policy;

pub use catalog::Catalog;
pub use check::{Subject, Verdict, check};
pub use entry::{
    Format, HuggingFaceSource, LicenseId, LocalSource, ModelEntry, ModelFile, ModelKind,
    PypiSource, RunDefaults, Sha256Digest, Source, Task, Tuning, Upstream, UpstreamFile, WheelPart,
};
pub use error::{CatalogError, DescribeError, LicenseError, PolicyError, UseParseError};
pub use license::{
    Citation, Clause, License, LicenseDocument, Licenses, Term, Use, VerdictKind, normalize_text,
};
pub use local::{
    LocalDescription, LocalFile, describe_local, describe_local_with, file_type_name, front_matter,
    sha256_file,
};
pub use policy::{Policy, PolicyOutcome};
