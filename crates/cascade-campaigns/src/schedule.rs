//! Sending windows: the days of the week and the hours a campaign sends in, judged on the
//! clock of a time zone — the campaign's, or the recipient's own where it is known.
//!
//! ## Windows
//!
//! A [`Window`] is written `<days> <from>-<to>`:
//!
//! | written | open |
//! | --- | --- |
//! | `mon-fri 09:00-21:00` | Monday to Friday, 09:00 to 21:00 |
//! | `mon,wed,fri 09:00-18:30` | listed days |
//! | `sat-sun 10:00-14:00` | a range of days |
//! | `fri-mon 22:00-02:00` | ranges may wrap the week (Friday, Saturday, Sunday, Monday) |
//! | `daily 21:00-06:00`, `21:00-06:00` | every day |
//! | `mon-fri 18:00-24:00` | `24:00` is the end of the day |
//!
//! Day names are `mon`…`sun` or `monday`…`sunday`, in any case. Hours are `HH:MM` (24-hour
//! clock; `9:00` is read as `09:00`). A window includes its opening minute and excludes its
//! closing one: `09:00-21:00` is open at 20:59:59, closed at 21:00.
//!
//! **Crossing midnight.** When `from` is later than `to`, the window runs past midnight into
//! the next day, and the days listed are the days it *opens*: `fri 22:00-02:00` is open from
//! Friday 22:00 to Saturday 02:00, so Saturday 01:00 is inside and Friday 01:00 is not (unless
//! Thursday is listed too).
//!
//! **The clock.** Whether a window is open is judged on the wall clock of the time zone at
//! that instant: its local date, weekday and time of day. Around daylight saving time changes:
//!
//! - *Clocks go forward* (a local hour does not exist, e.g. 02:00–03:00 in `America/New_York`
//!   on 2026-03-08): a window whose opening time falls in the gap opens at the first instant
//!   after it (03:00 local). A window lying entirely inside the gap does not open that day.
//! - *Clocks go back* (a local hour happens twice, e.g. 01:00–02:00 on 2026-11-01): a window
//!   opening at a time that happens twice opens at the first of the two. As the clock decides,
//!   a window that opens or closes inside the repeated hour is open again for the part of it
//!   the clock passes through a second time (`20:00-01:30` closes at 01:30 EDT, and is open
//!   once more from 01:00 to 01:30 EST).
//!
//! [`Window::next_open`] and [`Window::next_close`] give the instants the window next opens and
//! closes; they are exact (to the second) and consistent with [`Window::is_open`].
//!
//! ## Time zones of recipients
//!
//! [`recipient_zone`] picks the clock a recipient is judged on: the recipient's own IANA time
//! zone when the list gives one (the custom field `time_zone`, see [`crate::columns`]), else —
//! when inference is asked for — the zone of the country of their phone number, else the
//! campaign's zone. Only countries with a single clock have a zone to infer
//! ([`zone_of_region`]): `GB` is `Europe/London`, `DE` is `Europe/Berlin`, while the United
//! States, Canada, Russia, Brazil, Australia, Mexico and the other countries with several
//! clocks give none, and their recipients are judged on the campaign's zone.
//!
//! ```
//! use cascade_campaigns::schedule::{Window, zone_of_region};
//! use chrono::{TimeZone, Utc};
//!
//! let window: Window = "Mon-Fri 09:00-21:00".parse()?;
//! assert_eq!(window.to_string(), "mon-fri 09:00-21:00");
//! let tz = zone_of_region("GB").unwrap();
//! // Saturday 2026-06-06, 12:00 UTC (13:00 in London): closed until Monday 09:00 BST.
//! let at = Utc.with_ymd_and_hms(2026, 6, 6, 12, 0, 0).unwrap();
//! assert!(!window.is_open(at, tz));
//! assert_eq!(window.next_open(at, tz), Utc.with_ymd_and_hms(2026, 6, 8, 8, 0, 0).unwrap());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod zones;

use std::fmt;
use std::str::FromStr;

