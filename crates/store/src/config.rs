//! Where the store downloads from, read from the environment by default and
//! settable in code so tests can point it at fake servers.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Endpoints, credentials and limits for pulling models.
#[derive(Clone)]
pub struct Config {
    /// The Hugging Face hub, without a trailing `/resolve/...`
    /// (`HF_ENDPOINT`, default `https://huggingface.co`).
    pub hf_endpoint: String,
    /// Sent as `Authorization: Bearer …` to the hub (`HF_TOKEN`).
    pub hf_token: Option<String>,
    /// The PyPI JSON API root (`LUCID_PYPI_URL`, default
    /// `https://pypi.org/pypi`).
    pub pypi_url: String,
    /// Directories searched, in order, by `local` sources with a relative path
    /// (`LUCID_LOCAL_MODELS`, a list like `PATH`).
    pub local_dirs: Vec<PathBuf>,
    /// How long to wait for a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// How long to wait for response headers, and for each read of a body.
    pub read_timeout: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            hf_endpoint: "https://huggingface.co".to_owned(),
            hf_token: None,
            pypi_url: "https://pypi.org/pypi".to_owned(),
            local_dirs: Vec::new(),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
        }
    }
}

impl Config {
    /// The defaults, overridden by `HF_ENDPOINT`, `HF_TOKEN`, `LUCID_PYPI_URL`
    /// and `LUCID_LOCAL_MODELS` where they are set and not empty.
    pub fn from_env() -> Config {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let mut config = Config::default();
        if let Some(endpoint) = var("HF_ENDPOINT") {
            config.hf_endpoint = endpoint;
        }
        // `HUGGING_FACE_HUB_TOKEN` is the older name huggingface_hub still reads.
        config.hf_token = var("HF_TOKEN").or_else(|| var("HUGGING_FACE_HUB_TOKEN"));
        if let Some(url) = var("LUCID_PYPI_URL") {
            config.pypi_url = url;
        }
        if let Some(dirs) = std::env::var_os("LUCID_LOCAL_MODELS") {
            config.local_dirs = std::env::split_paths(&dirs)
                .filter(|d| !d.as_os_str().is_empty())
                .collect();
        }
        config
    }
}

// The token is a secret: it must not end up in logs through `{:?}`.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("hf_endpoint", &self.hf_endpoint)
            .field("hf_token", &self.hf_token.as_ref().map(|_| "<redacted>"))
            .field("pypi_url", &self.pypi_url)
            .field("local_dirs", &self.local_dirs)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_token() {
        let config = Config {
            hf_token: Some("hf_secret".to_owned()),
            ..Config::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("hf_secret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
