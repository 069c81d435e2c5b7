//! `cascade campaign validate`, the real binary on fixture files: the exact `--json` object,
//! the output for people, and the exit codes.
//!
//! `fixtures/campaigns/recipients.csv` (a BOM, `;` separators, CRLF line ends, quoted values):
//!
//! | line | row | verdict |
//! | --- | --- | --- |
//! | 1 | header `Phone;Name;City;Plan` | |
//! | 2 | `+1 201 555 0123` Ann Lee | valid |
//! | 3 | `(201) 555-0124` "Bob; Jr" | valid (with `--region US`) |
//! | 4 | empty | skipped |
//! | 5 | `12` | invalid: too short |
//! | 6 | `2015550123` | duplicate of line 2 (with `--region US`) |
//! | 7–8 | `"+1 201 555 0125"`, a city with a newline inside | valid |
//! | 9 | `abc` | invalid: not a phone number |
//! | 10 | `;;;` | skipped |
//! | 11 | `+999 123` | invalid: unknown country code |
//! | 12 | `201-555-0126`, no city | valid (with `--region US`) |

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::{Value, json};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/campaigns").join(name)
}

fn cascade(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cascade"))
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("CASCADE_SERVER")
        .env_remove("CASCADE_API_KEY")
        .output()
        .expect("run cascade")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_of(o: &Output) -> Value {
    let text = stdout(o);
    assert_eq!(text.lines().count(), 1, "exactly one JSON object: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn json_report_of_a_csv_file() {
    let file = fixture("recipients.csv");
    let o = cascade(&["campaign", "validate", "--file", file.to_str().unwrap(), "--region", "US", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        json_of(&o),
        json!({
            "valid": 4,
            "invalid": 3,
            "duplicate": 1,
            "errors": [
                {"line": 5, "reason": "phone \"12\": too short"},
                {"line": 6, "reason": "duplicate of line 2"},
                {"line": 9, "reason": "phone \"abc\": not a phone number"},
                {"line": 11, "reason": "phone \"+999 123\": unknown country code"},
            ]
        })
    );
}

#[test]
fn json_report_with_a_preview() {
    let file = fixture("recipients.csv");
    let o = cascade(&[
        "campaign",
        "validate",
        "--file",
        file.to_str().unwrap(),
        "--region",
        "us",
        "--text",
        "Hi {{contact.name}} from {{contact.fields.City}}",
        "--preview",
        "2",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json_of(&o);
    assert_eq!(
        v["preview"],
        json!([
            {"line": 2, "to": "+12015550123", "text": "Hi Ann Lee from Austin"},
            {"line": 3, "to": "+12015550124", "text": "Hi Bob; Jr from Boston"},
        ])
    );
    assert_eq!(v["missing_variables"], json!([{"variable": "contact.fields.City", "rows": 1, "first_line": 12}]));
    assert_eq!(v["valid"], 4);
}

#[test]
fn without_a_region_national_numbers_are_invalid() {
    let file = fixture("recipients.csv");
    let o = cascade(&["campaign", "validate", "--file", file.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(0));
    let v = json_of(&o);
    assert_eq!((v["valid"].as_u64(), v["invalid"].as_u64(), v["duplicate"].as_u64()), (Some(2), Some(6), Some(0)));
    assert_eq!(
        v["errors"][0],
        json!({"line": 3, "reason": "phone \"(201) 555-0124\": no country code: write it as +<country code> <number>, or give a default region"})
    );
}

#[test]
fn json_lists_are_read_too() {
    let file = fixture("recipients.json");
    let o = cascade(&["campaign", "validate", "--file", file.to_str().unwrap(), "--region", "US", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        json_of(&o),
        json!({
            "valid": 2,
            "invalid": 2,
            "duplicate": 1,
            "errors": [
                {"line": 3, "reason": "duplicate of line 2"},
                {"line": 5, "reason": "email \"x@\": not an email address"},
                {"line": 6, "reason": "no phone, email or address"},
            ]
        })
    );
}

#[test]
fn output_for_people() {
    let file = fixture("recipients.csv");
    let o = cascade(&[
        "campaign",
        "validate",
        "--file",
        file.to_str().unwrap(),
        "--region",
        "US",
        "--text",
        "Hi {{contact.name}}, {{contact.fields.City}} calls!",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    for expected in [
        "recipients.csv: 8 recipient rows",
        "  valid      4",
        "  invalid    3",
        "  duplicate  1",
        "Errors:",
        "  line 5   phone \"12\": too short",
        "  line 6   duplicate of line 2",
        "  line 11  phone \"+999 123\": unknown country code",
        "Preview (the first 3 recipients):",
        "  line 2 → +12015550123\n    Hi Ann Lee, Austin calls!",
        "  line 7 → +12015550125\n    Hi Dee, Denver\n    Colorado calls!",
        "contact.fields.City",
        "1 row of 4, the first at line 12",
        "The list was read: 4 rows will be left out (exit code 0)",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(!text.contains('\u{1b}'), "no colours when NO_COLOR is set or stdout is a pipe");
}

#[test]
fn a_clean_list_says_so() {
    let dir = std::env::temp_dir().join(format!("cascade-campaign-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("clean.csv");
    std::fs::write(&file, "phone,name\n+12015550123,Ann\n+447400123456,Bob\n").unwrap();
    let o = cascade(&["campaign", "validate", "--file", file.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("The list is ready: every row is a recipient."), "{}", stdout(&o));
}

#[test]
fn many_errors_are_cut_short_for_people() {
    let dir = std::env::temp_dir().join(format!("cascade-campaign-many-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("many.csv");
    let mut csv = String::from("phone\n");
    for _ in 0..25 {
        csv.push_str("12\n");
    }
    std::fs::write(&file, csv).unwrap();
    let human = cascade(&["campaign", "validate", "--file", file.to_str().unwrap()]);
    let json = cascade(&["campaign", "validate", "--file", file.to_str().unwrap(), "--json"]);
    let _ = std::fs::remove_dir_all(&dir);
    let text = stdout(&human);
    assert!(text.contains("Errors (the first 10 of 25):"), "{text}");
    assert!(text.contains("… and 15 more (--json lists them all)"), "{text}");
    assert_eq!(json_of(&json)["errors"].as_array().map(Vec::len), Some(25));
}

#[test]
fn a_file_without_an_address_column_is_exit_2() {
    let file = fixture("no-address.csv");
    let o = cascade(&["campaign", "validate", "--file", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("not a recipient list: line 1: no phone, email or address column"), "{err}");
    assert!(err.contains("\"first,last,city\""), "names the header line: {err}");
    let o = cascade(&["campaign", "validate", "--file", file.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(json_of(&o)["exit_code"], 2);
}

#[test]
fn broken_json_is_exit_2_with_its_line() {
    let file = fixture("broken.json");
    let o = cascade(&["campaign", "validate", "--file", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("line 2: not valid JSON"), "{}", stderr(&o));
}

#[test]
fn bad_arguments_are_exit_2() {
    let file = fixture("recipients.csv");
    let file = file.to_str().unwrap();
    let o = cascade(&["campaign", "validate", "--file", file, "--region", "UK"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--region: unknown region \"UK\""), "{}", stderr(&o));
    let o = cascade(&["campaign", "validate", "--file", "/nonexistent/list.csv"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("/nonexistent/list.csv: no such file"), "{}", stderr(&o));
    let o = cascade(&["campaign", "validate", "--file", file, "--text", "Hi {{ contact.name "]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--text: template syntax error"), "{}", stderr(&o));
    let o = cascade(&["campaign", "validate", "--file", file, "--preview", "2"]);
    assert_eq!(o.status.code(), Some(2), "--preview needs --text");
    let o = cascade(&["campaign", "validate"]);
    assert_eq!(o.status.code(), Some(2), "--file is required");
}

#[test]
#[cfg(target_os = "linux")]
fn a_read_error_is_exit_5() {
    // Opens as a file, and reading its first bytes fails (EIO), even for root.
    let o = cascade(&["campaign", "validate", "--file", "/proc/self/mem"]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(stderr(&o).contains("/proc/self/mem: cannot read it: "), "{}", stderr(&o));
}

#[test]
#[cfg(unix)]
fn an_unreadable_file_is_exit_5() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("cascade-campaign-io-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("locked.csv");
    std::fs::write(&file, "phone\n+12015550123\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::File::open(&file).is_ok() {
        // Running as root: permissions do not stop reading. Nothing to check here.
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let o = cascade(&["campaign", "validate", "--file", file.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
}
