//! Checking whole lists: counts, errors by line, duplicates, JSON, template preview and
//! missing variables.

use cascade_campaigns::validate::{MissingVariable, Preview, RowError};
use cascade_campaigns::{Format, Report, ValidateError, ValidateOptions, validate, validate_with};
use serde_json::json;

fn us() -> ValidateOptions {
    ValidateOptions { region: Some("US".parse().unwrap()), ..ValidateOptions::default() }
}

fn check(input: &str, options: &ValidateOptions) -> Report {
    validate(input.as_bytes(), options).unwrap_or_else(|e| panic!("{e}"))
}

fn errors(report: &Report) -> Vec<(u64, &str)> {
    report.errors.iter().map(|e| (e.line, e.reason.as_str())).collect()
}

#[test]
fn duplicates_name_the_first_line() {
    let csv = "\
phone,name
+1 201 555 0123,Ann
(201) 555-0124,Bob

2015550123,Ann again
+1 (201) 555-0124,Bob again
12,Broken
001 201 555 0123,Ann thrice
";
    let report = check(csv, &us());
    assert_eq!((report.valid, report.invalid, report.duplicate), (2, 1, 3));
    assert_eq!(
        errors(&report),
        [
            (5, "duplicate of line 2"),
            (6, "duplicate of line 3"),
            (7, "phone \"12\": too short"),
            (8, "duplicate of line 2")
        ]
    );
}

#[test]
fn an_invalid_row_does_not_claim_its_number() {
    // The first row is invalid (bad email), so the second is the first valid one.
    let csv = "phone,email\n+12015550123,x@\n+12015550123,ann@example.com\n+12015550123,\n";
    let report = check(csv, &us());
    assert_eq!(errors(&report), [(2, "email \"x@\": not an email address"), (4, "duplicate of line 3")]);
}

#[test]
fn rows_with_nothing_to_reach_are_invalid() {
    let csv = "name,phone,email,telegram\nAnn,,,\nBob,,,4242\n";
    let report = check(csv, &us());
    assert_eq!(errors(&report), [(2, "no phone, email or address")]);
    assert_eq!(report.valid, 1);
}

#[test]
fn the_same_list_as_json() {
    let list = r#"[
  {"phone": "+1 201 555 0123", "name": "Ann"},
  {"phone": "201-555-0123", "name": "Ann again"},
  {"phone": "+999 123"},
  {"email": "bob@example.com", "fields": {"city": "Boston"}},
  {"email": "BOB@example.com"},
  "not an object",
  {"name": "Nobody"}
]"#;
    let report = check(list, &us());
    assert_eq!((report.valid, report.invalid, report.duplicate), (2, 3, 2));
    assert_eq!(
        errors(&report),
        [
            (3, "duplicate of line 2"),
            (4, "phone \"+999 123\": unknown country code"),
            (6, "duplicate of line 5"),
            (7, "expected an object (`{\"phone\": …}`), found a string"),
            (8, "no phone, email or address"),
        ]
    );
}

#[test]
fn the_report_serializes_as_the_cli_prints_it() {
    let report = check("phone\n+12015550123\n12\n", &us());
    assert_eq!(
        serde_json::to_value(&report).unwrap(),
        json!({"valid": 1, "invalid": 1, "duplicate": 0, "errors": [{"line": 3, "reason": "phone \"12\": too short"}]})
    );
}

#[test]
fn preview_and_missing_variables() {
    let csv = "\
phone,name,city,plan
+12015550123,Ann,Austin,gold
+12015550124,,Boston,
+12015550125,Cy,,
12,Broken,,
+12015550126,Dee,Denver,
";
    let options = ValidateOptions {
        template: Some(
            "Hi {{contact.name}} from [Contact.Fields.city], your plan: {{contact.fields.plan | default(\"basic\")}}"
                .into(),
        ),
        preview: 2,
        ..us()
    };
    let report = check(csv, &options);
    assert_eq!(
        report.preview.unwrap(),
        [
            Preview {
                line: 2,
                to: "+12015550123".into(),
                text: Some("Hi Ann from Austin, your plan: gold".into()),
                error: None
            },
            Preview {
                line: 3,
                to: "+12015550124".into(),
                text: None,
                error: Some("unknown template variable `contact.name`".into())
            },
        ]
    );
    // `plan` has a default, so rows without it lack nothing; the invalid row is not counted.
    assert_eq!(
        report.missing_variables.unwrap(),
        [
            MissingVariable { variable: "contact.name".into(), rows: 1, first_line: 3 },
            MissingVariable { variable: "contact.fields.city".into(), rows: 1, first_line: 4 },
        ]
    );
}

