use std::fmt;
use std::iter::Sum;
use std::ops::Add;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An amount of money in the deployment's one currency, held exactly in millionths.
///
/// It appears in JSON and TOML as a decimal number (`0.05`) and adds up without rounding drift.
///
/// ```
/// use cascade_engine::Cost;
/// let sms: Cost = "0.0079".parse().unwrap();
/// assert_eq!((sms + sms).to_string(), "0.0158");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cost(i64);

impl Cost {
    /// Nothing.
    pub const ZERO: Cost = Cost(0);

    /// From millionths of the currency unit.
    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    /// In millionths of the currency unit.
    pub const fn micros(self) -> i64 {
        self.0
    }

    /// Rounded to the nearest millionth.
    pub fn from_f64(amount: f64) -> Self {
        Self((amount * 1_000_000.0).round() as i64)
    }

    /// As a floating-point amount (for display and JSON).
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / 1_000_000.0
    }

    /// This price times a count.
    pub fn times(self, n: u64) -> Self {
        Self(self.0.saturating_mul(n as i64))
    }
}

impl Add for Cost {
    type Output = Cost;
    fn add(self, rhs: Cost) -> Cost {
        Cost(self.0.saturating_add(rhs.0))
    }
}

impl Sum for Cost {
    fn sum<I: Iterator<Item = Cost>>(iter: I) -> Cost {
        iter.fold(Cost::ZERO, Add::add)
    }
}

impl fmt::Display for Cost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let (whole, frac) = (abs / 1_000_000, abs % 1_000_000);
        if frac == 0 {
            return write!(f, "{sign}{whole}");
        }
        let digits = format!("{frac:06}");
        write!(f, "{sign}{whole}.{}", digits.trim_end_matches('0'))
    }
}

impl fmt::Debug for Cost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cost({self})")
    }
}

impl std::str::FromStr for Cost {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let (neg, t) = t.strip_prefix('-').map_or((false, t), |r| (true, r));
        let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
        let bad = || format!("invalid amount `{s}`: expected a decimal number such as 0.05");
        if whole.is_empty() && frac.is_empty()
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
            || frac.len() > 6
        {
            return Err(bad());
        }
        let whole: i64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| bad())? };
        let frac: i64 = format!("{frac:0<6}").parse().map_err(|_| bad())?;
        let micros = whole.checked_mul(1_000_000).and_then(|w| w.checked_add(frac)).ok_or_else(bad)?;
        Ok(Cost(if neg { -micros } else { micros }))
    }
}

impl Serialize for Cost {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.as_f64())
    }
}

impl<'de> Deserialize<'de> for Cost {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) if n.is_finite() => Ok(Cost::from_f64(n)),
            Raw::Num(n) => Err(serde::de::Error::custom(format!("invalid amount {n}"))),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_exactly() {
        let c: Cost = "0.05".parse().unwrap();
        assert_eq!(c.micros(), 50_000);
        assert_eq!(c.to_string(), "0.05");
        assert_eq!(Cost::from_micros(3_000_000).to_string(), "3");
        assert!("1.2345678".parse::<Cost>().is_err());
        assert!("abc".parse::<Cost>().is_err());
        let total: Cost = std::iter::repeat_n(Cost::from_f64(0.1), 10).sum();
        assert_eq!(total, Cost::from_micros(1_000_000));
    }

    #[test]
    fn json_round_trip() {
        let c = Cost::from_f64(0.0079);
        let j = serde_json::to_string(&c).unwrap();
        assert_eq!(j, "0.0079");
        assert_eq!(serde_json::from_str::<Cost>(&j).unwrap(), c);
        assert_eq!(serde_json::from_str::<Cost>("\"0.0079\"").unwrap(), c);
    }
}
