//! Why a catalog document was rejected.

/// A catalog document that does not parse or does not hold together.
///
/// `origin` names the document (its file name for the built-in catalog), so a
/// bad entry can be found and fixed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog document {origin}: {source}")]
    Parse {
        origin: String,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("catalog document {origin}, model `{model}`: {problem}")]
    Invalid {
        origin: String,
        model: String,
        problem: String,
    },
    #[error("the name `{name}` is used by both `{first}` and `{second}`")]
    DuplicateName {
        name: String,
        first: String,
        second: String,
    },
}
