//! Durations in JSON and TOML: human strings such as `"30s"` or `"1m 30s"`, or a number of
//! seconds.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Parses `"30s"`, `"1m 30s"`, `"250ms"` or a bare number of seconds.
pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| format!("invalid duration `{s}`: {e}"));
    }
    humantime::parse_duration(s).map_err(|e| format!("invalid duration `{s}`: {e} (write e.g. \"30s\" or \"2m\")"))
}

/// Formats as a human string (`"1m 30s"`).
pub fn format(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Raw<'a> {
    Secs(f64),
    #[serde(borrow)]
    Text(std::borrow::Cow<'a, str>),
}

fn from_raw<E: serde::de::Error>(raw: Raw<'_>) -> Result<Duration, E> {
    match raw {
        Raw::Secs(s) => Duration::try_from_secs_f64(s).map_err(E::custom),
        Raw::Text(t) => parse(&t).map_err(E::custom),
    }
}

/// `#[serde(with = "duration")]` for `Duration`.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

/// `#[serde(with = "duration")]` for `Duration`.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    from_raw(Raw::deserialize(d)?)
}

/// `#[serde(with = "duration::option")]` for `Option<Duration>`.
pub mod option {
    use super::*;

    /// Serializes `Some` as a human string, `None` as null.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&super::format(*d)),
            None => s.serialize_none(),
        }
    }

    /// Accepts a human string, a number of seconds, or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<Raw<'de>>::deserialize(d)?.map(from_raw).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_human_and_numeric() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse("soon").unwrap_err().contains("soon"));
    }
}
