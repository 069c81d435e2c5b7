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

/// `#[serde(with = "duration::or_off")]` for an `Option<Duration>` a configuration file can
/// switch off: the string `"off"` (any case) or null is `None`, anything else a duration as
/// [`deserialize`] reads it, which must be more than zero (zero is refused rather than guessed
/// at: it could mean "off" or "at once"). `None` serializes as `"off"`.
pub mod or_off {
    use super::*;

    /// Serializes `Some` as a human string, `None` as `"off"`.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&super::format(*d)),
            None => s.serialize_str("off"),
        }
    }

    /// Accepts `"off"`, null, a human string or a number of seconds above zero.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        use serde::de::Error;
        let raw = match Option::<Raw<'de>>::deserialize(d)? {
            None => return Ok(None),
            Some(Raw::Text(t)) if t.trim().eq_ignore_ascii_case("off") => return Ok(None),
            Some(raw) => raw,
        };
        let d: Duration = from_raw(raw)?;
        if d.is_zero() {
            return Err(D::Error::custom("must be more than 0; write \"off\" to switch it off"));
        }
        Ok(Some(d))
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

    #[derive(serde::Deserialize, serde::Serialize, PartialEq, Debug)]
    struct Switchable {
        #[serde(with = "or_off")]
        d: Option<Duration>,
    }

    #[test]
    fn off_switches_off_and_zero_is_refused() {
        let read = |json: &str| serde_json::from_str::<Switchable>(json).map(|s| s.d);
        assert_eq!(read(r#"{"d": "off"}"#).expect("off"), None);
        assert_eq!(read(r#"{"d": "OFF"}"#).expect("off"), None);
        assert_eq!(read(r#"{"d": null}"#).expect("null"), None);
        assert_eq!(read(r#"{"d": "30days"}"#).expect("days"), Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(read(r#"{"d": 60}"#).expect("seconds"), Some(Duration::from_secs(60)));
        for zero in [r#"{"d": 0}"#, r#"{"d": "0s"}"#] {
            let e = read(zero).expect_err("zero").to_string();
            assert!(e.contains("\"off\""), "{e}");
        }
        let off = serde_json::to_string(&Switchable { d: None }).expect("json");
        assert_eq!(off, r#"{"d":"off"}"#);
    }
}
