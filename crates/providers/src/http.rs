//! HTTP plumbing shared by the vendor adapters: one client per provider with
//! its timeouts, turning transport failures and unsuccessful statuses into
//! [`ProviderError`]s, and reading bodies with an idle timeout.
//!
//! Every string that came from the network or from a transport error passes
//! through [`Secret::redact`] here, before any adapter or log sees it, so that
//! a server that echoes the key back cannot get it into an error message.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};

use crate::config::{ConfigError, HttpSettings};
use crate::{ProviderError, Secret, TimeoutPhase};

/// Largest non-streamed body accepted; a chat completion is far smaller.
const MAX_BODY: usize = 32 * 1024 * 1024;
/// How much of an error body is read to find the vendor's message.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// How much of an unparseable error body is quoted in the error.
const MAX_QUOTED: usize = 300;

/// What a vendor module found in an error body.
#[derive(Debug, Default)]
pub(crate) struct ErrorBody {
    /// The vendor's human-readable message.
    pub message: String,
    /// The body says the key is bad even though the status is not 401/403
    /// (Gemini answers an invalid key with 400 `API_KEY_INVALID`).
    pub unauthorized: bool,
}

/// Reads a vendor's error body; `None` if it is not in the vendor's shape.
pub(crate) type ErrorParser = fn(&[u8]) -> Option<ErrorBody>;

/// One provider's HTTP client, base URL, timeouts and key (for redaction).
#[derive(Debug)]
pub(crate) struct HttpClient {
    provider: String,
    client: reqwest::Client,
    base_url: String,
    connect_timeout: Duration,
    read_timeout: Duration,
    secret: Option<Secret>,
}

impl HttpClient {
    pub(crate) fn new(provider: &str, settings: &HttpSettings) -> Result<Self, ConfigError> {
        let base_url = settings.base_url.trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&base_url).map_err(|e| ConfigError::InvalidBaseUrl {
            provider: provider.to_owned(),
            url: base_url.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ConfigError::InvalidBaseUrl {
                provider: provider.to_owned(),
                url: base_url,
                reason: "the scheme must be http or https".to_owned(),
            });
        }
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .user_agent(concat!("lucid/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::HttpClient {
                provider: provider.to_owned(),
                detail: error_chain(&e),
            })?;
        Ok(HttpClient {
            provider: provider.to_owned(),
            client,
            base_url,
            connect_timeout: settings.connect_timeout,
            read_timeout: settings.read_timeout,
            secret: settings.api_key.clone(),
        })
    }

    pub(crate) fn secret(&self) -> Option<&Secret> {
        self.secret.as_ref()
    }

    pub(crate) fn redact(&self, text: &str) -> String {
        match &self.secret {
            Some(s) => s.redact(text),
            None => text.to_owned(),
        }
    }

    /// POSTs a JSON body to `base_url + path`. A successful status gives the
    /// body to read; anything else becomes the matching error.
    pub(crate) async fn post_json(
        &self,
        path: &str,
        headers: HeaderMap,
        body: Vec<u8>,
        parse_error: ErrorParser,
    ) -> Result<BodyReader, ProviderError> {
        let url = format!("{}{}", self.base_url, path);
        tracing::debug!(provider = %self.provider, url = %self.redact(&url), bytes = body.len(), "sending request");
        let request = self
            .client
            .post(&url)
            .headers(headers)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body);
        let response = match tokio::time::timeout(self.read_timeout, request.send()).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(self.transport_error(&e, TimeoutPhase::Response)),
            Err(_) => {
                return Err(ProviderError::Timeout {
                    provider: self.provider.clone(),
                    phase: TimeoutPhase::Response,
                    after: self.read_timeout,
                });
            }
        };
        let status = response.status();
        tracing::debug!(provider = %self.provider, status = status.as_u16(), "response headers received");
        let reader = BodyReader {
            provider: self.provider.clone(),
            response,
            idle: self.read_timeout,
            phase: TimeoutPhase::Response,
            secret: self.secret.clone(),
            connect_timeout: self.connect_timeout,
        };
        if status.is_success() {
            Ok(reader)
        } else {
            Err(reader.into_error(parse_error).await)
        }
    }

    fn transport_error(&self, err: &reqwest::Error, phase: TimeoutPhase) -> ProviderError {
        transport_error(
            &self.provider,
            self.secret.as_ref(),
            err,
            phase,
            self.connect_timeout,
            self.read_timeout,
        )
    }
}

fn transport_error(
    provider: &str,
    secret: Option<&Secret>,
    err: &reqwest::Error,
    phase: TimeoutPhase,
    connect_timeout: Duration,
    read_timeout: Duration,
) -> ProviderError {
    if err.is_timeout() {
        let (phase, after) = if err.is_connect() {
            (TimeoutPhase::Connect, connect_timeout)
        } else {
            (phase, read_timeout)
        };
        return ProviderError::Timeout {
            provider: provider.to_owned(),
            phase,
            after,
        };
    }
    let detail = error_chain(err);
    let detail = match secret {
        Some(s) => s.redact(&detail),
        None => detail,
    };
    ProviderError::Connect {
        provider: provider.to_owned(),
        detail,
    }
}

/// A response body read chunk by chunk, each read bounded by the idle timeout.
/// Dropping it closes the connection.
#[derive(Debug)]
pub(crate) struct BodyReader {
    provider: String,
    response: reqwest::Response,
    idle: Duration,
    phase: TimeoutPhase,
    secret: Option<Secret>,
    connect_timeout: Duration,
}

