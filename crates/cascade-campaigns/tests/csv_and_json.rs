//! Reading recipient lists: CSV robustness (BOM, separators, quotes, empty lines, CRLF, line
//! numbers) and JSON lists.

use std::ops::ControlFlow;

use cascade_campaigns::recipients::{Format, ImportError, Row, read};
use serde_json::json;

fn rows(input: &str) -> Vec<Row> {
    try_rows(input).unwrap_or_else(|e| panic!("{e}"))
}

fn try_rows(input: &str) -> Result<Vec<Row>, ImportError> {
    let mut out = Vec::new();
    read(input.as_bytes(), None, |r| {
        out.push(r);
        ControlFlow::Continue(())
    })?;
    Ok(out)
}

fn lines(rows: &[Row]) -> Vec<u64> {
    rows.iter().map(|r| r.line).collect()
}

fn phones(rows: &[Row]) -> Vec<&str> {
    rows.iter().map(|r| r.contact.phone.as_deref().unwrap_or("")).collect()
}

#[test]
fn a_utf8_bom_is_skipped() {
    let r = rows("\u{feff}phone,name\n+12015550123,Ann\n");
    assert_eq!(phones(&r), ["+12015550123"]);
    assert_eq!(r[0].contact.name.as_deref(), Some("Ann"));
    assert_eq!(r[0].line, 2);
    // The BOM does not end up in the first column's name either.
    let r = rows("\u{feff}City,phone\nAustin,+12015550123\n");
    assert_eq!(r[0].contact.fields["City"], "Austin");
}

#[test]
fn semicolons_and_tabs_are_detected_from_the_header() {
    let r = rows("Phone;Name;City\n+1 201 555 0123;Ann;Austin, TX\n");
    assert_eq!(phones(&r), ["+1 201 555 0123"]);
    assert_eq!(r[0].contact.fields["City"], "Austin, TX", "a comma is text when `;` separates");
    let r = rows("phone\tname\n2015550123\tAnn Lee\n");
    assert_eq!(r[0].contact.name.as_deref(), Some("Ann Lee"));
}

#[test]
fn quoted_fields_hold_separators_quotes_and_newlines() {
    let csv = "phone,name,note\n\
               +12015550123,\"Lee, Ann\",\"she said \"\"hi\"\"\"\n\
               +12015550124,Bob,\"line one\nline two\nline three\"\n\
               +12015550125,Cy,plain\n";
    let r = rows(csv);
    assert_eq!(r[0].contact.name.as_deref(), Some("Lee, Ann"));
    assert_eq!(r[0].contact.fields["note"], "she said \"hi\"");
    assert_eq!(r[1].contact.fields["note"], "line one\nline two\nline three");
    assert_eq!(lines(&r), [2, 3, 6], "a record with newlines has the line it starts on");
}

#[test]
fn empty_lines_are_skipped_and_counted() {
    let csv = "\n\nphone,name\n\n+12015550123,Ann\n,\n   \n+12015550124,Bob\n\n";
    let r = rows(csv);
    assert_eq!(phones(&r), ["+12015550123", "+12015550124"]);
    assert_eq!(lines(&r), [5, 8]);
}

#[test]
fn crlf_line_ends() {
    let csv = "phone,name\r\n+12015550123,Ann\r\n\r\n\"+12015550124\",\"Bob\r\nJr\"\r\n+12015550125,Cy\r\n";
    let r = rows(csv);
    assert_eq!(phones(&r), ["+12015550123", "+12015550124", "+12015550125"]);
    assert_eq!(r[0].contact.name.as_deref(), Some("Ann"), "no stray \\r");
    assert_eq!(r[1].contact.name.as_deref(), Some("Bob\r\nJr"));
    assert_eq!(lines(&r), [2, 4, 6]);
}

#[test]
fn no_final_newline() {
    let r = rows("phone\n+12015550123");
    assert_eq!(phones(&r), ["+12015550123"]);
}

#[test]
fn columns_map_to_the_contact() {
    let csv = "Mobile,E-Mail,Full Name,Telegram,viber,MAX,WhatsApp,address.line,City,Plan\n\
               +12015550123,ann@example.com,Ann Lee,4242,vb1,mx1,+12015550123,ln1,Austin,gold\n";
    let c = &rows(csv)[0].contact;
    assert_eq!(c.phone.as_deref(), Some("+12015550123"));
    assert_eq!(c.email.as_deref(), Some("ann@example.com"));
    assert_eq!(c.name.as_deref(), Some("Ann Lee"));
    for (channel, value) in
        [("telegram", "4242"), ("viber", "vb1"), ("max", "mx1"), ("whatsapp", "+12015550123"), ("line", "ln1")]
    {
        assert_eq!(c.addresses[channel], value, "{channel}");
    }
    assert_eq!(c.fields["City"], "Austin");
    assert_eq!(c.fields["Plan"], "gold");
}