use cascade_engine::{Contact, Timestamp};
use chrono::{Datelike, Duration, LocalResult, NaiveDateTime, NaiveTime, Offset, TimeZone, Timelike, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::phone::Region;

/// Minutes in a day: a window's `to` of `24:00`.
const DAY: u16 = 24 * 60;

/// A set of days of the week.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Days(u8);

impl Days {
    /// Every day of the week.
    pub const ALL: Days = Days(0x7f);

    /// Whether `day` is in the set.
    pub fn contains(self, day: Weekday) -> bool {
        self.0 & bit(day) != 0
    }

    /// The set with `day` added.
    #[must_use]
    pub fn with(self, day: Weekday) -> Days {
        Days(self.0 | bit(day))
    }

    /// Whether the set has no days.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The days in the set, Monday first.
    pub fn iter(self) -> impl Iterator<Item = Weekday> {
        WEEK.into_iter().filter(move |&d| self.contains(d))
    }
}

fn bit(day: Weekday) -> u8 {
    1 << day.num_days_from_monday()
}

const WEEK: [Weekday; 7] =
    [Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri, Weekday::Sat, Weekday::Sun];

impl FromIterator<Weekday> for Days {
    fn from_iter<I: IntoIterator<Item = Weekday>>(iter: I) -> Self {
        iter.into_iter().fold(Days::default(), Days::with)
    }
}

/// The canonical text: `daily`, or runs of consecutive days as ranges and single days,
/// separated by `,` (`mon-fri`, `mon,wed,fri`, `sat-sun`, `fri-mon`). A run that wraps the
/// week comes first.
impl fmt::Display for Days {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Days::ALL {
            return f.write_str("daily");
        }
        // Start at the beginning of the run that holds Monday, or at Monday.
        let mut start = Weekday::Mon;
        for _ in 0..6 {
            if !(self.contains(start) && self.contains(start.pred())) {
                break;
            }
            start = start.pred();
        }
        let mut first = true;
        let mut day = start;
        for _ in 0..7 {
            if self.contains(day) && (day == start || !self.contains(day.pred())) {
                let mut last = day;
                while self.contains(last.succ()) && last.succ() != start {
                    last = last.succ();
                }
                if !first {
                    f.write_str(",")?;
                }
                first = false;
                f.write_str(short_name(day))?;
                if last != day {
                    write!(f, "-{}", short_name(last))?;
                }
            }
            day = day.succ();
        }
        Ok(())
    }
}

impl fmt::Debug for Days {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn short_name(day: Weekday) -> &'static str {
    ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][day.num_days_from_monday() as usize]
}

fn parse_day(name: &str) -> Option<Weekday> {
    const NAMES: [(&str, &str); 7] = [
        ("mon", "monday"),
        ("tue", "tuesday"),
        ("wed", "wednesday"),
        ("thu", "thursday"),
        ("fri", "friday"),
        ("sat", "saturday"),
        ("sun", "sunday"),
    ];
    NAMES
        .iter()
        .position(|(short, long)| name.eq_ignore_ascii_case(short) || name.eq_ignore_ascii_case(long))
        .map(|i| WEEK[i])
}

/// A sending window: days of the week and a range of hours, e.g. `mon-fri 09:00-21:00` (see
/// the [module documentation](self) for the syntax, crossing midnight and DST).
///
/// Parsed from text ([`FromStr`]), written back in a canonical form ([`Display`](fmt::Display):
/// lower-case three-letter days, `daily` for every day, `HH:MM`), and serialized as that
/// text.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    days: Days,
    /// Minutes after midnight, `0..DAY`.
    from: u16,
    /// Minutes after midnight, `1..=DAY`; less than `from` when the window crosses midnight.
    to: u16,
}

impl Window {
    /// The days the window opens on.
    pub fn days(&self) -> Days {
        self.days
    }

    /// The time the window opens.
    pub fn from(&self) -> NaiveTime {
        minutes(self.from)
    }

    /// The time the window closes; `00:00` when it closes at midnight (written `24:00` when
    /// the window opens and closes on the same day).
    pub fn to(&self) -> NaiveTime {
        minutes(self.to % DAY)
    }

    /// Whether the window runs past midnight into the next day (`from` later than `to`).
    pub fn crosses_midnight(&self) -> bool {
        self.from > self.to
    }

