//! Reading recipient lists, streamed: CSV (a header row, then one recipient per record) or a
//! JSON array of objects. Each recipient is handed to a callback as a [`Row`] — its line and a
//! [`Contact`] *as written* (trimmed; the phone number not yet normalized) — and dropped
//! after, so a file of a million rows is read in constant memory.
//!
//! Checking the rows (phone numbers, emails, duplicates) is [`crate::validate`](mod@crate::validate)'s job.
//!
//! ## CSV
//!
//! - The first non-empty line is the header; column names as in [`crate::columns`].
//! - The separator is `,`, `;` or a tab: whichever appears most often (outside quotes) in the
//!   header line; `,` when none does.
//! - Quoted fields (`"…"`) may hold separators, newlines and doubled quotes (`""`).
//! - A UTF-8 byte order mark is skipped; lines may end in `\n` or `\r\n`; empty lines (and
//!   lines of separators only) are skipped.
//! - Line numbers are the ones an editor shows, the header being line 1 (after any empty lines
//!   before it); a record with newlines inside quotes has the line it starts on.
//! - An empty cell is no value. A record with more values than the header has columns is read
//!   anyway, and the row gets a problem (extra empty values are fine).
//!
//! ## JSON
//!
//! An array of objects. Keys are column names as for CSV (`"phone"`, `"mobile"`, `"email"`,
//! `"name"`, `"telegram"`, `"address.line"`…); two keys take objects: `"fields"` (custom fields,
//! any JSON values) and `"addresses"` (channel → address). Any other key is a custom field.
//! Phone numbers may be numbers. The line of a recipient is the line of its `{`.
//!
//! As a CSV header may not name a column twice, a recipient may not have two keys for one
//! column (`"phone"` and `"mobile"`, `"city"` and `"fields": {"city": …}`), even when one of
//! them is `null`: the row gets a problem naming both (`"mobile" and "phone" are both phone:
//! keep one`), and the first key's value is kept.
//!
//! ```json
//! [
//!   {"phone": "+1 201 555 0123", "name": "Ann", "fields": {"city": "Austin"}},
//!   {"email": "bob@example.com", "telegram": "4242", "plan": "gold"}
//! ]
//! ```
//!
//! ## Example
//!
//! ```
//! use std::ops::ControlFlow;
//! use cascade_campaigns::recipients::{read, Format};
//! let csv = "\u{feff}Phone;Name;City\r\n+1 201 555 0123;Ann;\"Austin; TX\"\r\n\r\n2015550124;Bob;Dallas\r\n";
//! let mut rows = Vec::new();
//! read(csv.as_bytes(), Some(Format::Csv), |row| { rows.push(row); ControlFlow::Continue(()) }).unwrap();
//! assert_eq!(rows.len(), 2);
//! assert_eq!(rows[1].line, 4);
//! assert_eq!(rows[0].contact.fields["City"], "Austin; TX");
//! assert_eq!(rows[1].contact.phone.as_deref(), Some("2015550124")); // as written
//! ```

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::ops::ControlFlow;
use std::path::Path;
use std::rc::Rc;

use cascade_engine::{ChannelName, Contact};
use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::columns::{Column, column_for};

/// A recipient as read: its line and its contact as written.
#[derive(Clone, PartialEq, Debug)]
pub struct Row {
    /// The line the recipient starts on (the header is line 1 in a CSV file).
    pub line: u64,
    /// The contact, values trimmed; the phone number as written.
    pub contact: Contact,
    /// What is wrong with the row's shape (too many values, text that is not UTF-8, a JSON
    /// element that is not an object), for people. Empty for most rows.
    pub problems: Vec<String>,
}

/// The format of a recipient list.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    /// Comma-, semicolon- or tab-separated values with a header row.
    Csv,
    /// A JSON array of objects.
    Json,
}

impl Format {
    /// The format a file name says: `.json` is JSON; `.csv`, `.tsv` and `.txt` are CSV.
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "json" => Some(Format::Json),
            "csv" | "tsv" | "txt" => Some(Format::Csv),
            _ => None,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Csv => "CSV",
            Format::Json => "JSON",
        })
    }
}

