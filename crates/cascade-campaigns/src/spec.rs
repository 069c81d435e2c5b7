//! A campaign's settings: what to send, through which policy, when, and how fast.
//!
//! A [`CampaignSpec`] is what an operator chooses; it is stored as the campaign's `spec`
//! ([`cascade_engine::store::CampaignRecord::spec`]) together with what the import found
//! ([`ImportSummary`]), so a campaign runs the same after a restart.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use cascade_engine::{Message, Policy, Timestamp};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::schedule::Window;

/// Everything a campaign is started with.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignSpec {
    /// What to say: the text template (with `{{contact.name}}`, `{{contact.fields.city}}`, …),
    /// an attachment, and per-channel content (a Viber image and button, an SMS text).
    pub message: Message,
    /// The chain every recipient's cascade walks.
    pub policy: Arc<Policy>,
    /// Extra template variables, the same for every recipient (`{"offer": {...}}`).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub variables: serde_json::Value,
    /// When to send.
    #[serde(default)]
    pub schedule: Schedule,
    /// How fast: cascades started per second or minute (`"50/s"`, `"600/min"`).
    pub rate: Rate,
    /// Caller data kept on every cascade of the campaign (beside `campaign` and `recipient`,
    /// which are always added).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub metadata: serde_json::Value,
}

/// When a campaign sends.
#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Nothing is started before this (default: at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<Timestamp>,
    /// Recipients not started by then end as `expired` (default: no end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_at: Option<Timestamp>,
    /// Days and hours to send in (default: any time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    /// The time zone of the window (an IANA name; default `UTC`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<Tz>,
    /// Judge the window in each recipient's own time zone where it is known: a `time_zone`
    /// column, or the country of the phone number when that country has one time zone.
    /// Others use `time_zone`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recipient_time_zone: bool,
}

impl Schedule {
    /// The campaign's time zone (`UTC` unless set).
    pub fn zone(&self) -> Tz {
        self.time_zone.unwrap_or(Tz::UTC)
    }

    /// Checks the dates against each other; each problem names its field.
    pub fn check(&self) -> Result<(), String> {
        if let (Some(start), Some(end)) = (self.start_at, self.end_at)
            && end <= start
        {
            return Err(format!("schedule.end_at: {end} is not after schedule.start_at {start}"));
        }
        Ok(())
    }
}

/// A send rate: `count` cascades started per `per`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Rate {
    /// How many…
    pub count: u32,
    /// …per this long (a second, a minute or an hour).
    pub per: Duration,
}

impl Rate {
    /// Cascades per second.
    pub fn per_second(self) -> f64 {
        f64::from(self.count) / self.per.as_secs_f64()
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            60 => "min",
            3600 => "h",
            _ => "s",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// A rate that could not be read.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("rate {input:?}: {reason} (write it like \"50/s\", \"600/min\" or \"1000/h\")")]
pub struct RateError {
    input: String,
    reason: &'static str,
}

impl FromStr for Rate {
    type Err = RateError;
    fn from_str(s: &str) -> Result<Self, RateError> {
        let err = |reason| RateError { input: s.to_owned(), reason };
        let (count, unit) = s.trim().split_once('/').ok_or_else(|| err("no \"/\" between count and unit"))?;
        let count: u32 = count.trim().parse().map_err(|_| err("the count is not a whole number"))?;
        if count == 0 {
            return Err(err("the count must be at least 1"));
        }
        let per = match unit.trim().to_ascii_lowercase().as_str() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(err("the unit is not s, min or h")),
        };
        if f64::from(count) / per.as_secs_f64() > 100_000.0 {
            return Err(err("more than 100,000 per second"));
        }
        Ok(Rate { count, per })
    }
}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What the import of a campaign's list found, kept with its settings.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct ImportSummary {
    /// Recipients stored.
    pub valid: u64,
    /// Rows refused.
    pub invalid: u64,
    /// Rows repeating an earlier phone number.
    pub duplicate: u64,
    /// The distinct time zones of the recipients' windows.
    pub zones: Vec<String>,
}

impl ImportSummary {
    /// The zones with their time zones (names that no longer parse are left out).
    pub fn zones(&self) -> Vec<(String, Tz)> {
        self.zones.iter().filter_map(|z| Some((z.clone(), z.parse::<Tz>().ok()?))).collect()
    }
}

/// A campaign's stored `spec`: the settings and the import summary.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Stored {
    /// The settings.
    pub spec: CampaignSpec,
    /// What the import found.
    pub import: ImportSummary,
}
