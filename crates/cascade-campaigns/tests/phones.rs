//! Phone numbers: E.164 normalization, the default region, and a reason for every kind of
//! number that is not one.

use cascade_campaigns::phone::{PhoneError, Region, normalize};

fn region(code: &str) -> Option<Region> {
    Some(code.parse().unwrap())
}

fn reason(raw: &str, default: Option<&str>) -> String {
    match normalize(raw, default.map(|r| r.parse().unwrap())) {
        Ok(e164) => panic!("{raw:?} was accepted as {e164}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn written_every_which_way() {
    let us = region("US");
    for raw in [
        "+1 201 555 0123",
        "+1 (201) 555-0123",
        "+12015550123",
        "1-201-555-0123",
        "(201) 555-0123",
        "201.555.0123",
        "201 555 0123",
        "2015550123",
        " 201/555-0123 ",
        "001 201 555 0123",
        "\u{a0}201\u{2011}555\u{2011}0123",
    ] {
        assert_eq!(normalize(raw, us).as_deref(), Ok("+12015550123"), "{raw:?}");
    }
}

#[test]
fn the_default_region_reads_national_numbers() {
    assert_eq!(normalize("07400 123456", region("GB")).unwrap(), "+447400123456");
    assert_eq!(normalize("030 1234567", region("de")).unwrap(), "+49301234567");
    assert_eq!(normalize("06 12 34 56 78", region("FR")).unwrap(), "+33612345678");
    assert_eq!(normalize("8 (912) 345-67-89", region("RU")).unwrap(), "+79123456789");
    assert_eq!(normalize("02 1234 5678", region("IT")).unwrap(), "+390212345678", "Italy keeps its leading 0");
    // The same digits mean different numbers in different regions.
    assert_eq!(normalize("2015550123", region("US")).unwrap(), "+12015550123");
    assert_eq!(normalize("2015550123", region("GB")).unwrap(), "+442015550123");
}

#[test]
fn plus_or_00_ignores_the_default_region() {
    for default in [None, region("US"), region("GB"), region("DE")] {
        assert_eq!(normalize("+44 7400 123456", default).unwrap(), "+447400123456");
        assert_eq!(normalize("0044 7400 123456", default).unwrap(), "+447400123456");
        assert_eq!(normalize("+49 30 1234567", default).unwrap(), "+49301234567");
    }
}

#[test]
fn without_a_default_region_a_country_code_is_needed() {
    assert_eq!(normalize("2015550123", None), Err(PhoneError::NoCountryCode));
    assert_eq!(
        reason("2015550123", None),
        "no country code: write it as +<country code> <number>, or give a default region"
    );
}

#[test]
fn every_kind_of_invalid_number_has_its_reason() {
    let cases: &[(&str, Option<&str>, &str)] = &[
        // too short
        ("12", Some("US"), "too short"),
        ("+44 1", None, "too short"),
        ("+49 30 1", None, "too short"),
        ("1234567", Some("US"), "too short"),
        // too long
        ("99999999999999999999", Some("US"), "too long"),
        ("+1 201 555 0123 4567 8901", None, "too long"),
        ("+1 201 555 0123 4567", None, "too long"),
        ("+44 12345 678901234", None, "too long"),
        ("201 555 0123 99", Some("US"), "too long"),
        // letters
        ("abc", Some("US"), "not a phone number"),
        ("n/a", Some("US"), "not a phone number"),
        ("201-555-CALL", Some("US"), "contains letters"),
        ("201 555 0123 ext 4", Some("US"), "contains letters"),
        // unknown country code
        ("+999 123", None, "unknown country code"),
        ("+0 123 456 789", None, "unknown country code"),
        ("00999 1234 5678", Some("DE"), "unknown country code"),
        // a length that fits but digits no number of the country has
        ("+1 555 0100", None, "not a valid number for US"),
        ("+44 7400 12345", None, "not a valid number for GB"),
        // wrong leading digits: US area codes never start with 0 or 1
        ("+1 055 123 4567", None, "not a valid number for US"),
        ("055 123 4567", Some("US"), "not a valid number for US"),
        ("+1 999 555 0123", None, "not a valid number for US"),
        // a number of another country, written without its country code
        ("07400 123456", Some("US"), "too long"),
        ("030 1234567", Some("US"), "not a valid number for US"),
        // empty after stripping the punctuation
        ("+", Some("US"), "no digits"),
        ("( ) -", Some("US"), "no digits"),
        // only punctuation
        ("---", Some("US"), "no digits"),
        ("...", None, "no digits"),
        // `+` in the middle, or twice
        ("201+5550123", Some("US"), "\"+\" is only allowed at the start"),
        ("++1 201 555 0123", None, "\"+\" is only allowed at the start"),
        // characters no number has
        ("201#5550123", Some("US"), "unexpected character '#'"),
        ("201*555*0123", Some("US"), "unexpected character '*'"),
        // 00 with nothing after it
        ("00", Some("US"), "too short"),
        // valid for libphonenumber, but shorter than the 8 digits E.164 channels take
        ("+683 7012", None, "only 7 digits with the country code: cascade sends to 8 to 15"),
    ];
    let mut kinds = std::collections::BTreeSet::new();
    for (raw, default, expected) in cases {
        assert_eq!(reason(raw, *default), *expected, "{raw:?} in {default:?}");
        kinds.insert(*expected);
    }
    assert!(kinds.len() >= 10, "{kinds:?}");
}

#[test]
fn regions_are_iso_codes() {
    assert_eq!("gb".parse::<Region>().unwrap().to_string(), "GB");
    assert_eq!("US".parse::<Region>().unwrap().calling_code(), 1);
    let err = "UK".parse::<Region>().unwrap_err();
    assert_eq!(err.to_string(), "unknown region \"UK\": give a two-letter ISO country code such as US, GB or DE");
    assert!("".parse::<Region>().is_err());
    assert!("+1".parse::<Region>().is_err());
}