/// A list that cannot be read at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// Not a recipient list: not CSV or JSON, no header, no column to reach anyone by, a JSON
    /// syntax error. `line` is where (the header line for header problems), when known.
    #[error("{}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
    Format {
        /// The line the problem is on.
        line: Option<u64>,
        /// What is wrong, for people.
        message: String,
    },
    /// Reading failed.
    #[error("cannot read the list: {0}")]
    Io(#[from] io::Error),
}

impl ImportError {
    fn format(line: Option<u64>, message: impl Into<String>) -> Self {
        ImportError::Format { line, message: message.into() }
    }
}

const BUFFER: usize = 256 * 1024;

/// Reads a recipient list and calls `on_row` for each recipient, in file order, until the end
/// or until `on_row` returns `Break`.
///
/// `format`: `None` looks at the first character (`[` is JSON, anything else CSV).
pub fn read<R: Read>(
    input: R,
    format: Option<Format>,
    mut on_row: impl FnMut(Row) -> ControlFlow<()>,
) -> Result<(), ImportError> {
    let mut input = BufReader::with_capacity(BUFFER, input);
    skip_bom(&mut input)?;
    let format = match format {
        Some(f) => f,
        None => sniff(&mut input)?,
    };
    match format {
        Format::Csv => read_csv(input, &mut on_row),
        Format::Json => read_json(input, &mut on_row),
    }
}

fn skip_bom<R: Read>(input: &mut BufReader<R>) -> io::Result<()> {
    if input.fill_buf()?.starts_with(b"\xEF\xBB\xBF") {
        input.consume(3);
    }
    Ok(())
}

fn sniff<R: Read>(input: &mut BufReader<R>) -> Result<Format, ImportError> {
    let buf = input.fill_buf()?;
    let first = buf.iter().find(|b| !b.is_ascii_whitespace());
    Ok(if first == Some(&b'[') { Format::Json } else { Format::Csv })
}

// ---- CSV -------------------------------------------------------------------------------------

/// The separator of the header line: the most frequent of `,`, `;` and tab outside quotes.
fn detect_separator(head: &[u8]) -> u8 {
    let line = head.split(|&b| b == b'\n').find(|l| l.iter().any(|b| !b.is_ascii_whitespace())).unwrap_or(&[]);
    let (mut quoted, mut counts) = (false, [0usize; 3]);
    for &b in line {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => counts[0] += 1,
            b';' if !quoted => counts[1] += 1,
            b'\t' if !quoted => counts[2] += 1,
            _ => {}
        }
    }
    let best = (0..3).max_by_key(|&i| (counts[i], std::cmp::Reverse(i))).unwrap_or(0);
    if counts[best] == 0 { b',' } else { [b',', b';', b'\t'][best] }
}

fn header_text(record: &csv::ByteRecord, separator: u8) -> String {
    let text = record.iter().map(String::from_utf8_lossy).collect::<Vec<_>>().join(&(separator as char).to_string());
    if text.chars().count() > 120 { format!("{}…", text.chars().take(120).collect::<String>()) } else { text }
}

/// What a column is, for messages about two of them: `phone`, `address.telegram`, `the field
/// "City"`.
fn describe(column: &Column) -> String {
    match column {
        Column::Field(f) => format!("the field {f:?}"),
        other => other.label(),
    }
}

/// The header's columns, in order.
fn parse_header(record: &csv::ByteRecord, line: u64, separator: u8) -> Result<Vec<Column>, ImportError> {
    let mut columns = Vec::with_capacity(record.len());
    for (i, raw) in record.iter().enumerate() {
        let Ok(name) = std::str::from_utf8(raw) else {
            return Err(ImportError::format(
                Some(line),
                format!("the header (column {}) is not UTF-8 text: save the file as UTF-8", i + 1),
            ));
        };
        let column = column_for(name);
        if column != Column::Ignored
            && let Some(j) = columns.iter().position(|c| *c == column)
        {
            return Err(ImportError::format(
                Some(line),
                format!("columns {} and {} of the header are both {}: keep one", j + 1, i + 1, describe(&column)),
            ));
        }
        columns.push(column);
    }
    if !columns.iter().any(Column::is_address) {
        return Err(ImportError::format(
            Some(line),
            format!(
                "no phone, email or address column in the header {:?} (name one `phone`, `email`, `telegram`, … or `address.<channel>`)",
                header_text(record, separator)
            ),
        ));
    }
    Ok(columns)
}

