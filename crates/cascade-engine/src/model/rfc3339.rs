//! Timestamps in JSON as chrono writes them (RFC 3339, UTC, `Z`, fractional seconds in groups
//! of three digits as needed), written in one piece: `#[serde(with = "cascade_engine::model::rfc3339")]`
//! on a [`Timestamp`] field, [`option`] on an `Option<Timestamp>` one.
//!
//! chrono's own `Serialize` hands the text to the serializer in a dozen fragments, and
//! serde_json escapes each one separately: for the stores, which write every state and timeline
//! entry as JSON, that was about a tenth of all the work of a durable cascade. This writes
//! the same text (reading is chrono's own) at well under half the cost.
//!
//! ```
//! use cascade_engine::Timestamp;
//!
//! #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
//! struct At(#[serde(with = "cascade_engine::model::rfc3339")] Timestamp);
//!
//! let t: Timestamp = "2026-11-22T00:02:34.483683410Z".parse().unwrap();
//! assert_eq!(serde_json::to_string(&At(t)).unwrap(), serde_json::to_string(&t).unwrap());
//! let read: At = serde_json::from_str("\"2026-11-22T00:02:34.4836834Z\"").unwrap();
//! assert_eq!(read.0.timestamp_subsec_nanos(), 483_683_400);
//! ```

use chrono::SecondsFormat;
use serde::{Deserialize, Deserializer, Serializer};

use super::Timestamp;

/// Writes `t` as chrono would.
pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// Reads a timestamp as chrono does.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
    Timestamp::deserialize(d)
}

/// The same for `Option<Timestamp>` fields (`None` is `null`).
pub mod option {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Timestamp;

    /// Writes `t` as chrono would, `None` as `null`.
    pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    /// Reads an optional timestamp as chrono does.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
        Option::<Timestamp>::deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Both {
        #[serde(with = "super")]
        at: Timestamp,
        #[serde(with = "super::option")]
        maybe: Option<Timestamp>,
    }

    proptest! {
        /// The text is chrono's, for any time of any precision, and reads back the same.
        #[test]
        fn writes_what_chrono_writes(
            secs in -62_135_596_800i64..253_402_300_799,
            nanos in 0u32..1_000_000_000,
            round in 0usize..4,
        ) {
            let nanos = nanos - nanos % [1, 1_000, 1_000_000, 1_000_000_000][round];
            let t = Timestamp::from_timestamp(secs, nanos).expect("in range");
            let ours = serde_json::to_string(&Both { at: t, maybe: Some(t) }).expect("json");
            let chronos = serde_json::to_string(&serde_json::json!({ "at": t, "maybe": t })).expect("json");
            prop_assert_eq!(&ours, &chronos);
            let back: Both = serde_json::from_str(&ours).expect("read back");
            prop_assert_eq!(back, Both { at: t, maybe: Some(t) });
        }
    }

    #[test]
    fn none_is_null() {
        let t = Timestamp::UNIX_EPOCH;
        let text = serde_json::to_string(&Both { at: t, maybe: None }).expect("json");
        assert_eq!(text, r#"{"at":"1970-01-01T00:00:00Z","maybe":null}"#);
        assert_eq!(serde_json::from_str::<Both>(&text).expect("read back"), Both { at: t, maybe: None });
    }
}