#[test]
fn empty_cells_are_no_value() {
    let r = rows("phone,email,city\n+12015550123,  ,\n");
    assert_eq!(r[0].contact.email, None);
    assert!(r[0].contact.fields.is_empty());
}

#[test]
fn too_many_values_is_a_row_problem() {
    let r = rows("phone,name\n+12015550123,Lee, Ann\n+12015550124,Bob,,\n");
    assert_eq!(r[0].problems, ["3 values, but the header has 2 columns (a separator inside a value needs quotes)"]);
    assert!(r[1].problems.is_empty(), "empty extra values are fine");
}

#[test]
fn text_that_is_not_utf8_is_a_row_problem() {
    let mut bytes = b"phone,name\n+12015550123,".to_vec();
    bytes.extend_from_slice(&[0xC1, 0xEE, 0xE1, b'\n']); // "Боб" in Windows-1251
    let mut out = Vec::new();
    read(&bytes[..], None, |r| {
        out.push(r);
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(out[0].problems, ["name is not UTF-8 text (save the file as UTF-8)"]);
}

fn format_error(input: &str) -> (Option<u64>, String) {
    match try_rows(input) {
        Err(ImportError::Format { line, message }) => (line, message),
        other => panic!("expected a format error, got {other:?}"),
    }
}

#[test]
fn a_header_without_any_address_column_is_refused() {
    let (line, message) = format_error("\nfirst,last,city\nAnn,Lee,Austin\n");
    assert_eq!(line, Some(2));
    assert!(message.contains("no phone, email or address column"), "{message}");
    assert!(message.contains("\"first,last,city\""), "the header is named: {message}");
    // A binary file reads as one strange header.
    let (line, _) = format_error("\u{1}\u{2}\u{3}garbage\u{0}");
    assert_eq!(line, Some(1));
}

#[test]
fn the_same_column_twice_is_refused() {
    let (line, message) = format_error("phone,mobile\n1,2\n");
    assert_eq!(line, Some(1));
    assert_eq!(message, "columns 1 and 2 of the header are both phone: keep one");
}

#[test]
fn an_empty_file_is_refused() {
    let (line, message) = format_error("");
    assert_eq!(line, None);
    assert!(message.contains("empty"), "{message}");
    format_error("\n\r\n  \n");
}

#[test]
fn json_lists_with_fields_and_addresses() {
    let list = r#"[
  {"phone": "+1 201 555 0123", "name": "Ann", "fields": {"city": "Austin", "visits": 3}},
  {"Mobile": 12015550124, "E-mail": "bob@example.com", "plan": "gold",
   "addresses": {"Telegram": "4242"}},
  {"telegram": "777", "address.line": "ln1", "fields": null, "note": null}
]"#;
    let r = rows(list);
    assert_eq!(lines(&r), [2, 3, 5]);
    assert_eq!(r[0].contact.fields["visits"], json!(3));
    assert_eq!(r[1].contact.phone.as_deref(), Some("12015550124"));
    assert_eq!(r[1].contact.email.as_deref(), Some("bob@example.com"));
    assert_eq!(r[1].contact.fields["plan"], "gold");
    assert_eq!(r[1].contact.addresses["telegram"], "4242");
    assert_eq!(r[2].contact.addresses["telegram"], "777");
    assert_eq!(r[2].contact.addresses["line"], "ln1");
    assert!(r[2].contact.fields.is_empty());
    assert!(r.iter().all(|r| r.problems.is_empty()));
}

#[test]
fn json_with_a_bom_and_crlf() {
    let r = rows("\u{feff}[\r\n{\"phone\": \"+12015550123\"},\r\n\r\n{\"phone\": \"+12015550124\"}\r\n]");
    assert_eq!(lines(&r), [2, 4]);
}

#[test]
fn the_format_can_be_forced() {
    let mut n = 0;
    let err = read("[1]".as_bytes(), Some(Format::Csv), |_| {
        n += 1;
        ControlFlow::Continue(())
    });
    assert!(matches!(err, Err(ImportError::Format { line: Some(1), .. })), "{err:?}");
    let err = read("phone\n1\n".as_bytes(), Some(Format::Json), |_| ControlFlow::Continue(()));
    assert!(matches!(err, Err(ImportError::Format { line: Some(1), .. })), "{err:?}");
}

#[test]
fn json_syntax_errors_name_the_line() {
    let err = try_rows("[\n{\"phone\": \"1\"},\n{\"phone\": \"2\"\n").unwrap_err();
    let ImportError::Format { line, message } = err else { panic!("{err:?}") };
    assert_eq!(line, Some(4));
    assert!(message.starts_with("not valid JSON: "), "{message}");
}

#[test]
fn a_lone_carriage_return_ends_a_line_too() {
    let r = rows("phone\r+12015550123\r\r+12015550124\r\n+12015550125\n");
    assert_eq!(lines(&r), [2, 4, 5]);
}