fn is_blank(record: &csv::ByteRecord) -> bool {
    record.iter().all(|f| f.iter().all(|b| b.is_ascii_whitespace()))
}

/// Line numbers for CSV records.
///
/// The csv reader gives each record the byte offset where reading it began: right after the
/// previous record's terminator, before the empty lines (and, with CRLF, the `\n`) it skips.
/// Its line count is taken at the same place, so it lags behind a record that follows empty
/// lines or CRLF line ends. This reader sits under the csv reader, notes the offsets of every
/// `\r` and `\n` that passes (only those not yet behind the current record are kept), and
/// gives the line of the first byte after the skipped terminators: the line the record starts
/// on, as an editor shows it (a line ends with `\n`, `\r\n` or a lone `\r`).
struct Lines<R> {
    inner: R,
    offset: u64,
    /// Offsets of `\r` and `\n` read but not yet behind the current record, with whether
    /// each is a `\n`.
    pending: VecDeque<(u64, bool)>,
    /// Line breaks behind the current record.
    breaks: u64,
    /// The offset of the last `\r` counted, so that the `\n` of a `\r\n` is not counted again.
    last_cr: Option<u64>,
}

impl<R: Read> Read for Lines<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        for (i, &b) in buf[..n].iter().enumerate() {
            if b == b'\n' || b == b'\r' {
                self.pending.push_back((self.offset + i as u64, b == b'\n'));
            }
        }
        self.offset += n as u64;
        Ok(n)
    }
}

impl<R> Lines<R> {
    fn new(inner: R) -> Self {
        Self { inner, offset: 0, pending: VecDeque::new(), breaks: 0, last_cr: None }
    }

    fn count(&mut self, at: u64, newline: bool) {
        if newline {
            if self.last_cr.is_none_or(|cr| cr + 1 != at) {
                self.breaks += 1;
            }
        } else {
            self.breaks += 1;
            self.last_cr = Some(at);
        }
    }

    /// The line of the record whose reading began at byte `start`.
    fn line_of(&mut self, start: u64) -> u64 {
        while let Some(&(at, newline)) = self.pending.front() {
            if at >= start {
                break;
            }
            self.count(at, newline);
            self.pending.pop_front();
        }
        // The terminators the csv reader skipped before the record's first byte.
        let mut cursor = start;
        while let Some(&(at, newline)) = self.pending.front() {
            if at != cursor {
                break;
            }
            self.count(at, newline);
            self.pending.pop_front();
            cursor += 1;
        }
        self.breaks + 1
    }
}

fn read_csv<R: Read>(
    mut input: BufReader<R>,
    on_row: &mut dyn FnMut(Row) -> ControlFlow<()>,
) -> Result<(), ImportError> {
    let separator = detect_separator(input.fill_buf()?);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(separator)
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(64 * 1024)
        .from_reader(Lines::new(input));
    let mut record = csv::ByteRecord::new();
    let mut header: Option<Vec<Column>> = None;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_error(e)),
        }
        if is_blank(&record) {
            continue;
        }
        let start = record.position().map_or(0, |p| p.byte());
        let line = reader.get_mut().line_of(start);
        let Some(h) = &header else {
            header = Some(parse_header(&record, line, separator)?);
            continue;
        };
        if on_row(csv_row(h, &record, line)).is_break() {
            return Ok(());
        }
    }
    if header.is_none() {
        return Err(ImportError::format(None, "the file is empty: expected a header line (e.g. `phone,name`)"));
    }
    Ok(())
}

fn csv_error(e: csv::Error) -> ImportError {
    let line = e.position().map(|p| p.line());
    match e.into_kind() {
        csv::ErrorKind::Io(io) => ImportError::Io(io),
        other => ImportError::format(line, format!("{other:?}")),
    }
}