    /// How long the window stays open, by the clock.
    fn length(&self) -> u16 {
        if self.from < self.to { self.to - self.from } else { DAY - self.from + self.to }
    }

    /// Whether the window is open at `at`, judged on the wall clock of `tz` (the local weekday
    /// and time of day of `at`).
    pub fn is_open(&self, at: Timestamp, tz: Tz) -> bool {
        self.open_on_clock(local(at, tz))
    }

    fn open_on_clock(&self, clock: NaiveDateTime) -> bool {
        let second = clock.num_seconds_from_midnight();
        let (from, to) = (u32::from(self.from) * 60, u32::from(self.to) * 60);
        let day = clock.weekday();
        if self.from < self.to {
            self.days.contains(day) && (from..to).contains(&second)
        } else {
            (self.days.contains(day) && second >= from) || (self.days.contains(day.pred()) && second < to)
        }
    }

    /// The first instant at or after `at` at which the window is open: `at` itself when it is
    /// open, else the instant it next opens.
    ///
    /// The opening instant follows the DST rules of the [module documentation](self): an
    /// opening time inside a spring-forward gap opens at the first instant after the gap, an
    /// opening time that happens twice opens at the first of the two, and a window lying
    /// entirely inside a gap is skipped that day (the next opening may then be up to two weeks
    /// away). The answer is exact to the second and always [`is_open`](Self::is_open).
    pub fn next_open(&self, at: Timestamp, tz: Tz) -> Timestamp {
        if self.is_open(at, tz) {
            return at;
        }
        // Every window is open some minutes every week; no time zone has skipped them for
        // weeks, so the search always ends well within its bound.
        self.next_change(at, tz, true).unwrap_or(at)
    }

    /// When the window, open at `at`, closes: the first instant after `at` at which it is
    /// closed. `None` when it is closed at `at` — and for `daily 00:00-24:00`, which never
    /// closes.
    pub fn next_close(&self, at: Timestamp, tz: Tz) -> Option<Timestamp> {
        if !self.is_open(at, tz) || (self.days == Days::ALL && self.from == 0 && self.to == DAY) {
            return None;
        }
        self.next_change(at, tz, false)
    }

    /// The first instant after `at` at which [`is_open`](Self::is_open) is `open`.
    ///
    /// Seen as a function of the instant, `is_open` changes only where the wall clock reaches
    /// an opening (or closing) time of a listed day, or where the clock jumps (a change of UTC
    /// offset). Those instants are the candidates: the first of them, in time, at which the
    /// window is `open` is the answer. They are gathered eight days at a time.
    fn next_change(&self, at: Timestamp, tz: Tz, open: bool) -> Option<Timestamp> {
        const SPAN: Duration = Duration::days(8);
        let length = Duration::minutes(i64::from(self.length()));
        let mut candidates = Vec::new();
        let mut start = at;
        for _ in 0..8 {
            // Out of chrono's range (some 260,000 years away) there is nothing to find.
            let end = start.checked_add_signed(SPAN)?;
            candidates.clear();
            let first = local(start, tz).date().checked_sub_signed(Duration::days(2))?;
            let last = local(end, tz).date().checked_add_signed(Duration::days(1))?;
            for day in first.iter_days().take_while(|d| *d <= last) {
                if self.days.contains(day.weekday()) {
                    let opens = day.and_time(self.from());
                    let clock = if open { Some(opens) } else { opens.checked_add_signed(length) };
                    if let Some(clock) = clock {
                        instants(tz, clock, &mut candidates);
                    }
                }
            }
            offset_changes(tz, start, end, &mut candidates);
            candidates.retain(|c| *c > start && *c <= end);
            candidates.sort_unstable();
            if let Some(found) = candidates.iter().find(|c| self.is_open(**c, tz) == open) {
                return Some(*found);
            }
            start = end;
        }
        None
    }
}

/// The wall clock of `tz` at `at`.
fn local(at: Timestamp, tz: Tz) -> NaiveDateTime {
    tz.from_utc_datetime(&at.naive_utc()).naive_local()
}