impl BodyReader {
    pub(crate) fn provider(&self) -> &str {
        &self.provider
    }

    pub(crate) fn secret(&self) -> Option<&Secret> {
        self.secret.as_ref()
    }

    /// Reads the body as a stream: timeouts are reported as waiting for the
    /// next streamed chunk.
    pub(crate) fn streaming(mut self) -> Self {
        self.phase = TimeoutPhase::Stream;
        self
    }

    /// The next chunk, or `None` at the end of the body.
    pub(crate) async fn chunk(&mut self) -> Result<Option<Bytes>, ProviderError> {
        match tokio::time::timeout(self.idle, self.response.chunk()).await {
            Ok(Ok(chunk)) => Ok(chunk),
            Ok(Err(e)) => Err(transport_error(
                &self.provider,
                self.secret.as_ref(),
                &e,
                self.phase,
                self.connect_timeout,
                self.idle,
            )),
            Err(_) => Err(ProviderError::Timeout {
                provider: self.provider.clone(),
                phase: self.phase,
                after: self.idle,
            }),
        }
    }

    /// The whole body, up to `limit` bytes.
    async fn read_limited(&mut self, limit: usize) -> Result<Vec<u8>, ProviderError> {
        let mut body = Vec::new();
        while let Some(chunk) = self.chunk().await? {
            if body.len() + chunk.len() > limit {
                return Err(ProviderError::protocol(
                    &self.provider,
                    format!("the response body is larger than {limit} bytes"),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Reads the whole body and parses it as JSON of type `T`.
    pub(crate) async fn json<T: serde::de::DeserializeOwned>(mut self) -> Result<T, ProviderError> {
        let body = self.read_limited(MAX_BODY).await?;
        serde_json::from_slice(&body).map_err(|e| {
            ProviderError::protocol(
                &self.provider,
                format!("the response is not the expected JSON: {e}"),
            )
        })
    }

    /// Turns an unsuccessful response into the matching error.
    async fn into_error(mut self, parse_error: ErrorParser) -> ProviderError {
        let status = self.response.status();
        let retry_after = parse_retry_after(self.response.headers(), SystemTime::now());
        // A body that cannot be read still leaves the status to report.
        let body = self.read_limited(MAX_ERROR_BODY).await.unwrap_or_default();
        let parsed = parse_error(&body);
        let unauthorized = parsed.as_ref().is_some_and(|p| p.unauthorized);
        let message = match parsed {
            Some(p) if !p.message.is_empty() => p.message,
            _ => {
                let text = String::from_utf8_lossy(&body);
                let text = text.trim();
                if text.is_empty() {
                    status.canonical_reason().unwrap_or("no message").to_owned()
                } else {
                    truncate(text, MAX_QUOTED)
                }
            }
        };
        let message = match &self.secret {
            Some(s) => s.redact(&message),
            None => message,
        };
        let provider = self.provider.clone();
        let code = status.as_u16();
        tracing::debug!(provider = %provider, status = code, "unsuccessful response");
        if code == 401 || code == 403 || unauthorized {
            ProviderError::Unauthorized {
                provider,
                status: code,
                message,
            }
        } else if code == 429 {
            ProviderError::RateLimited {
                provider,
                retry_after,
                message,
            }
        } else {
            ProviderError::Status {
                provider,
                status: code,
                message,
                retry_after,
            }
        }
    }
}

/// A header holding a key, marked sensitive so that HTTP libraries never
/// print it.
pub(crate) fn key_header(
    provider: &str,
    prefix: &str,
    key: &Secret,
) -> Result<HeaderValue, ConfigError> {
    let mut value = HeaderValue::from_str(&format!("{prefix}{}", key.expose())).map_err(|_| {
        ConfigError::InvalidApiKey {
            provider: provider.to_owned(),
        }
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// The wait a response asks for: OpenAI's `retry-after-ms`, else the standard
/// `Retry-After` as seconds or as an HTTP date.
pub(crate) fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && let Ok(d) = Duration::try_from_secs_f64(ms / 1000.0)
    {
        return Some(d);
    }
    let value = header("retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// An error and its sources, joined with `: `.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let s = e.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = e.source();
    }
    text
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn retry_after_forms() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        let check = |pairs: &[(&'static str, &'static str)], expect: Option<Duration>| {
            assert_eq!(parse_retry_after(&headers(pairs), now), expect, "{pairs:?}");
        };
        check(&[("retry-after", "2")], Some(Duration::from_secs(2)));
        check(&[("retry-after", "0.5")], Some(Duration::from_millis(500)));
        check(
            &[("retry-after", "Wed, 21 Oct 2015 07:28:30 GMT")],
            Some(Duration::from_secs(30)),
        );
        check(
            &[("retry-after", "Wed, 21 Oct 2015 07:27:00 GMT")],
            Some(Duration::ZERO),
        );
        check(
            &[("retry-after-ms", "250"), ("retry-after", "9")],
            Some(Duration::from_millis(250)),
        );
        check(&[("retry-after", "soon")], None);
        check(&[("retry-after", "-1")], None);
        check(&[], None);
    }

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h…");
        assert_eq!(truncate("abc", 5), "abc");
    }
}