fn csv_row(header: &[Column], record: &csv::ByteRecord, line: u64) -> Row {
    let mut contact = Contact::default();
    let mut problems = Vec::new();
    let mut extra = 0usize;
    for (i, raw) in record.iter().enumerate() {
        let Some(column) = header.get(i) else {
            if raw.iter().any(|b| !b.is_ascii_whitespace()) {
                extra += 1;
            }
            continue;
        };
        if *column == Column::Ignored {
            continue;
        }
        let text = match std::str::from_utf8(raw) {
            Ok(t) => t.trim(),
            Err(_) => {
                problems.push(format!("{} is not UTF-8 text (save the file as UTF-8)", column.label()));
                continue;
            }
        };
        if text.is_empty() {
            continue;
        }
        match column {
            Column::Phone => contact.phone = Some(text.to_owned()),
            Column::Email => contact.email = Some(text.to_owned()),
            Column::Name => contact.name = Some(text.to_owned()),
            Column::Address(ch) => {
                contact.addresses.insert(ch.clone(), text.to_owned());
            }
            Column::Field(f) => {
                contact.fields.insert(f.clone(), Value::String(text.to_owned()));
            }
            Column::Ignored => {}
        }
    }
    if extra > 0 {
        problems.push(format!(
            "{} values, but the header has {} columns (a separator inside a value needs quotes)",
            record.len(),
            header.len()
        ));
    }
    Row { line, contact, problems }
}

// ---- JSON ------------------------------------------------------------------------------------

/// Counts the lines of what passes through it, for the line of each JSON element.
struct LineCounter<R> {
    inner: R,
    newlines: Rc<Cell<u64>>,
}

impl<R: BufRead> Read for LineCounter<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = {
            let available = self.inner.fill_buf()?;
            let n = available.len().min(buf.len());
            buf[..n].copy_from_slice(&available[..n]);
            n
        };
        self.inner.consume(n);
        let newlines = buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        self.newlines.set(self.newlines.get() + newlines);
        Ok(n)
    }
}

fn read_json<R: Read>(
    mut input: BufReader<R>,
    on_row: &mut dyn FnMut(Row) -> ControlFlow<()>,
) -> Result<(), ImportError> {
    let first = input.fill_buf()?.iter().find(|b| !b.is_ascii_whitespace()).copied();
    match first {
        None => return Err(ImportError::format(None, "the file is empty: expected a JSON array of recipients")),
        Some(b'[') => {}
        Some(_) => {
            return Err(ImportError::format(
                Some(1),
                "not a JSON array: a JSON recipient list is `[{\"phone\": …}, …]`",
            ));
        }
    }
    let newlines = Rc::new(Cell::new(0));
    let counter = LineCounter { inner: input, newlines: newlines.clone() };
    let mut de = serde_json::Deserializer::from_reader(counter);
    let stopped = Cell::new(false);
    let result = Elements { on_row, newlines: &newlines, stopped: &stopped }.deserialize(&mut de);
    match result {
        Ok(()) => {}
        Err(_) if stopped.get() => return Ok(()),
        Err(e) => return Err(json_error(e)),
    }
    de.end().map_err(json_error)
}

fn json_error(e: serde_json::Error) -> ImportError {
    if e.is_io() {
        return ImportError::Io(e.into());
    }
    let line = (e.line() > 0).then(|| e.line() as u64);
    let text = e.to_string();
    let message = match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    };
    ImportError::format(line, format!("not valid JSON: {message}"))
}

/// The array: a sequence visitor that hands each element on as it is parsed.
struct Elements<'a, 'f> {
    on_row: &'a mut (dyn FnMut(Row) -> ControlFlow<()> + 'f),
    newlines: &'a Cell<u64>,
    stopped: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for Elements<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Elements<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of recipients")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some((line, value)) = seq.next_element_seed(Element { newlines: self.newlines })? {
            if (self.on_row)(json_row(line, value)).is_break() {
                self.stopped.set(true);
                return Err(serde::de::Error::custom("stopped"));
            }
        }
        Ok(())
    }
}

/// One element: read when the parser is at its first character, so the line counted so far
/// is the element's line.
struct Element<'a> {
    newlines: &'a Cell<u64>,
}

