//! Sending windows: parsing, opening and closing across midnight and DST changes, recipients'
//! time zones, and the `time_zone` column.

use cascade_campaigns::schedule::{Days, Window, WindowErrorKind, recipient_zone, region_of_e164, zone_of_region};
use cascade_campaigns::validate::{ValidateOptions, validate, validate_with};
use cascade_engine::{Contact, Timestamp};
use chrono::{Duration, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::{America, Asia, Europe, Tz};
use proptest::prelude::*;

fn window(text: &str) -> Window {
    text.parse().unwrap_or_else(|e| panic!("{e}"))
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Timestamp {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

/// The one instant the clock of `tz` shows this local time (panics in gaps and repeats).
fn at(tz: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Timestamp {
    tz.with_ymd_and_hms(y, mo, d, h, mi, 0).single().unwrap().to_utc()
}

fn second() -> Duration {
    Duration::seconds(1)
}

// ---- parsing ---------------------------------------------------------------------------------

#[test]
fn every_accepted_form_parses_to_its_canonical_text() {
    let cases = [
        ("mon-fri 09:00-21:00", "mon-fri 09:00-21:00"),
        ("mon,wed,fri 09:00-18:30", "mon,wed,fri 09:00-18:30"),
        ("sat-sun 10:00-14:00", "sat-sun 10:00-14:00"),
        ("daily 21:00-06:00", "daily 21:00-06:00"),
        ("09:00-21:00", "daily 09:00-21:00"),
        ("fri-mon 22:00-02:00", "fri-mon 22:00-02:00"),
        ("Monday-FRIDAY 9:00-17:00", "mon-fri 09:00-17:00"),
        (" MON, Wed ,fri  09:00 - 18:30 ", "mon,wed,fri 09:00-18:30"),
        ("Saturday,sunday 18:00-24:00", "sat-sun 18:00-24:00"),
        ("sat-sun 18:00-00:00", "sat-sun 18:00-24:00"),
        ("00:00-24:00", "daily 00:00-24:00"),
        ("DAILY 08:00-20:00", "daily 08:00-20:00"),
        ("sun-sat 08:00-20:00", "daily 08:00-20:00"),
        ("mon-mon 08:00-20:00", "mon 08:00-20:00"),
        ("sun,mon,wed 08:00-20:00", "sun-mon,wed 08:00-20:00"),
        ("tue,mon,thu,wed 08:00-20:00", "mon-thu 08:00-20:00"),
        ("thu-tue 23:59-00:01", "thu-tue 23:59-00:01"),
    ];
    for (text, canonical) in cases {
        let w = window(text);
        assert_eq!(w.to_string(), canonical, "{text}");
        assert_eq!(window(canonical), w, "{canonical} round-trips");
        assert_eq!(window(canonical).to_string(), canonical);
    }
}

#[test]
fn the_parts_of_a_window() {
    let w = window("fri-mon 22:00-02:00");
    let days: Vec<Weekday> = w.days().iter().collect();
    assert_eq!(days, [Weekday::Mon, Weekday::Fri, Weekday::Sat, Weekday::Sun]);
    assert_eq!(w.from(), NaiveTime::from_hms_opt(22, 0, 0).unwrap());
    assert_eq!(w.to(), NaiveTime::from_hms_opt(2, 0, 0).unwrap());
    assert!(w.crosses_midnight());

    let w = window("mon,wed,fri 09:00-18:30");
    assert!(w.days().contains(Weekday::Wed) && !w.days().contains(Weekday::Tue));
    assert!(!w.crosses_midnight());
    assert_eq!(w.to(), NaiveTime::from_hms_opt(18, 30, 0).unwrap());

    let w = window("sat 18:00-24:00");
    assert_eq!(w.to(), NaiveTime::MIN, "24:00 is midnight at the end of the day");
    assert!(!w.crosses_midnight());
    assert_eq!(window("09:00-21:00").days(), Days::ALL);
}

#[test]
fn windows_are_serialized_as_their_text() {
    let w = window("Mon-Fri 09:00-21:00");
    assert_eq!(serde_json::to_string(&w).unwrap(), r#""mon-fri 09:00-21:00""#);
    assert_eq!(serde_json::from_str::<Window>(r#""fri-mon 22:00-02:00""#).unwrap(), window("fri-mon 22:00-02:00"));
    let err = serde_json::from_str::<Window>(r#""mon-fry 09:00-21:00""#).unwrap_err();
    assert!(err.to_string().contains(r#"unknown day "fry""#), "{err}");
}

#[test]
fn each_error_says_what_is_wrong() {
    let cases: [(&str, WindowErrorKind, &str); 16] = [
        (
            "mon-fry 09:00-21:00",
            WindowErrorKind::UnknownDay("fry".into()),
            r#"window "mon-fry 09:00-21:00": unknown day "fry" (expected mon..sun or daily)"#,
        ),
        ("  ", WindowErrorKind::Empty, r#"window "  ": empty (write days and hours, e.g. "mon-fri 09:00-21:00")"#),
        ("mon-fri", WindowErrorKind::NoHours, r#"window "mon-fri": no hours (expected HH:MM-HH:MM after the days)"#),
        (
            "mon,,fri 09:00-17:00",
            WindowErrorKind::MissingDay("mon,,fri".into()),
            r#"window "mon,,fri 09:00-17:00": a day is missing in "mon,,fri""#,
        ),
        ("mon- 09:00-17:00", WindowErrorKind::MissingDay("mon-".into()), r#"a day is missing in "mon-""#),
        (
            "daily,sat 09:00-17:00",
            WindowErrorKind::DailyWithOthers,
            r#"window "daily,sat 09:00-17:00": "daily" cannot be combined with other days"#,
        ),
        ("mon fri 09:00-17:00", WindowErrorKind::UnknownDay("mon fri".into()), r#"unknown day "mon fri""#),
        ("weekdays 09:00-17:00", WindowErrorKind::UnknownDay("weekdays".into()), r#"unknown day "weekdays""#),
        (
            "mon 09:00",
            WindowErrorKind::Hours("09:00".into()),
            r#"window "mon 09:00": hours must be HH:MM-HH:MM, not "09:00""#,
        ),
        ("mon 09:00-12:00-13:00", WindowErrorKind::Hours("09:00-12:00-13:00".into()), "hours must be HH:MM-HH:MM"),
        (
            "mon 9-21",
            WindowErrorKind::Time("9".into()),
            r#"window "mon 9-21": hours must be HH:MM (00:00 to 24:00), not "9""#,
        ),
        ("mon 25:00-26:00", WindowErrorKind::Time("25:00".into()), r#"not "25:00""#),
        ("mon 09:60-10:00", WindowErrorKind::Time("09:60".into()), r#"not "09:60""#),
        ("mon 09:00-24:30", WindowErrorKind::Time("24:30".into()), r#"not "24:30""#),
        (
            "mon 24:00-06:00",
            WindowErrorKind::OpensAtEndOfDay,
            r#"window "mon 24:00-06:00": 24:00 can only end a window"#,
        ),
        ("mon 09:00-09:00", WindowErrorKind::SameTime, r#"window "mon 09:00-09:00": from and to are the same time"#),
    ];
    for (text, kind, message) in cases {
        let err = text.parse::<Window>().unwrap_err();
        assert_eq!(err.kind, kind, "{text}");
        assert_eq!(err.input, text);
        assert!(err.to_string().contains(message), "{text}: {err}");
    }
    for same in ["00:00-00:00", "daily 12:30-12:30"] {
        assert_eq!(same.parse::<Window>().unwrap_err().kind, WindowErrorKind::SameTime, "{same}");
    }
    for time in ["mon 09:5-10:00", "mon 09:00:00-10:00", "mon 123:00-10:00", "mon 09.00-10:00"] {
        assert!(matches!(time.parse::<Window>().unwrap_err().kind, WindowErrorKind::Time(_)), "{time}");
    }
}

// ---- midnight --------------------------------------------------------------------------------

#[test]
fn a_window_crossing_midnight_belongs_to_the_day_it_opens() {
    let tz = Tz::UTC;
    let w = window("fri 22:00-02:00");
    // 2026-06-05 is a Friday.
    assert!(w.is_open(utc(2026, 6, 6, 1, 0), tz), "Saturday 01:00 is Friday's window");
    assert!(!w.is_open(utc(2026, 6, 5, 1, 0), tz), "Friday 01:00 would be Thursday's");
    assert!(!w.is_open(utc(2026, 6, 5, 21, 59), tz));
    assert!(w.is_open(utc(2026, 6, 5, 22, 0), tz));
    assert!(w.is_open(utc(2026, 6, 6, 1, 59), tz));
    assert!(!w.is_open(utc(2026, 6, 6, 2, 0), tz), "the closing minute is outside");
    assert!(!w.is_open(utc(2026, 6, 6, 23, 0), tz), "Saturday is not listed");
    assert_eq!(w.next_open(utc(2026, 6, 5, 1, 0), tz), utc(2026, 6, 5, 22, 0));
    assert_eq!(w.next_open(utc(2026, 6, 6, 2, 0), tz), utc(2026, 6, 12, 22, 0));
    assert_eq!(w.next_close(utc(2026, 6, 5, 23, 0), tz), Some(utc(2026, 6, 6, 2, 0)));
    assert_eq!(w.next_close(utc(2026, 6, 5, 21, 0), tz), None);

    let w = window("thu,fri 22:00-02:00");
    assert!(w.is_open(utc(2026, 6, 5, 1, 0), tz), "Friday 01:00 is Thursday's window");
}

#[test]
fn windows_wrap_the_week_from_sunday_to_monday() {
    let tz = Tz::UTC;
    // 2026-06-07 is a Sunday.
    let w = window("sun 22:00-02:00");
    assert!(w.is_open(utc(2026, 6, 8, 1, 0), tz), "Monday 01:00 is Sunday's window");
    assert!(!w.is_open(utc(2026, 6, 7, 1, 0), tz));
    assert_eq!(w.next_close(utc(2026, 6, 7, 23, 30), tz), Some(utc(2026, 6, 8, 2, 0)));

    let w = window("fri-mon 22:00-02:00");
    assert!(w.is_open(utc(2026, 6, 9, 1, 0), tz), "Tuesday 01:00 is Monday's window");
    assert!(!w.is_open(utc(2026, 6, 9, 22, 0), tz));
    assert_eq!(w.next_open(utc(2026, 6, 9, 3, 0), tz), utc(2026, 6, 12, 22, 0));

    let w = window("mon 09:00-17:00");
    assert_eq!(w.next_open(utc(2026, 6, 7, 23, 0), tz), utc(2026, 6, 8, 9, 0));
    assert_eq!(w.next_open(utc(2026, 6, 8, 17, 0), tz), utc(2026, 6, 15, 9, 0), "a week later");

    let w = window("daily 21:00-06:00");
    assert_eq!(w.next_close(utc(2026, 6, 7, 23, 0), tz), Some(utc(2026, 6, 8, 6, 0)));
    let at = utc(2026, 6, 7, 12, 0);
    assert_eq!(w.next_open(at, tz), utc(2026, 6, 7, 21, 0));
}

#[test]
fn next_open_is_now_when_open_and_next_close_is_none_when_closed() {
    let tz = Europe::Berlin;
    let w = window("mon-fri 09:00-17:00");
    let now = at(tz, 2026, 6, 3, 10, 0) + Duration::milliseconds(1500);
    assert_eq!(w.next_open(now, tz), now);
    assert_eq!(w.next_close(now, tz), Some(at(tz, 2026, 6, 3, 17, 0)));
    assert_eq!(w.next_close(at(tz, 2026, 6, 3, 17, 0), tz), None);
    let always = window("00:00-24:00");
    assert!(always.is_open(now, tz));
    assert_eq!(always.next_close(now, tz), None, "never closes");
    let nightly = window("daily 18:00-24:00");
    assert_eq!(nightly.next_close(at(tz, 2026, 6, 3, 20, 0), tz), Some(at(tz, 2026, 6, 4, 0, 0)));
}

#[test]
fn the_campaign_zone_decides_the_day_and_hour() {
    let w = window("mon-fri 09:00-17:00");
    // Friday 2026-06-05 15:00 UTC: 11:00 on Friday in New York, already Saturday in Tokyo.
    let at = utc(2026, 6, 5, 15, 0);
    assert!(w.is_open(at, America::New_York));
    assert!(!w.is_open(at, Asia::Tokyo));
    assert_eq!(w.next_open(at, Asia::Tokyo), utc(2026, 6, 8, 0, 0), "Monday 09:00 JST");
}

// ---- DST -------------------------------------------------------------------------------------

#[test]
fn new_york_springs_forward() {
    let tz = America::New_York;
    // 2026-03-08: 02:00 EST becomes 03:00 EDT at 07:00 UTC.
    let daily = window("daily 09:00-17:00");
    assert_eq!(daily.next_open(utc(2026, 3, 8, 3, 0), tz), utc(2026, 3, 8, 13, 0), "09:00 EDT");
    assert_eq!(daily.next_open(utc(2026, 3, 7, 3, 0), tz), utc(2026, 3, 7, 14, 0), "09:00 EST");
    assert_eq!(daily.next_close(utc(2026, 3, 8, 14, 0), tz), Some(utc(2026, 3, 8, 21, 0)));

    // Opening at 02:30, which does not exist that day: the first instant after the gap.
    let gap = window("daily 02:30-04:00");
    let opens = gap.next_open(utc(2026, 3, 8, 6, 0), tz);
    assert_eq!(opens, utc(2026, 3, 8, 7, 0), "03:00 EDT");
    assert!(gap.is_open(opens, tz) && !gap.is_open(opens - second(), tz));
    assert_eq!(gap.next_close(opens, tz), Some(utc(2026, 3, 8, 8, 0)), "04:00 EDT");
    assert_eq!(gap.next_open(utc(2026, 3, 7, 5, 0), tz), utc(2026, 3, 7, 7, 30), "02:30 EST the day before");

    // A window inside the gap does not happen that day: the next Sunday's does.
    let inside = window("sun 02:10-02:50");
    assert_eq!(inside.next_open(utc(2026, 3, 8, 6, 0), tz), at(tz, 2026, 3, 15, 2, 10));
    assert_eq!(inside.next_open(at(tz, 2026, 3, 1, 3, 0), tz), at(tz, 2026, 3, 15, 2, 10), "two weeks");

    // Crossing midnight and the gap: open 22:00 EST to 03:30 EDT, 4.5 hours.
    let night = window("sat 22:00-03:30");
    assert_eq!(night.next_open(utc(2026, 3, 7, 12, 0), tz), utc(2026, 3, 8, 3, 0));
    assert_eq!(night.next_close(utc(2026, 3, 8, 4, 0), tz), Some(utc(2026, 3, 8, 7, 30)));
}

#[test]
fn new_york_falls_back() {
    let tz = America::New_York;
    // 2026-11-01: 02:00 EDT becomes 01:00 EST at 06:00 UTC; 01:00–02:00 happens twice.
    let daily = window("daily 09:00-17:00");
    assert_eq!(daily.next_open(utc(2026, 11, 1, 4, 0), tz), utc(2026, 11, 1, 14, 0), "09:00 EST");
    assert_eq!(daily.next_open(utc(2026, 10, 31, 4, 0), tz), utc(2026, 10, 31, 13, 0), "09:00 EDT");

    // Opening at 01:30, which happens twice: the first of the two.
    let twice = window("daily 01:30-03:00");
    assert_eq!(twice.next_open(utc(2026, 11, 1, 4, 0), tz), utc(2026, 11, 1, 5, 30), "01:30 EDT");
    assert!(twice.is_open(utc(2026, 11, 1, 5, 59), tz));
    // The clock then shows 01:00 EST, before the opening time: closed until 01:30 EST.
    assert_eq!(twice.next_close(utc(2026, 11, 1, 5, 30), tz), Some(utc(2026, 11, 1, 6, 0)));
    assert_eq!(twice.next_open(utc(2026, 11, 1, 6, 0), tz), utc(2026, 11, 1, 6, 30));
    assert_eq!(twice.next_close(utc(2026, 11, 1, 6, 30), tz), Some(utc(2026, 11, 1, 8, 0)), "03:00 EST");

    // Closing at 01:30 after midnight: closes at 01:30 EDT, open again 01:00–01:30 EST.
    let night = window("sat 20:00-01:30");
    assert_eq!(night.next_close(utc(2026, 11, 1, 0, 0), tz), Some(utc(2026, 11, 1, 5, 30)));
    assert_eq!(night.next_open(utc(2026, 11, 1, 5, 30), tz), utc(2026, 11, 1, 6, 0));
    assert_eq!(night.next_close(utc(2026, 11, 1, 6, 0), tz), Some(utc(2026, 11, 1, 6, 30)));
    assert_eq!(night.next_open(utc(2026, 11, 1, 6, 30), tz), at(tz, 2026, 11, 7, 20, 0));
}

#[test]
fn berlin_springs_forward_and_falls_back() {
    let tz = Europe::Berlin;
    // 2026-03-29: 02:00 CET becomes 03:00 CEST at 01:00 UTC.
    let gap = window("daily 02:30-06:00");
    assert_eq!(gap.next_open(utc(2026, 3, 29, 0, 0), tz), utc(2026, 3, 29, 1, 0), "03:00 CEST");
    let inside = window("daily 02:15-02:45");
    assert_eq!(inside.next_open(utc(2026, 3, 29, 0, 0), tz), utc(2026, 3, 30, 0, 15), "02:15 CEST the next day");
    assert!(!inside.is_open(utc(2026, 3, 29, 1, 0), tz));
    let sunday = window("sun 08:00-20:00");
    assert_eq!(sunday.next_open(utc(2026, 3, 28, 12, 0), tz), utc(2026, 3, 29, 6, 0), "08:00 CEST");
    assert_eq!(sunday.next_close(utc(2026, 3, 29, 6, 0), tz), Some(utc(2026, 3, 29, 18, 0)));

    // 2026-10-25: 03:00 CEST becomes 02:00 CET at 01:00 UTC; 02:00–03:00 happens twice.
    assert_eq!(gap.next_open(utc(2026, 10, 24, 22, 0), tz), utc(2026, 10, 25, 0, 30), "02:30 CEST, the first");
    assert_eq!(gap.next_close(utc(2026, 10, 25, 0, 30), tz), Some(utc(2026, 10, 25, 1, 0)));
    assert_eq!(gap.next_open(utc(2026, 10, 25, 1, 0), tz), utc(2026, 10, 25, 1, 30), "02:30 CET");
    assert_eq!(gap.next_close(utc(2026, 10, 25, 1, 30), tz), Some(utc(2026, 10, 25, 5, 0)), "06:00 CET");
    assert_eq!(sunday.next_open(utc(2026, 10, 24, 12, 0), tz), utc(2026, 10, 25, 7, 0), "08:00 CET");
}

// ---- recipients' time zones ------------------------------------------------------------------

#[test]
fn countries_with_one_clock_have_a_zone() {
    assert_eq!(zone_of_region("GB"), Some(Europe::London));
    assert_eq!(zone_of_region("gb"), Some(Europe::London));
    assert_eq!(zone_of_region("DE"), Some(Europe::Berlin));
    assert_eq!(zone_of_region("JP"), Some(Asia::Tokyo));
    assert_eq!(zone_of_region("FR"), Some(Europe::Paris));
    for several in ["US", "CA", "RU", "BR", "AU", "MX", "ID", "ES", "PT"] {
        assert_eq!(zone_of_region(several), None, "{several}");
    }
    for nothing in ["", "XX", "GBR", "G"] {
        assert_eq!(zone_of_region(nothing), None, "{nothing:?}");
    }
}

#[test]
fn numbers_of_shared_calling_codes_find_their_country() {
    let region = |e164: &str| region_of_e164(e164).map(|r| r.code().to_owned());
    assert_eq!(region("+1 416 555 0123").as_deref(), Some("CA"));
    assert_eq!(region("+14165550123").as_deref(), Some("CA"));
    assert_eq!(region("+12125550123").as_deref(), Some("US"));
    assert_eq!(region("+442079460958").as_deref(), Some("GB"));
    assert_eq!(region("+4930123456").as_deref(), Some("DE"));
    assert_eq!(region("+79123456789").as_deref(), Some("RU"));
    assert_eq!(region("+77012345678").as_deref(), Some("KZ"));
    assert_eq!(region("+12684601234").as_deref(), Some("AG"));
    assert_eq!(zone_of_region("RU"), None, "+7 Russia has eleven clocks");
    assert_eq!(region("+80012345678"), None);
    assert_eq!(region("12125550123"), None);
    assert_eq!(region(""), None);
}

#[test]
fn a_recipient_zone_is_their_own_else_inferred_else_the_campaign_s() {
    let campaign = America::Chicago;
    let london = Contact::with_phone("+442079460958");
    assert_eq!(recipient_zone(&london, campaign, true), Europe::London);
    assert_eq!(recipient_zone(&london, campaign, false), campaign);
    let own = london.clone().field("time_zone", "Asia/Tokyo");
    assert_eq!(recipient_zone(&own, campaign, true), Asia::Tokyo);
    assert_eq!(recipient_zone(&own, campaign, false), Asia::Tokyo);
    let broken = london.clone().field("time_zone", "Mars/Base");
    assert_eq!(recipient_zone(&broken, campaign, true), Europe::London);
    let toronto = Contact::with_phone("+14165550123");
    assert_eq!(recipient_zone(&toronto, Europe::Berlin, true), Europe::Berlin, "CA has several clocks");
    let moscow = Contact::with_phone("+79123456789");
    assert_eq!(recipient_zone(&moscow, campaign, true), campaign);
    let no_phone = Contact { email: Some("a@example.com".into()), ..Contact::default() };
    assert_eq!(recipient_zone(&no_phone, campaign, true), campaign);
}

// ---- the time_zone column --------------------------------------------------------------------

#[test]
fn the_time_zone_column_is_checked_and_normalized() {
    let csv = "phone,Time Zone,name\n+442079460958,europe/london,Ann\n+442079460959,Mars/Base,Bob\n+442079460957,,Cy\n+442079460956, US/Eastern ,Di\n";
    let mut zones = Vec::new();
    let report = validate_with(csv.as_bytes(), &ValidateOptions::default(), |r| {
        zones.push((r.line, r.contact.fields.get("time_zone").cloned()));
    })
    .unwrap();
    assert_eq!((report.valid, report.invalid), (3, 1));
    assert_eq!(report.errors[0].line, 3);
    assert_eq!(report.errors[0].reason, r#"time_zone "Mars/Base": not an IANA time zone name"#);
    assert_eq!(
        zones,
        [(2, Some("Europe/London".into())), (4, None), (5, Some("US/Eastern".into()))],
        "empty is no zone"
    );
}

#[test]
fn time_zone_aliases_in_csv_and_json() {
    for header in ["tz", "TZ", "timezone", "time_zone", "Time-Zone"] {
        let csv = format!("phone,{header}\n+442079460958,Asia/Tokyo\n+442079460959,Asia/Tokio\n");
        let mut fields = Vec::new();
        let report =
            validate_with(csv.as_bytes(), &ValidateOptions::default(), |r| fields.push(r.contact.fields.clone()))
                .unwrap();
        assert_eq!(fields[0].get("time_zone").and_then(|v| v.as_str()), Some("Asia/Tokyo"), "{header}");
        assert_eq!(fields[0].len(), 1, "{header}: kept as time_zone only");
        assert_eq!(report.errors[0].line, 3);
        assert_eq!(report.errors[0].reason, r#"time_zone "Asia/Tokio": not an IANA time zone name"#);
    }
    let json = r#"[
{"phone": "+442079460958", "tz": "america/new_york"},
{"phone": "+442079460959", "timezone": 5},
{"phone": "+442079460957", "time_zone": "", "fields": {}},
{"phone": "+442079460956", "tz": "UTC", "time_zone": "UTC"}
]"#;
    let mut fields = Vec::new();
    let report =
        validate_with(json.as_bytes(), &ValidateOptions::default(), |r| fields.push(r.contact.fields.clone())).unwrap();
    assert_eq!(fields[0]["time_zone"], "America/New_York");
    assert!(fields[1].is_empty());
    let reasons: Vec<(u64, &str)> = report.errors.iter().map(|e| (e.line, e.reason.as_str())).collect();
    assert_eq!(
        reasons,
        [
            (3, r#"time_zone "5": not an IANA time zone name"#),
            (5, r#""time_zone" and "tz" are both the field "time_zone": keep one"#)
        ]
    );
    let header = validate("phone,tz,timezone\n".as_bytes(), &ValidateOptions::default()).unwrap_err();
    assert!(header.to_string().contains("columns 2 and 3 of the header are both the field \"time_zone\""), "{header}");
}

// ---- properties ------------------------------------------------------------------------------

const ZONES: [Tz; 12] = [
    Tz::UTC,
    America::New_York,
    Europe::Berlin,
    Europe::London,
    America::Havana,
    America::Santiago,
    Asia::Kolkata,
    Tz::Australia__Lord_Howe,
    Tz::Pacific__Chatham,
    Tz::Pacific__Apia,
    Tz::Africa__Casablanca,
    Tz::America__St_Johns,
];

fn windows() -> impl Strategy<Value = Window> {
    let minute = prop_oneof![(0u16..24).prop_map(|h| h * 60), (0u16..48).prop_map(|h| h * 30), 0u16..1440];
    (1u8..128, minute.clone(), minute, any::<bool>()).prop_filter_map("from == to", |(mask, from, to, midnight)| {
        let days: Days = (0..7).filter(|i| mask & (1 << i) != 0).map(|i| Weekday::try_from(i as u8).unwrap()).collect();
        let to = if to == 0 && midnight { 1440 } else { to };
        let text = format!("{days} {:02}:{:02}-{:02}:{:02}", from / 60, from % 60, to / 60, to % 60);
        text.parse::<Window>().ok()
    })
}

/// Instants in 2026–2027, many near DST changes (those of the zones above cluster in March,
/// April, September, October and November).
fn instants() -> impl Strategy<Value = Timestamp> {
    let near = [(3, 5), (3, 26), (4, 2), (9, 24), (10, 22), (10, 29), (11, 5)];
    prop_oneof![
        (0i64..2 * 365 * 86_400).prop_map(|s| utc(2026, 1, 1, 0, 0) + Duration::seconds(s)),
        (proptest::sample::select(near.to_vec()), 0i64..5 * 86_400)
            .prop_map(|((m, d), s)| utc(2026, m, d, 0, 0) + Duration::seconds(s)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn next_open_is_the_first_open_instant(
        w in windows(),
        tz in proptest::sample::select(ZONES.to_vec()),
        at in instants(),
    ) {
        let open = w.next_open(at, tz);
        prop_assert!(open >= at);
        prop_assert!(w.is_open(open, tz), "{w} {tz} {at}: {open} is closed");
        prop_assert!(open - at <= Duration::days(15), "{w} {tz} {at}: {open}");
        if open > at {
            prop_assert!(!w.is_open(open - second(), tz), "{w} {tz} {at}: open before {open}");
        }
        let mut t = at;
        while t < open && t - at <= Duration::days(2) {
            prop_assert!(!w.is_open(t, tz), "{w} {tz} {at}: {t} is open, before {open}");
            t += Duration::minutes(1);
        }

        match w.next_close(open, tz) {
            None => prop_assert_eq!(w.to_string(), "daily 00:00-24:00"),
            Some(close) => {
                prop_assert!(close > open);
                prop_assert!(!w.is_open(close, tz), "{w} {tz}: open at its close {close}");
                prop_assert!(w.is_open(close - second(), tz), "{w} {tz}: closed before {close}");
                let mut t = open;
                while t < close && t - open <= Duration::days(2) {
                    prop_assert!(w.is_open(t, tz), "{w} {tz}: closed at {t}, before {close}");
                    t += Duration::minutes(1);
                }
            }
        }
    }

    #[test]
    fn windows_round_trip_through_their_text(w in windows()) {
        prop_assert_eq!(w.to_string().parse::<Window>().unwrap(), w);
    }
}
