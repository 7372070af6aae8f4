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

/// A license document that does not parse or does not hold together.
#[derive(Debug, thiserror::Error)]
pub enum LicenseError {
    #[error("license document {origin}: {source}")]
    Parse {
        origin: String,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("license document {origin}: {problem}")]
    Invalid { origin: String, problem: String },
    #[error("the license name `{name}` is used by both `{first}` and `{second}`")]
    DuplicateName {
        name: String,
        first: String,
        second: String,
    },
}

/// A use name that is not one lucid knows; the message lists the valid ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown use `{input}`; valid uses are {}", valid_uses())]
pub struct UseParseError {
    pub input: String,
}

fn valid_uses() -> String {
    crate::Use::ALL
        .iter()
        .map(|u| format!("`{u}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a policy refuses a model.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "model `{model}` may not be used for `{use_}`: its license `{license}` forbids it ({clause})"
    )]
    Forbidden {
        model: String,
        license: String,
        use_: crate::Use,
        clause: Box<crate::Clause>,
    },
    #[error(
        "model `{model}` may not be used for `{use_}`: lucid does not know what its license `{license}` says about it, and the policy refuses unknown licenses"
    )]
    Unknown {
        model: String,
        license: String,
        use_: crate::Use,
    },
}

/// A local model file or directory that cannot be described.
#[derive(Debug, thiserror::Error)]
pub enum DescribeError {
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Gguf(#[from] lucid_gguf::GgufError),
    #[error("{}: not valid JSON: {source}", path.display())]
    Json {
        path: std::path::PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: neither a GGUF file nor a directory with a config.json or README.md", path.display())]
    NotAModel { path: std::path::PathBuf },
}