impl<'de> DeserializeSeed<'de> for Element<'_> {
    type Value = (u64, Value);

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(u64, Value), D::Error> {
        let line = self.newlines.get() + 1;
        let value = <Value as serde::Deserialize>::deserialize(d)?;
        Ok((line, value))
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON value as the text of a phone, email, name or address.
fn text_of(key: &str, value: Value, problems: &mut Vec<String>) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => {
            let (start, end) = (s.len() - s.trim_start().len(), s.trim_end().len());
            if start >= end {
                None
            } else if start == 0 && end == s.len() {
                Some(s)
            } else {
                Some(s[start..end].to_owned())
            }
        }
        Value::Number(n) => Some(n.to_string()),
        other => {
            problems.push(format!("{key:?} must be text, not {}", kind(&other)));
            None
        }
    }
}

fn field_value(value: Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::String(s) => {
            let t = s.trim();
            (!t.is_empty()).then(|| Value::String(t.to_owned()))
        }
        other => Some(other),
    }
}

/// A JSON recipient being read: its contact, its problems, and which key gave each column.
struct JsonRow {
    contact: Contact,
    problems: Vec<String>,
    keys: Vec<(Column, String)>,
}

impl JsonRow {
    /// Notes that `key` gives `column`: false, with a problem, when another key gave it already.
    fn claim(&mut self, column: &Column, key: &str) -> bool {
        match self.keys.iter().find(|(c, _)| c == column) {
            Some((_, first)) => {
                let (a, b) = if first.as_str() <= key { (first.as_str(), key) } else { (key, first.as_str()) };
                self.problems.push(format!("{a:?} and {b:?} are both {}: keep one", describe(column)));
                false
            }
            None => {
                self.keys.push((column.clone(), key.to_owned()));
                true
            }
        }
    }

    /// Sets `column` from the value of `key`.
    fn set(&mut self, column: Column, key: &str, value: Value) {
        if column == Column::Ignored || !self.claim(&column, key) {
            return;
        }
        let problems = &mut self.problems;
        match column {
            Column::Phone => self.contact.phone = text_of(key, value, problems),
            Column::Email => self.contact.email = text_of(key, value, problems),
            Column::Name => self.contact.name = text_of(key, value, problems),
            Column::Address(ch) => {
                if let Some(t) = text_of(key, value, problems) {
                    self.contact.addresses.insert(ch, t);
                }
            }
            Column::Field(f) => {
                if let Some(v) = field_value(value) {
                    self.contact.fields.insert(f, v);
                }
            }
            Column::Ignored => {}
        }
    }
}

fn json_row(line: u64, value: Value) -> Row {
    let mut row = JsonRow { contact: Contact::default(), problems: Vec::new(), keys: Vec::new() };
    let object = match value {
        Value::Object(o) => o,
        other => {
            row.problems.push(format!("expected an object (`{{\"phone\": …}}`), found {}", kind(&other)));
            return Row { line, contact: row.contact, problems: row.problems };
        }
    };
    for (key, value) in object {
        let lower = key.trim().to_ascii_lowercase();
        if lower == "fields" || lower == "addresses" {
            match value {
                Value::Object(map) => json_map(&key, lower == "fields", map, &mut row),
                Value::Null => {}
                other => row.problems.push(format!("{key:?} must be an object, not {}", kind(&other))),
            }
            continue;
        }
        row.set(column_for(&key), &key, value);
    }
    Row { line, contact: row.contact, problems: row.problems }
}

