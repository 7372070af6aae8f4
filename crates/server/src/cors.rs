//! CORS, for web pages on other origins that call the server
//! (`--cors-origin`): off by default. For a listed origin (or any, with
//! `*`) preflights are answered and responses carry
//! `Access-Control-Allow-Origin`; for any other origin nothing is added and
//! the browser keeps the page from reading the answer.
//!
//! CORS decides what a browser lets a page read; it is not access control.
//! The API key still applies to every request but the preflight (which a
//! browser sends without credentials), and without a key the [`origin`]
//! check admits listed origins beside the server's own pages.
//!
//! [`origin`]: crate::origin

use std::time::Duration;

use axum::http::{HeaderValue, Method, header};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

/// The layer for `origins`; `None` when the list is empty.
pub fn layer(origins: &[String]) -> Result<Option<CorsLayer>, String> {
    if origins.is_empty() {
        return Ok(None);
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .map(|o| parse(o))
                .collect::<Result<Vec<_>, _>>()?,
        )
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            // The SDKs send headers of their own (`x-stainless-…`,
            // `openai-organization`): allow what the preflight asks for.
            .allow_headers(AllowHeaders::mirror_request())
            // What a page may read besides the body: when to retry, and
            // how many embedding inputs were cut.
            .expose_headers([
                header::RETRY_AFTER,
                header::HeaderName::from_static(crate::embed::TRUNCATED_HEADER),
            ])
            .max_age(Duration::from_secs(600)),
    ))
}

/// Whether a page at `origin` (an `Origin` header) is listed.
pub fn allows(origins: &[String], origin: &str) -> bool {
    origins
        .iter()
        .any(|o| o == "*" || o.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

/// `scheme://host[:port]`, as browsers send it in `Origin`.
fn parse(origin: &str) -> Result<HeaderValue, String> {
    let trimmed = origin.trim_end_matches('/');
    let valid = trimmed.split_once("://").is_some_and(|(scheme, rest)| {
        !scheme.is_empty() && !rest.is_empty() && !rest.contains('/')
    });
    if !valid {
        return Err(format!(
            "--cors-origin {origin:?} is not an origin: give scheme://host[:port] \
             (https://app.example, http://localhost:3000) or *"
        ));
    }
    HeaderValue::from_str(trimmed).map_err(|_| {
        format!(
            "--cors-origin {origin:?} is not an origin: it has characters a header cannot carry"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked_and_matched() {
        assert!(layer(&[]).unwrap().is_none());
        assert!(
            layer(&["https://app.example".into(), "*".into()])
                .unwrap()
                .is_some()
        );
        let e = layer(&["app.example".into()]).unwrap_err();
        assert!(e.contains("\"app.example\" is not an origin"), "{e}");
        assert!(layer(&["https://app.example/path".into()]).is_err());
        let listed = vec!["https://app.example/".to_owned()];
        assert!(allows(&listed, "https://app.example"));
        assert!(!allows(&listed, "https://evil.example"));
        assert!(allows(&["*".to_owned()], "https://anyone.example"));
    }
}