/// The instants the wall clock of `tz` shows `clock`: none (in a gap), one, or two (in a
/// repeated hour).
fn instants(tz: Tz, clock: NaiveDateTime, out: &mut Vec<Timestamp>) {
    match tz.from_local_datetime(&clock) {
        LocalResult::Single(t) => out.push(t.to_utc()),
        LocalResult::Ambiguous(a, b) => out.extend([a.to_utc(), b.to_utc()]),
        LocalResult::None => {}
    }
}

/// The UTC offset of `tz` at the Unix time `second`, in seconds.
fn offset_at(tz: Tz, second: i64) -> Option<i32> {
    let at = chrono::DateTime::from_timestamp(second, 0)?;
    Some(tz.offset_from_utc_datetime(&at.naive_utc()).fix().local_minus_utc())
}

/// Adds the instants in `(start, end]` at which the UTC offset of `tz` changes. Offsets are
/// compared every six hours (no zone changes twice within that) and each change is found to
/// the second.
fn offset_changes(tz: Tz, start: Timestamp, end: Timestamp, out: &mut Vec<Timestamp>) {
    const STEP: i64 = 6 * 3600;
    let (mut a, stop) = (start.timestamp(), end.timestamp() + 1);
    let Some(mut before) = offset_at(tz, a) else { return };
    while a < stop {
        let b = (a + STEP).min(stop);
        let Some(after) = offset_at(tz, b) else { return };
        if after != before {
            // offset(lo) == before, offset(hi) != before: the change is in (lo, hi].
            let (mut lo, mut hi) = (a, b);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if offset_at(tz, mid) == Some(before) {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            out.extend(chrono::DateTime::from_timestamp(hi, 0));
        }
        (a, before) = (b, after);
    }
}

fn minutes(m: u16) -> NaiveTime {
    NaiveTime::from_hms_opt(u32::from(m / 60), u32::from(m % 60), 0).unwrap_or(NaiveTime::MIN)
}

fn write_minutes(f: &mut fmt::Formatter<'_>, m: u16) -> fmt::Result {
    write!(f, "{:02}:{:02}", m / 60, m % 60)
}

/// The canonical form: `mon-fri 09:00-21:00`, `daily 21:00-06:00`, `sat-sun 18:00-24:00`.
impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", self.days)?;
        write_minutes(f, self.from)?;
        f.write_str("-")?;
        write_minutes(f, self.to)
    }
}

impl fmt::Debug for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Window({self})")
    }
}

/// A sending window that cannot be read: the text, and what is wrong with it. Displayed as
/// `window "mon-fry 09:00-21:00": unknown day "fry" (expected mon..sun or daily)`.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("window {input:?}: {kind}")]
pub struct WindowError {
    /// The text as given.
    pub input: String,
    /// What is wrong with it.
    pub kind: WindowErrorKind,
}

/// What is wrong with the text of a sending window.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WindowErrorKind {
    /// Nothing but spaces.
    #[error("empty (write days and hours, e.g. \"mon-fri 09:00-21:00\")")]
    Empty,
    /// Days, but no hours (`mon-fri`).
    #[error("no hours (expected HH:MM-HH:MM after the days)")]
    NoHours,
    /// A word that is not a day.
    #[error("unknown day {0:?} (expected mon..sun or daily)")]
    UnknownDay(String),
    /// A list or range with a day left out (`mon,,fri`, `mon-`).
    #[error("a day is missing in {0:?}")]
    MissingDay(String),
    /// `daily` next to other days (`daily,sat`).
    #[error("\"daily\" cannot be combined with other days")]
    DailyWithOthers,
    /// The hours are not two times joined by `-` (`9-21`, `09:00`).
    #[error("hours must be HH:MM-HH:MM, not {0:?}")]
    Hours(String),
    /// A time that is not `HH:MM` from `00:00` to `24:00` (`25:00`, `09:5`, `09:00:00`).
    #[error("hours must be HH:MM (00:00 to 24:00), not {0:?}")]
    Time(String),
    /// `24:00` as the opening time.
    #[error("24:00 can only end a window")]
    OpensAtEndOfDay,
    /// The window opens and closes at the same time (`09:00-09:00`).
    #[error("from and to are the same time")]
    SameTime,
}