/// The object under `"fields"` (`fields` true) or `"addresses"` (the key as written: `outer`).
fn json_map(outer: &str, fields: bool, map: Map<String, Value>, row: &mut JsonRow) {
    for (key, value) in map {
        let column = if fields {
            Column::Field(key.clone())
        } else {
            let channel = key.trim().to_lowercase();
            if channel.is_empty() {
                continue;
            }
            Column::Address(ChannelName::new(channel))
        };
        row.set(column, &format!("{outer}.{key}"), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(input: &str, format: Option<Format>) -> Result<Vec<Row>, ImportError> {
        let mut out = Vec::new();
        read(input.as_bytes(), format, |r| {
            out.push(r);
            ControlFlow::Continue(())
        })?;
        Ok(out)
    }

    #[test]
    fn separators_are_detected_from_the_header() {
        assert_eq!(detect_separator(b"phone,name\n"), b',');
        assert_eq!(detect_separator(b"phone;name;city\n1,2;3"), b';');
        assert_eq!(detect_separator(b"phone\tname\n"), b'\t');
        assert_eq!(detect_separator(b"\"a,b\";c\n"), b';');
        assert_eq!(detect_separator(b"phone\n"), b',');
        assert_eq!(detect_separator(b"\n\nphone;name\n"), b';');
    }

    #[test]
    fn the_format_is_sniffed() {
        let json = rows("  \n[{\"phone\": \"+12015550123\"}]", None).unwrap();
        assert_eq!(json[0].line, 2);
        let csv = rows("phone\n+12015550123\n", None).unwrap();
        assert_eq!(csv[0].line, 2);
    }

    #[test]
    fn stops_when_asked() {
        let mut n = 0;
        read("phone\n1\n2\n3\n".as_bytes(), None, |_| {
            n += 1;
            if n == 2 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        })
        .unwrap();
        assert_eq!(n, 2);
        let mut n = 0;
        read("[{\"phone\":1},{\"phone\":2},{\"phone\":3}]".as_bytes(), None, |_| {
            n += 1;
            ControlFlow::Break(())
        })
        .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn json_elements_that_are_not_objects_are_row_problems() {
        let r = rows("[\n{\"phone\": 12015550123},\n\"x\",\n{\"phone\": [1]}\n]", Some(Format::Json)).unwrap();
        assert_eq!(r[0].contact.phone.as_deref(), Some("12015550123"));
        assert_eq!(r[1].line, 3);
        assert_eq!(r[1].problems, vec!["expected an object (`{\"phone\": …}`), found a string"]);
        assert_eq!(r[2].problems, vec!["\"phone\" must be text, not an array"]);
    }

    #[test]
    fn json_keys_for_the_same_column_are_a_row_problem() {
        // Keys come in alphabetical order: without the check, `phone: null` would clear `mobile`.
        let r = rows(
            r#"[
{"mobile": "+12015550123", "phone": null},
{"Phone": "+12015550124", "phone": "+12015550125", "tel": "+12015550126"},
{"email": "a@example.com", "fields": {"city": "Austin"}, "City": "Boston", "city": "Dallas"},
{"telegram": "42", "addresses": {"Telegram": "43"}, "address.viber": "v1", "viber": "v2"},
{"mobile": "+12015550127", "fields": {"mobile": "yes"}, "addresses": {"telegram": "44"}}
]"#,
            Some(Format::Json),
        )
        .unwrap();
        assert_eq!(r[0].problems, [r#""mobile" and "phone" are both phone: keep one"#]);
        assert_eq!(r[0].contact.phone.as_deref(), Some("+12015550123"), "the first key's value is kept");
        assert_eq!(
            r[1].problems,
            [r#""Phone" and "phone" are both phone: keep one"#, r#""Phone" and "tel" are both phone: keep one"#]
        );
        assert_eq!(r[1].contact.phone.as_deref(), Some("+12015550124"));
        assert_eq!(r[2].problems, [r#""city" and "fields.city" are both the field "city": keep one"#]);
        assert_eq!(r[2].contact.fields["City"], "Boston", "custom fields keep their case");
        assert_eq!(r[2].contact.fields["city"], "Dallas");
        assert_eq!(
            r[3].problems,
            [
                r#""addresses.Telegram" and "telegram" are both address.telegram: keep one"#,
                r#""address.viber" and "viber" are both address.viber: keep one"#
            ]
        );
        assert!(r[4].problems.is_empty(), "{:?}", r[4].problems);
    }

    #[test]
    fn broken_json_names_its_line() {
        let err = rows("[\n{\"phone\": \"1\"},\n{\"phone\": }\n]", Some(Format::Json)).unwrap_err();
        match err {
            ImportError::Format { line, message } => {
                assert_eq!(line, Some(3));
                assert!(message.starts_with("not valid JSON"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(rows("{\"phone\": 1}", Some(Format::Json)), Err(ImportError::Format { .. })));
        assert!(matches!(rows("[] x", Some(Format::Json)), Err(ImportError::Format { .. })));
    }
}