#[test]
fn variables_nobody_has_are_missing_everywhere() {
    let options = ValidateOptions { template: Some("Your order {{order.id}}".into()), preview: 0, ..us() };
    let report = check("phone\n+12015550123\n+12015550124\n", &options);
    assert_eq!(report.preview.unwrap(), []);
    assert_eq!(
        report.missing_variables.unwrap(),
        [MissingVariable { variable: "order.id".into(), rows: 2, first_line: 2 }]
    );
}

#[test]
fn a_template_without_variables_lacks_nothing() {
    let options = ValidateOptions { template: Some("Sale today!".into()), ..us() };
    let report = check("phone\n+12015550123\n", &options);
    assert_eq!(report.preview.unwrap()[0].text.as_deref(), Some("Sale today!"));
    assert_eq!(report.missing_variables.unwrap(), []);
}

#[test]
fn a_broken_template_is_an_error() {
    let options = ValidateOptions { template: Some("Hi {% if %}".into()), ..us() };
    let err = validate("phone\n".as_bytes(), &options).unwrap_err();
    assert!(matches!(err, ValidateError::Template(_)), "{err:?}");
    assert!(err.to_string().starts_with("the template: template syntax error"), "{err}");
}

#[test]
fn valid_recipients_are_handed_over_normalized_in_order() {
    let mut seen = Vec::new();
    let csv = "phone,email,name\n(201) 555-0123,,Ann\n,Bob@Example.COM,Bob\n(201) 555-0123,,dup\n";
    let report = validate_with(csv.as_bytes(), &us(), |r| seen.push((r.line, r.contact.clone()))).unwrap();
    assert_eq!(report.valid, 2);
    assert_eq!(seen[0].0, 2);
    assert_eq!(seen[0].1.phone.as_deref(), Some("+12015550123"));
    assert_eq!(seen[1].1.email.as_deref(), Some("Bob@example.com"));
}

#[test]
fn many_rows_stream_through_in_order() {
    let mut csv = String::from("phone\n");
    for i in 0..5000 {
        csv.push_str(&format!("+1201555{:04}\n", i % 4000));
    }
    let mut lines = Vec::new();
    let report = validate_with(csv.as_bytes(), &us(), |r| lines.push(r.line)).unwrap();
    assert_eq!((report.valid, report.duplicate), (4000, 1000));
    assert!(lines.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(report.errors[0], RowError { line: 4002, reason: "duplicate of line 2".into() });
}

#[test]
fn format_errors_come_through() {
    let err = validate("name,city\nAnn,Austin\n".as_bytes(), &us()).unwrap_err();
    assert!(err.to_string().starts_with("line 1: no phone, email or address column"), "{err}");
    let err = validate("phone\n1\n".as_bytes(), &ValidateOptions { format: Some(Format::Json), ..us() }).unwrap_err();
    assert!(err.to_string().starts_with("line 1: not a JSON array"), "{err}");
}

#[test]
fn a_variable_in_a_branch_not_taken_is_not_missing() {
    // `code` is only needed where `vip` is given: Cy (line 4) lacks nothing. A row that
    // cannot be rendered counts for every needed variable it lacks (line 5).
    let csv = "\
phone,name,vip,code
+12015550123,Ann,yes,A1
+12015550124,Bob,yes,
+12015550125,Cy,,
+12015550126,,,
+12015550127,Dee,yes,
";
    let template = "{% if contact.fields.vip is defined %}Code {{contact.fields.code}}. {% endif %}Hi {{contact.name}}";
    let options = ValidateOptions { template: Some(template.into()), preview: 0, ..us() };
    let report = check(csv, &options);
    assert_eq!(
        report.missing_variables.unwrap(),
        [
            MissingVariable { variable: "contact.fields.code".into(), rows: 3, first_line: 3 },
            MissingVariable { variable: "contact.name".into(), rows: 1, first_line: 5 },
        ]
    );
}

#[test]
fn nested_fields_and_addresses_are_variables_too() {
    let list = r#"[
  {"phone": "+12015550123", "telegram": "42", "fields": {"shop": {"city": "Austin"}}},
  {"phone": "+12015550124", "fields": {"shop": {"street": "Main St"}}},
  {"phone": "+12015550125", "telegram": "43", "fields": {"shop": "Boston"}},
  {"phone": "+12015550126", "telegram": "44"}
]"#;
    let options = ValidateOptions {
        template: Some("Hi from {{contact.fields.shop.city}}, {{contact.addresses.telegram}}".into()),
        preview: 4,
        ..us()
    };
    let report = check(list, &options);
    assert_eq!(
        report.missing_variables.unwrap(),
        [
            MissingVariable { variable: "contact.addresses.telegram".into(), rows: 1, first_line: 3 },
            MissingVariable { variable: "contact.fields.shop.city".into(), rows: 3, first_line: 3 },
        ]
    );
    let preview = report.preview.unwrap();
    assert_eq!(preview[0].text.as_deref(), Some("Hi from Austin, 42"));
    assert_eq!(
        preview[1].error.as_deref(),
        Some("unknown template variable `contact.addresses.telegram`, `contact.fields.shop.city`")
    );
    assert_eq!(preview[2].error.as_deref(), Some("unknown template variable `contact.fields.shop.city`"));
}

