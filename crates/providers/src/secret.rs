//! A newtype for API keys that refuses to be printed.
//!
//! Keys reach error messages and logs in surprising ways (a `{:?}` of a config
//! struct, a vendor error body that echoes the key), so the key type itself
//! prints `***`, and [`Secret::redact`] scrubs a key out of any text that came
//! back from a server before that text is kept.

use std::fmt;

/// An API key. `Debug` and `Display` print `***`; only
/// [`expose`](Secret::expose) gives the key, for building a request header.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        Secret(key.into())
    }

    /// The key itself. Call it only to put the key into a request.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the key replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        if self.0.is_empty() {
            return text.to_owned();
        }
        text.replace(&self.0, "***")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_key() {
        let s = Secret::new("sk-very-secret");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(***)");
        assert_eq!(s.expose(), "sk-very-secret");
    }

    #[test]
    fn redacts_every_occurrence() {
        let s = Secret::new("sk-abc");
        assert_eq!(s.redact("bad key sk-abc (sk-abc)"), "bad key *** (***)");
        assert_eq!(Secret::new("").redact("text"), "text");
    }
}
