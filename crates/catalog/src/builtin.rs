//! The catalog documents compiled into the binary.
//!
//! Adding a model is one file in `catalog/models/` and one line here. A test
//! checks that every file in that folder is listed, so a forgotten line fails
//! the build's tests rather than silently shipping a smaller catalog.

/// `(file name, TOML text)` of every built-in catalog document, in the order
/// `lucid list`-style listings show them.
pub(crate) const DOCUMENTS: &[(&str, &str)] = &[
    (
        "smollm2.toml",
        include_str!("../../../catalog/models/smollm2.toml"),
    ),
    (
        "gemma3.toml",
        include_str!("../../../catalog/models/gemma3.toml"),
    ),
];
