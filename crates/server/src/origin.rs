//! Keeping web pages on other sites from driving a server that has no API
//! key.
//!
//! Without a key, anything that can open a connection can use the server;
//! on loopback that is meant to be this machine's own programs. A web page
//! the user visits can reach loopback too: by a cross-site `POST` (a
//! `text/plain` body needs no CORS preflight, so the browser sends it) or,
//! to read the reply as well, by DNS rebinding (its own host name made to
//! resolve to 127.0.0.1, so the browser thinks the server is same-origin).
//! Two checks close both, and leave curl, SDKs and the glass-box page
//! alone:
//!
//! - `Host` must name this server: an IP address, `localhost` (or a name
//!   under `.localhost`), or a host given with `--allowed-host`. A rebinding
//!   page's requests carry its own domain.
//! - `Origin`, which browsers send on cross-site and on `POST` requests and
//!   programs do not, must be the same origin as `Host` (the glass-box page
//!   served by this server), a host given with `--allowed-host`, or an
//!   origin given with `--cors-origin` (which the user has chosen to let
//!   call the server).
//!
//! With an API key neither applies: a page cannot send a key it does not
//! know.

use axum::http::{HeaderMap, header};

/// Why a request was turned away.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Host(String),
    Origin(String),
}

impl Refusal {
    pub fn message(&self) -> String {
        match self {
            Refusal::Host(h) => format!(
                "The Host `{}` is not a name of this server: without --api-key, only IP \
                 addresses, localhost and hosts given with --allowed-host are accepted \
                 (protection against DNS rebinding)",
                shorten(h)
            ),
            Refusal::Origin(o) => format!(
                "Requests from web pages at `{}` are refused: without --api-key, only this \
                 server's own pages and hosts given with --allowed-host may call it",
                shorten(o)
            ),
        }
    }
}

fn shorten(s: &str) -> String {
    s.chars().take(100).collect()
}

/// Checks `Host` and `Origin` against the allowed names and CORS origins.
pub fn check(headers: &HeaderMap, allowed: &[String], cors: &[String]) -> Result<(), Refusal> {
    let host = headers
        .get(header::HOST)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    if let Some(host) = &host
        && !host_allowed(host_name(host), allowed)
    {
        return Err(Refusal::Host(host.clone()));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = String::from_utf8_lossy(origin.as_bytes()).into_owned();
        // `scheme://host[:port]`; `null` (sandboxed frames, files) has no host.
        let authority = origin.split_once("://").map(|(_, a)| a);
        let ok = crate::cors::allows(cors, &origin)
            || match authority {
                Some(a) => host.as_deref() == Some(a) || listed(host_name(a), allowed),
                None => false,
            };
        if !ok {
            return Err(Refusal::Origin(origin));
        }
    }
    Ok(())
}

/// The host of `host[:port]` (IPv6 in brackets).
fn host_name(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.rsplit_once(':').map_or(authority, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            authority
        }
    })
}

/// A name a request may give in `Host`.
fn host_allowed(name: &str, allowed: &[String]) -> bool {
    let lower = name.trim_end_matches('.').to_ascii_lowercase();
    lower.parse::<std::net::IpAddr>().is_ok()
        || lower == "localhost"
        || lower.ends_with(".localhost")
        || listed(name, allowed)
}

/// A name given with `--allowed-host`.
fn listed(name: &str, allowed: &[String]) -> bool {
    let name = name.trim_end_matches('.');
    allowed.iter().any(|a| {
        host_name(a)
            .trim_end_matches('.')
            .eq_ignore_ascii_case(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(host: Option<&str>, origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = host {
            h.insert(header::HOST, HeaderValue::from_str(v).unwrap());
        }
        if let Some(v) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn programs_and_the_servers_own_page_pass() {
        let allowed = vec!["lucid.internal".to_owned()];
        for (host, origin) in [
            (Some("127.0.0.1:8080"), None),
            (Some("localhost:8080"), None),
            (Some("[::1]:8080"), None),
            (Some("10.0.0.7"), None),
            (Some("lucid.internal:8080"), None),
            (Some("LUCID.internal"), None),
            (None, None),
            (Some("127.0.0.1:8080"), Some("http://127.0.0.1:8080")),
            (Some("localhost:8080"), Some("http://localhost:8080")),
            (Some("127.0.0.1:8080"), Some("https://lucid.internal")),
        ] {
            assert_eq!(
                check(&headers(host, origin), &allowed, &[]),
                Ok(()),
                "{host:?} {origin:?}"
            );
        }
    }

    #[test]
    fn rebinding_and_cross_site_pages_are_refused() {
        let allowed = vec!["lucid.internal".to_owned()];
        assert!(matches!(
            check(&headers(Some("evil.example:8080"), None), &allowed, &[]),
            Err(Refusal::Host(_))
        ));
        assert!(matches!(
            check(
                &headers(Some("evil.example:8080"), Some("http://evil.example:8080")),
                &allowed,
                &[]
            ),
            Err(Refusal::Host(_))
        ));
        for origin in [
            "http://evil.example",
            "null",
            "http://127.0.0.1:9999",
            "http://localhost.evil.example",
        ] {
            assert!(
                matches!(
                    check(
                        &headers(Some("127.0.0.1:8080"), Some(origin)),
                        &allowed,
                        &[]
                    ),
                    Err(Refusal::Origin(_))
                ),
                "{origin}"
            );
        }
        // A page at an origin given with --cors-origin may call; others not.
        let cors = vec!["https://app.example".to_owned()];
        let page = |origin| check(&headers(Some("127.0.0.1:8080"), Some(origin)), &[], &cors);
        assert_eq!(page("https://app.example"), Ok(()));
        assert!(matches!(
            page("https://evil.example"),
            Err(Refusal::Origin(_))
        ));
    }
}