#[test]
fn the_same_report_for_many_rows_with_a_sparse_column() {
    let mut csv = String::from("phone,name,city\n");
    for i in 0..3000 {
        let city = if i % 3 == 0 { "" } else { "Austin" };
        let name = if i % 7 == 0 { "" } else { "Ann" };
        csv.push_str(&format!("+1201555{i:04},{name},{city}\n"));
    }
    let options = ValidateOptions {
        template: Some(
            "Hi {{contact.name}} in {{contact.fields.city}} ({{contact.fields.plan | default(\"basic\")}})".into(),
        ),
        preview: 2,
        ..us()
    };
    let report = check(&csv, &options);
    assert_eq!(
        report.missing_variables.unwrap(),
        [
            MissingVariable { variable: "contact.fields.city".into(), rows: 1000, first_line: 2 },
            MissingVariable { variable: "contact.name".into(), rows: 429, first_line: 2 },
        ]
    );
    assert_eq!(
        report.preview.unwrap()[1],
        Preview { line: 3, to: "+12015550001".into(), text: Some("Hi Ann in Austin (basic)".into()), error: None }
    );
}

#[test]
fn two_json_keys_for_one_column_make_the_row_invalid() {
    // Not "no phone, email or address": `phone: null` does not wipe out `mobile`.
    let list = r#"[{"mobile": "+1 201 555 0123", "phone": null},
{"phone": "+1 201 555 0124", "name": "Bob"}]"#;
    let report = check(list, &us());
    assert_eq!(errors(&report), [(1, "\"mobile\" and \"phone\" are both phone: keep one")]);
    assert_eq!((report.valid, report.invalid), (1, 1));
}

#[test]
fn the_preview_renders_with_the_campaign_variables_and_they_are_never_missing() {
    let csv = "phone,name\n+12015550123,Ann\n+12015550124,\n";
    let options = ValidateOptions {
        template: Some("Hi {{contact.name}}, use {{offer.code}}".into()),
        variables: serde_json::json!({"offer": {"code": "SPRING"}}),
        preview: 1,
        ..us()
    };
    let report = check(csv, &options);
    let preview = report.preview.unwrap();
    assert_eq!(preview[0].text.as_deref(), Some("Hi Ann, use SPRING"));
    let missing = report.missing_variables.unwrap();
    assert_eq!(missing.len(), 1, "only the name is missing, not the offer: {missing:?}");
    assert_eq!((missing[0].variable.as_str(), missing[0].rows, missing[0].first_line), ("contact.name", 1, 3));
}