impl FromStr for Window {
    type Err = WindowError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_window(s).map_err(|kind| WindowError { input: s.to_owned(), kind })
    }
}

fn parse_window(s: &str) -> Result<Window, WindowErrorKind> {
    let text = s.trim();
    if text.is_empty() {
        return Err(WindowErrorKind::Empty);
    }
    // Day names have no digits: the hours start at the first one.
    let split = text.find(|c: char| c.is_ascii_digit()).ok_or(WindowErrorKind::NoHours)?;
    let (days, hours) = (text[..split].trim(), text[split..].trim());
    let days = if days.is_empty() { Days::ALL } else { parse_days(days)? };
    let compact: String = hours.chars().filter(|c| !c.is_whitespace()).collect();
    let (from, to) = compact.split_once('-').ok_or_else(|| WindowErrorKind::Hours(hours.to_owned()))?;
    if to.contains('-') {
        return Err(WindowErrorKind::Hours(hours.to_owned()));
    }
    let (from, to) = (parse_time(from)?, parse_time(to)?);
    if from == DAY {
        return Err(WindowErrorKind::OpensAtEndOfDay);
    }
    if from == to {
        return Err(WindowErrorKind::SameTime);
    }
    // Closing at 00:00 is closing at the end of the opening day.
    let to = if to == 0 { DAY } else { to };
    Ok(Window { days, from, to })
}

fn parse_days(text: &str) -> Result<Days, WindowErrorKind> {
    let items: Vec<&str> = text.split(',').map(str::trim).collect();
    let mut days = Days::default();
    for item in &items {
        if item.is_empty() {
            return Err(WindowErrorKind::MissingDay(text.to_owned()));
        }
        let (first, last) = match item.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (*item, *item),
        };
        if first.is_empty() || last.is_empty() {
            return Err(WindowErrorKind::MissingDay(text.to_owned()));
        }
        if [first, last].iter().any(|d| d.eq_ignore_ascii_case("daily")) {
            if items.len() > 1 || first != last {
                return Err(WindowErrorKind::DailyWithOthers);
            }
            return Ok(Days::ALL);
        }
        let day = |name: &str| parse_day(name).ok_or_else(|| WindowErrorKind::UnknownDay(name.to_owned()));
        let (first, last) = (day(first)?, day(last)?);
        let mut d = first;
        days = days.with(d);
        while d != last {
            d = d.succ();
            days = days.with(d);
        }
    }
    Ok(days)
}

