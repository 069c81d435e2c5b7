//! Whatever the bytes, checking a list never panics: it gives a report whose counts and
//! errors agree, or a format error that says what is wrong.

use cascade_campaigns::{ImportError, ValidateError, ValidateOptions, validate};
use proptest::prelude::*;

fn options(region: bool, template: bool) -> ValidateOptions {
    ValidateOptions {
        region: region.then(|| "US".parse().unwrap()),
        template: template.then(|| "Hi {{contact.name}} in {{contact.fields.city}}".into()),
        preview: 2,
        ..ValidateOptions::default()
    }
}

fn check_outcome(bytes: &[u8], options: &ValidateOptions) {
    match validate(bytes, options) {
        Ok(report) => {
            assert_eq!(report.errors.len() as u64, report.invalid + report.duplicate);
            assert!(report.errors.windows(2).all(|w| w[0].line < w[1].line), "{:?}", report.errors);
            assert!(report.errors.iter().all(|e| e.line >= 1 && !e.reason.is_empty()));
            if options.template.is_some() {
                assert!(report.preview.as_ref().is_some_and(|p| p.len() as u64 == report.valid.min(2)));
            }
        }
        Err(ValidateError::Import(ImportError::Format { message, .. })) => assert!(!message.is_empty()),
        Err(other) => panic!("unexpected error: {other:?}"),
    }
}

/// Text made of what CSV and JSON lists are made of, so that most inputs get past the header.
fn listish() -> impl Strategy<Value = String> {
    let header =
        prop::sample::select(vec!["phone,name,city\n", "Phone;E-mail;Telegram\r\n", "\u{feff}mobile\tname\n", "[", ""]);
    let piece = prop::sample::select(vec![
        ",",
        ";",
        "\t",
        "\"",
        "\"\"",
        "\n",
        "\r\n",
        "\r",
        " ",
        "+",
        "00",
        "1",
        "201",
        "555",
        "0123",
        "+1 201 555 0123",
        "(",
        ")",
        "-",
        "abc",
        "@",
        "ann@example.com",
        "{",
        "}",
        "[",
        "]",
        ":",
        "\"phone\"",
        "\"fields\"",
        "null",
        "é",
        "\u{feff}",
        "{{",
        "}}",
    ]);
    (header, prop::collection::vec(piece, 0..60)).prop_map(|(h, pieces)| format!("{h}{}", pieces.concat()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400), region: bool, template: bool) {
        check_outcome(&bytes, &options(region, template));
    }

    #[test]
    fn list_like_text_never_panics(text in listish(), region: bool, template: bool) {
        check_outcome(text.as_bytes(), &options(region, template));
    }
}
