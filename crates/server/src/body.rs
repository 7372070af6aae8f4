//! Reading a JSON request body into a wire type, with errors that name the
//! field: malformed JSON, a wrong type or a missing field become a 400 whose
//! `param` is the path to the field (`messages[1].content`), and a body over
//! the size limit becomes a 413, and a body that does not arrive within
//! [`crate::ServerConfig::body_timeout`] a 408.
//!
//! Any content type is accepted: curl users often leave it out, and the
//! body is parsed as JSON either way.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// Refuses, by name, the first field of a nested request object that its
/// wire type does not know (`other`, its flattened rest), so that nothing
/// is silently ignored at any depth. `null`, `[]` and `{}` ask for nothing
/// and pass (SDKs send `refusal: null` or `annotations: []` back with an
/// assistant's message).
pub(crate) fn refuse_extra(
    other: &serde_json::Map<String, serde_json::Value>,
    at: &str,
) -> Result<(), ApiError> {
    use serde_json::Value;
    let set = |v: &Value| match v {
        Value::Null => false,
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    };
    match other.iter().find(|(_, v)| set(v)) {
        Some((key, _)) => Err(ApiError::invalid(
            format!("{at}.{key}"),
            format!("`{key}` is not supported in `{at}`"),
        )),
        None => Ok(()),
    }
}

/// A request body of type `T`.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.config().body_timeout;
        let read = tokio::time::timeout(limit, Bytes::from_request(req, state))
            .await
            .map_err(|_| ApiError::body_timeout(limit))?;
        let bytes = read.map_err(|rej| {
            if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(state.config().max_body_bytes)
            } else {
                ApiError::bad_request(format!("Could not read the request body: {rej}"))
            }
        })?;
        parse(&bytes).map(ApiJson)
    }
}

/// Parses `bytes` as `T`, naming the field at fault.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "The request body is empty; send a JSON object",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data if path != "." => ApiError::invalid(
                path.clone(),
                format!(
                    "Invalid value for `{path}`: {}",
                    strip_position(&inner.to_string())
                ),
            ),
            serde_json::error::Category::Data => ApiError::bad_request(format!(
                "Invalid request: {}",
                strip_position(&inner.to_string())
            )),
            _ => ApiError::bad_request(format!("The request body is not valid JSON: {inner}")),
        }
    })?;
    // `{...} garbage` is not a JSON body, however valid its start.
    de.end().map_err(|e| {
        ApiError::bad_request(format!(
            "The request body has more after its JSON value: {e}"
        ))
    })?;
    Ok(value)
}

/// serde_json's "at line 1 column 30" says nothing a field path does not.
fn strip_position(msg: &str) -> &str {
    msg.rfind(" at line ").map_or(msg, |i| &msg[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_data_after_the_json_value_is_refused() {
        assert!(parse::<serde_json::Value>(b"{\"a\": 1}\n").is_ok());
        for body in [&b"{\"a\": 1} x"[..], b"{} {}", b"[1] ]"] {
            let err = parse::<serde_json::Value>(body).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST);
            assert!(
                err.message.contains("more after its JSON value"),
                "{}",
                err.message
            );
        }
    }
}