/// `HH:MM` (or `H:MM`) as minutes after midnight, `24:00` included.
fn parse_time(text: &str) -> Result<u16, WindowErrorKind> {
    let bad = || WindowErrorKind::Time(text.to_owned());
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    let digits = |s: &str, lengths: std::ops::RangeInclusive<usize>| {
        (lengths.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse::<u16>().ok()).flatten()
    };
    let (h, m) = (digits(h, 1..=2).ok_or_else(bad)?, digits(m, 2..=2).ok_or_else(bad)?);
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

impl Serialize for Window {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The time zone of a country, for countries with a single clock: `GB` is `Europe/London`,
/// `DE` is `Europe/Berlin`, `JP` is `Asia/Tokyo` (the code in any case).
///
/// `None` for countries with several clocks — the United States, Canada, Russia, Brazil,
/// Australia, Mexico, Indonesia, … — and for codes that are not countries: the caller then
/// uses the campaign's zone. The table comes from the IANA time zone database's `zone.tab`:
/// a country is listed when all its zones there keep the same clock from now on (most have
/// one zone; Germany's two, `Europe/Berlin` and `Europe/Busingen`, differ only before 1980),
/// with its first zone.
pub fn zone_of_region(region_code: &str) -> Option<Tz> {
    let &[a, b] = region_code.trim().as_bytes() else { return None };
    let code = [a.to_ascii_uppercase(), b.to_ascii_uppercase()];
    let code = std::str::from_utf8(&code).ok()?;
    let index = zones::ZONES.binary_search_by(|(c, _)| (*c).cmp(code)).ok()?;
    Some(zones::ZONES[index].1)
}

/// The country of an E.164 number (`+12125550123`; spaces and dashes are ignored), by
/// libphonenumber's metadata. Numbers of a calling code several countries share go to the
/// country whose numbers they look like: `+1 416…` is `CA`, `+1 212…` is `US`, `+7 701…` is
/// `KZ`. `None` for text that is not `+` and digits, unknown and non-geographic calling codes
/// (`+800`), and numbers no country of their calling code claims.
pub fn region_of_e164(e164: &str) -> Option<Region> {
    crate::phone::region_of_e164(e164)
}

/// The custom field holding a recipient's own time zone (an IANA name, e.g.
/// `America/Chicago`): see [`crate::columns`].
pub const TIME_ZONE_FIELD: &str = "time_zone";

/// The IANA time zone named `name`, in any case (`europe/london` is `Europe/London`); the
/// canonical spelling is [`Tz::name`].
pub fn parse_zone(name: &str) -> Option<Tz> {
    let name = name.trim();
    if let Ok(tz) = name.parse::<Tz>() {
        return Some(tz);
    }
    chrono_tz::TZ_VARIANTS.iter().copied().find(|tz| tz.name().eq_ignore_ascii_case(name))
}

/// The time zone a recipient's sending window is judged in:
///
/// 1. their own zone: the custom field `time_zone` ([`TIME_ZONE_FIELD`]) when it names an
///    IANA zone (lists are checked for that when validated);
/// 2. when `infer` is set, the zone of the country of their phone number, for countries with
///    a single clock ([`region_of_e164`], [`zone_of_region`]);
/// 3. else `campaign_zone`.
pub fn recipient_zone(contact: &Contact, campaign_zone: Tz, infer: bool) -> Tz {
    let own = contact.fields.get(TIME_ZONE_FIELD).and_then(|v| v.as_str()).and_then(parse_zone);
    own.or_else(|| {
        if !infer {
            return None;
        }
        let region = region_of_e164(contact.phone.as_deref()?)?;
        zone_of_region(region.code())
    })
    .unwrap_or(campaign_zone)
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    #[test]
    fn the_zone_table_is_sorted_and_each_name_is_a_zone_of_its_country() {
        assert!(zones::ZONES.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(zones::ZONES.len() > 200, "{}", zones::ZONES.len());
        for (code, tz) in zones::ZONES {
            assert_eq!(zone_of_region(code), Some(*tz));
            assert_eq!(parse_zone(tz.name()), Some(*tz));
        }
    }

    #[test]
    fn days_are_written_in_runs() {
        let days = |list: &[Weekday]| list.iter().copied().collect::<Days>().to_string();
        use Weekday::*;
        assert_eq!(days(&[Mon, Tue, Wed, Thu, Fri]), "mon-fri");
        assert_eq!(days(&[Sun, Mon]), "sun-mon");
        assert_eq!(days(&[Mon, Wed, Sun]), "sun-mon,wed");
        assert_eq!(days(&[Fri, Sat, Sun, Mon]), "fri-mon");
        assert_eq!(days(&[Sat, Sun]), "sat-sun");
        assert_eq!(days(&[Tue, Thu, Sat]), "tue,thu,sat");
        assert_eq!(days(&WEEK), "daily");
        assert_eq!(days(&[Mon, Tue, Wed, Thu, Fri, Sat]), "mon-sat");
        assert_eq!(days(&[Tue, Wed, Thu, Fri, Sat, Sun]), "tue-sun");
        assert_eq!(days(&[Mon, Tue, Wed, Thu, Fri, Sun]), "sun-fri");
    }

    #[test]
    fn offset_changes_are_found_to_the_second() {
        let tz: Tz = "America/New_York".parse().unwrap();
        let start = chrono::DateTime::from_timestamp(1_772_900_000, 0).unwrap(); // 2026-03-07
        let mut out = Vec::new();
        offset_changes(tz, start, start + Duration::days(3), &mut out);
        assert_eq!(out, [Utc.with_ymd_and_hms(2026, 3, 8, 7, 0, 0).unwrap()]);
    }
}
