//! Durations written as `"1s"`, `"500ms"`, `"2m"` in scenario and config files.

/// `Option<Duration>` fields.
pub mod option {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    /// Reads `"1s"`, `"250ms"` or `null`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => humantime::parse_duration(s.trim()).map(Some).map_err(|e| {
                serde::de::Error::custom(format!("{s:?} is not a duration like \"1s\" or \"500ms\": {e}"))
            }),
        }
    }
}
