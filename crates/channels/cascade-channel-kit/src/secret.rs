//! [`Secret`]: a credential that never shows in logs or `Debug` output.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A credential (token, password, app secret). `Debug` and `Display` print `***`; the value is
/// read with [`expose`](Secret::expose) where it goes on the wire, and nowhere else.
///
/// Deserializing refuses a blank value; building one in code (`new`, `From`) does not, so the
/// signature checks of [`webhook`](crate::webhook) refuse a blank key themselves.
///
/// ```
/// use cascade_channel_kit::Secret;
/// let token = Secret::new("EAAG-very-secret");
/// assert_eq!(format!("{token:?}"), "Secret(***)");
/// assert_eq!(token.expose(), "EAAG-very-secret");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place it is needed.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.trim().is_empty() {
            return Err(serde::de::Error::custom("must not be empty"));
        }
        Ok(Self(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed_and_never_empty() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Config {
            token: Secret,
        }
        let c: Config = serde_json::from_str(r#"{"token": "abc123"}"#).expect("parse");
        let shown = format!("{c:?} {}", c.token);
        assert!(!shown.contains("abc123"), "{shown}");
        assert_eq!(c.token.expose(), "abc123");
        let err = serde_json::from_str::<Config>(r#"{"token": " "}"#).expect_err("empty");
        assert!(err.to_string().contains("must not be empty"), "{err}");
    }
}
