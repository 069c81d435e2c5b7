//! Checking a recipient list: every row is valid, invalid (with a reason for people) or a
//! duplicate of an earlier row, and a [`Report`] counts them, lists the errors with their
//! lines and, given a message template, previews it and names the variables some rows lack.
//!
//! ## What makes a row invalid
//!
//! | reason | when |
//! | --- | --- |
//! | `phone "12": too short` (and the other [`PhoneError`](crate::phone::PhoneError)s) | the phone is not a valid number; numbers without `+`/`00` are read in the default region |
//! | `email "x@": not an email address` | the email is not shaped like an address |
//! | `time_zone "Mars/Base": not an IANA time zone name` | the `time_zone` column names no zone (valid names are kept in their canonical spelling: `europe/london` becomes `Europe/London`) |
//! | `no phone, email or address` | the row has nothing to reach the contact by |
//! | `7 values, but the header has 4 columns …`, `name is not UTF-8 text …`, `"mobile" and "phone" are both phone: keep one` | the row's shape (see [`crate::recipients`]) |
//!
//! A row with several problems lists them all, separated by `; `.
//!
//! ## Duplicates
//!
//! The first row for a recipient is valid; later rows for the same recipient are duplicates
//! (`duplicate of line 7`). The same recipient means: the same phone number once normalized
//! (`+1 201-555-0123` and `(201) 555 0123` with region `US` are one); for rows without a
//! phone, the same email (case-insensitively); for rows with neither, the same set of
//! addresses. Rows with different phones are different recipients even if they share an email.
//!
//! Memory for this stays small: a phone is kept as its E.164 digits in a `u64`, an email or a
//! set of addresses as a 64-bit fingerprint (two different emails get the same fingerprint
//! about once in 10^7 lists of a million), each with its line: about 40 bytes per valid row.
//!
//! ```
//! use cascade_campaigns::validate::{validate, ValidateOptions};
//! let csv = "phone,name,city\n+1 201 555 0123,Ann,Austin\n12,Bob,\n(201) 555-0123,Ann again,\n2015550124,Cy,\n";
//! let options = ValidateOptions {
//!     region: Some("US".parse().unwrap()),
//!     template: Some("Hi {{contact.name}} from {{contact.fields.city}}".into()),
//!     preview: 2,
//!     ..ValidateOptions::default()
//! };
//! let report = validate(csv.as_bytes(), &options).unwrap();
//! assert_eq!((report.valid, report.invalid, report.duplicate), (2, 1, 1));
//! assert_eq!(report.errors[0].reason, "phone \"12\": too short");
//! assert_eq!(report.errors[1].reason, "duplicate of line 2");
//! let preview = report.preview.as_ref().unwrap();
//! assert_eq!(preview[0].text.as_deref(), Some("Hi Ann from Austin"));
//! let missing = &report.missing_variables.as_ref().unwrap()[0];
//! assert_eq!((missing.variable.as_str(), missing.rows, missing.first_line), ("contact.fields.city", 1, 5));
//! ```

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Read;
use std::ops::ControlFlow;
use std::sync::mpsc;

use cascade_engine::Contact;
use cascade_engine::template::{self, TemplateError};
use serde::Serialize;
use serde_json::Value;

use crate::email;
use crate::phone::{self, Region};
use crate::recipients::{self, Format, ImportError, Row};
use crate::schedule;

/// A valid recipient: its line and its contact, the phone in E.164 and the email's domain in
/// lower case.
#[derive(Clone, PartialEq, Debug)]
pub struct Recipient {
    /// The line the recipient starts on.
    pub line: u64,
    /// The contact, ready for a cascade.
    pub contact: Contact,
}

/// A row that is not sent, and why.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct RowError {
    /// The line the row starts on.
    pub line: u64,
    /// Why, for people: `phone "12": too short`, `duplicate of line 7`.
    pub reason: String,
}

/// What became of one row.
#[derive(Clone, PartialEq, Debug)]
pub enum Verdict {
    /// The row is a recipient.
    Valid(Recipient),
    /// The row cannot be sent to.
    Invalid(RowError),
    /// An earlier row has the same recipient: this row's line, and the reason naming the
    /// first row's line (`duplicate of line 7`).
    Duplicate(RowError),
}

/// Checks rows one by one and remembers the recipients seen, to find duplicates.
#[derive(Debug)]
pub struct Validator {
    region: Option<Region>,
    phones: HashMap<u64, u64>,
    others: HashMap<u64, u64>,
}

impl Validator {
    /// A validator reading numbers without a country code in `region`.
    pub fn new(region: Option<Region>) -> Self {
        Self { region, phones: HashMap::new(), others: HashMap::new() }
    }

    /// Checks one row (rows must come in file order for "first occurrence" to mean the first
    /// line).
    pub fn check(&mut self, row: Row) -> Verdict {
        let Row { line, mut contact, problems: mut reasons } = row;
        if let Some(raw) = contact.phone.take() {
            match phone::normalize(&raw, self.region) {
                Ok(e164) => contact.phone = Some(e164),
                Err(e) => reasons.push(format!("phone {:?}: {e}", shorten(&raw))),
            }
        }
        if let Some(raw) = contact.email.take() {
            match email::normalize(&raw) {
                Some(e) => contact.email = Some(e),
                None => reasons.push(format!("email {:?}: not an email address", shorten(&raw))),
            }
        }
        if let Some(value) = contact.fields.get_mut(schedule::TIME_ZONE_FIELD) {
            let text = match &*value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            match schedule::parse_zone(&text) {
                Some(tz) => *value = Value::String(tz.name().to_owned()),
                None => reasons.push(format!("time_zone {:?}: not an IANA time zone name", shorten(&text))),
            }
        }
        contact.addresses.retain(|_, v| !v.trim().is_empty());
        if reasons.is_empty() && contact.phone.is_none() && contact.email.is_none() && contact.addresses.is_empty() {
            reasons.push("no phone, email or address".into());
        }
        if !reasons.is_empty() {
            return Verdict::Invalid(RowError { line, reason: reasons.join("; ") });
        }
        let (map, key) = match &contact.phone {
            Some(p) => (&mut self.phones, p[1..].parse::<u64>().unwrap_or_default()),
            None => (&mut self.others, fingerprint(&contact)),
        };
        match map.entry(key) {
            std::collections::hash_map::Entry::Occupied(first) => {
                Verdict::Duplicate(RowError { line, reason: format!("duplicate of line {}", first.get()) })
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(line);
                Verdict::Valid(Recipient { line, contact })
            }
        }
    }
}

/// The dedup key of a contact without a phone: its email, else its addresses.
fn fingerprint(contact: &Contact) -> u64 {
    let mut h = DefaultHasher::new();
    match &contact.email {
        Some(email) => {
            "email".hash(&mut h);
            email.to_lowercase().hash(&mut h);
        }
        None => {
            "addresses".hash(&mut h);
            for (channel, address) in &contact.addresses {
                channel.as_str().hash(&mut h);
                address.trim().hash(&mut h);
            }
        }
    }
    h.finish()
}

/// At most 60 characters of a value, for messages.
fn shorten(raw: &str) -> String {
    if raw.chars().count() <= 60 { raw.to_owned() } else { format!("{}…", raw.chars().take(60).collect::<String>()) }
}

/// How to check a list.
#[derive(Clone, Debug)]
pub struct ValidateOptions {
    /// CSV or JSON; `None` decides from the first character (`[` is JSON).
    pub format: Option<Format>,
    /// The country of phone numbers written without `+` or `00`.
    pub region: Option<Region>,
    /// A message template to preview and to check variables of.
    pub template: Option<String>,
    /// Template variables beside the contact's, the same for every row (a campaign's
    /// `variables`, `{"offer": {...}}`): the preview renders with them, and variables they
    /// hold are never missing.
    pub variables: Value,
    /// How many valid recipients to render the template for (with `template`).
    pub preview: usize,
    /// How many errors to keep in [`Report::errors`] (the counts are always exact).
    pub max_errors: usize,
}

impl Default for ValidateOptions {
    fn default() -> Self {
        Self { format: None, region: None, template: None, variables: Value::Null, preview: 3, max_errors: usize::MAX }
    }
}

/// The template rendered for one recipient.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct Preview {
    /// The recipient's line.
    pub line: u64,
    /// Who: the phone, else the email, else the first address as `channel:address`.
    pub to: String,
    /// The rendered message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Why it could not be rendered (`unknown template variable `contact.fields.city``).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A template variable some valid rows lack.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct MissingVariable {
    /// The variable, as a dotted path (`contact.fields.city`).
    pub variable: String,
    /// How many valid rows lack it.
    pub rows: u64,
    /// The first line lacking it.
    pub first_line: u64,
}

/// The result of checking a list.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize)]
pub struct Report {
    /// Rows that are recipients.
    pub valid: u64,
    /// Rows that cannot be sent to.
    pub invalid: u64,
    /// Rows whose recipient an earlier row has.
    pub duplicate: u64,
    /// Invalid and duplicate rows, in line order (at most [`ValidateOptions::max_errors`]).
    pub errors: Vec<RowError>,
    /// Errors counted but not kept in `errors`.
    #[serde(skip_serializing_if = "is_zero")]
    pub errors_not_listed: u64,
    /// The template rendered for the first valid recipients (only with a template).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview: Option<Vec<Preview>>,
    /// Variables of the template some valid rows lack, by name (only with a template).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing_variables: Option<Vec<MissingVariable>>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Why a list could not be checked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ValidateError {
    /// The list cannot be read (format or I/O).
    #[error(transparent)]
    Import(#[from] ImportError),
    /// The template does not compile.
    #[error("the template: {0}")]
    Template(TemplateError),
}

/// The template part of a check: preview and missing variables.
///
/// The template is compiled and rendered only a few times, not once per row: its variables
/// are learnt up front, each row's [`Contact`] is searched for them directly, and only the
/// preview rows are rendered. Whether a row that lacks some of them still renders (a variable
/// only used in a branch it does not take) is learnt with placeholders, once for each
/// combination of lacking variables.
struct TemplateCheck {
    source: String,
    variables: Value,
    /// The variables the template uses that an empty contact lacks (dotted paths).
    candidates: Vec<String>,
    /// The candidates whose absence makes rendering fail (those with a `default` do not), as
    /// indexes into `candidates`.
    required: Vec<usize>,
    /// The candidates the row at hand lacks, as a bit set.
    absent: Vec<u64>,
    /// Whether rendering fails, by the bit set of the candidates a row lacks.
    fails: HashMap<Vec<u64>, bool>,
    preview: Vec<Preview>,
    preview_max: usize,
    missing: Vec<MissingVariable>,
}

/// At most this many combinations of lacking variables are remembered (beyond, rows whose
/// combination is new are rendered with placeholders each time).
const COMBINATIONS: usize = 4096;

impl TemplateCheck {
    fn new(source: &str, variables: &Value, preview_max: usize) -> Result<Self, TemplateError> {
        let empty = template::context(&Contact::default(), variables);
        // Every variable the template uses that an empty contact lacks…
        let candidates = match template::render(source, &empty) {
            Ok(_) => Vec::new(),
            Err(e) if !e.missing.is_empty() => e.missing,
            Err(e) => return Err(e),
        };
        // …less those it renders without (a `default`, a branch not taken): given all the
        // others, does lacking this one still fail?
        let all = 0..candidates.len();
        let required = if renders_with_placeholders(source, variables, &candidates, |_| false) {
            all.filter(|&i| !renders_with_placeholders(source, variables, &candidates, |j| j == i)).collect()
        } else {
            all.collect()
        };
        Ok(Self {
            source: source.to_owned(),
            variables: variables.clone(),
            absent: vec![0; candidates.len().div_ceil(64)],
            candidates,
            required,
            fails: HashMap::new(),
            preview: Vec::new(),
            preview_max,
            missing: Vec::new(),
        })
    }

    fn see(&mut self, r: &Recipient) {
        let wants_preview = self.preview.len() < self.preview_max;
        if self.required.is_empty() && !wants_preview {
            return;
        }
        self.absent.fill(0);
        for (i, path) in self.candidates.iter().enumerate() {
            if !has(&r.contact, path) {
                self.absent[i / 64] |= 1 << (i % 64);
            }
        }
        let lacking = self.required.iter().any(|&i| bit(&self.absent, i));
        if !lacking && !wants_preview {
            return;
        }
        let rendered =
            wants_preview.then(|| template::render(&self.source, &template::context(&r.contact, &self.variables)));
        if lacking {
            let fails = match &rendered {
                Some(result) => result.is_err(),
                None => self.fails_lacking_absent(),
            };
            if fails {
                for &i in self.required.iter().filter(|&&i| bit(&self.absent, i)) {
                    let variable = &self.candidates[i];
                    match self.missing.iter_mut().find(|m| &m.variable == variable) {
                        Some(m) => m.rows += 1,
                        None => self.missing.push(MissingVariable {
                            variable: variable.clone(),
                            rows: 1,
                            first_line: r.line,
                        }),
                    }
                }
            }
        }
        if let Some(rendered) = rendered {
            let (text, error) = match rendered {
                Ok(t) => (Some(t), None),
                Err(_) if lacking => {
                    let list = self
                        .required
                        .iter()
                        .filter(|&&i| bit(&self.absent, i))
                        .map(|&i| format!("`{}`", self.candidates[i]))
                        .collect::<Vec<_>>()
                        .join(", ");
                    (None, Some(format!("unknown template variable {list}")))
                }
                Err(e) => (None, Some(e.message)),
            };
            self.preview.push(Preview { line: r.line, to: to(&r.contact), text, error });
        }
    }

    /// Whether rendering fails for a row lacking the candidates in `absent` (and having the
    /// others).
    fn fails_lacking_absent(&mut self) -> bool {
        if let Some(&fails) = self.fails.get(self.absent.as_slice()) {
            return fails;
        }
        let fails =
            !renders_with_placeholders(&self.source, &self.variables, &self.candidates, |i| bit(&self.absent, i));
        if self.fails.len() < COMBINATIONS {
            self.fails.insert(self.absent.clone(), fails);
        }
        fails
    }
}

fn bit(set: &[u64], i: usize) -> bool {
    set[i / 64] & (1 << (i % 64)) != 0
}

/// Whether `source` renders for an empty contact given a placeholder for each of `candidates`
/// except those `lacks` names.
fn renders_with_placeholders(
    source: &str,
    variables: &Value,
    candidates: &[String],
    lacks: impl Fn(usize) -> bool,
) -> bool {
    let mut ctx = template::context(&Contact::default(), variables);
    for (i, path) in candidates.iter().enumerate() {
        if !lacks(i) {
            insert(&mut ctx, path);
        }
    }
    template::render(source, &ctx).is_ok()
}

/// Sets a placeholder at a dotted path, making the objects on the way.
fn insert(ctx: &mut Value, path: &str) {
    let mut at = ctx;
    let mut segments = path.split('.').peekable();
    while let Some(seg) = segments.next() {
        let Value::Object(map) = at else { return };
        let last = segments.peek().is_none();
        let next = map
            .entry(seg.to_owned())
            .or_insert_with(|| if last { Value::from("x") } else { Value::Object(Default::default()) });
        at = next;
    }
}

/// Whether the template context of `contact` (as [`template::context`] makes it, with no other
/// variables) has a value at the dotted `path` — what [`template::lookup`] would find there —
/// without making the context.
fn has(contact: &Contact, path: &str) -> bool {
    fn split(path: &str) -> (&str, Option<&str>) {
        match path.split_once('.') {
            Some((first, rest)) => (first, Some(rest)),
            None => (path, None),
        }
    }
    let (root, rest) = split(path);
    if root != "contact" {
        return false;
    }
    let Some(rest) = rest else { return true };
    let (key, deeper) = split(rest);
    match key {
        "name" => deeper.is_none() && contact.name.is_some(),
        "phone" => deeper.is_none() && contact.phone.is_some(),
        "email" => deeper.is_none() && contact.email.is_some(),
        "fields" => deeper.is_none_or(|path| {
            let (name, deeper) = split(path);
            contact.fields.get(name).is_some_and(|v| deeper.is_none_or(|d| template::lookup(v, d).is_some()))
        }),
        "addresses" => deeper.is_none_or(|path| {
            let (channel, deeper) = split(path);
            deeper.is_none() && contact.addresses.contains_key(channel)
        }),
        _ => false,
    }
}

fn to(contact: &Contact) -> String {
    contact
        .phone
        .clone()
        .or_else(|| contact.email.clone())
        .or_else(|| contact.addresses.iter().next().map(|(c, a)| format!("{c}:{a}")))
        .unwrap_or_default()
}

/// Checks a whole list: see [`validate_with`].
pub fn validate<R: Read + Send>(input: R, options: &ValidateOptions) -> Result<Report, ValidateError> {
    validate_with(input, options, |_| {})
}

/// Rows travel from the reading thread to the checking one in batches of this many.
const BATCH: usize = 512;

/// Checks a whole list, streamed, and calls `on_valid` for each valid recipient in file
/// order. The list is read and parsed on a second thread while this one checks the rows, so
/// memory holds a few batches of rows at a time, plus the duplicate index.
pub fn validate_with<R: Read + Send>(
    input: R,
    options: &ValidateOptions,
    mut on_valid: impl FnMut(&Recipient),
) -> Result<Report, ValidateError> {
    let mut check = match &options.template {
        Some(source) => {
            Some(TemplateCheck::new(source, &options.variables, options.preview).map_err(ValidateError::Template)?)
        }
        None => None,
    };
    let mut validator = Validator::new(options.region);
    let mut report = Report::default();
    let format = options.format;
    let read_result = std::thread::scope(|s| {
        let (tx, rx) = mpsc::sync_channel::<Vec<Row>>(4);
        let reader = s.spawn(move || {
            let mut batch = Vec::with_capacity(BATCH);
            let result = recipients::read(input, format, |row| {
                batch.push(row);
                if batch.len() == BATCH && tx.send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH))).is_err() {
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            });
            if !batch.is_empty() {
                let _ = tx.send(batch);
            }
            result
        });
        for batch in rx {
            for row in batch {
                let error = match validator.check(row) {
                    Verdict::Valid(r) => {
                        report.valid += 1;
                        if let Some(c) = check.as_mut() {
                            c.see(&r);
                        }
                        on_valid(&r);
                        continue;
                    }
                    Verdict::Invalid(e) => {
                        report.invalid += 1;
                        e
                    }
                    Verdict::Duplicate(error) => {
                        report.duplicate += 1;
                        error
                    }
                };
                if report.errors.len() < options.max_errors {
                    report.errors.push(error);
                } else {
                    report.errors_not_listed += 1;
                }
            }
        }
        match reader.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    });
    read_result?;
    if let Some(c) = check {
        report.preview = Some(c.preview);
        report.missing_variables = Some(c.missing);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipients::read;

    fn verdicts(csv: &str, region: Option<&str>) -> Vec<Verdict> {
        let mut v = Validator::new(region.map(|r| r.parse().unwrap()));
        let mut out = Vec::new();
        read(csv.as_bytes(), None, |row| {
            out.push(v.check(row));
            ControlFlow::Continue(())
        })
        .unwrap();
        out
    }

    fn reason(v: &Verdict) -> &str {
        match v {
            Verdict::Invalid(e) | Verdict::Duplicate(e) => &e.reason,
            Verdict::Valid(_) => "valid",
        }
    }

    #[test]
    fn rows_without_a_phone_are_deduplicated_by_email_then_addresses() {
        let v = verdicts(
            "phone,email,telegram\n,Ann@Example.com,\n,ann@example.COM,\n,,42\n,,42\n,,43\n+12015550123,ann@example.com,\n",
            None,
        );
        let reasons: Vec<&str> = v.iter().map(reason).collect();
        assert_eq!(reasons, ["valid", "duplicate of line 2", "valid", "duplicate of line 4", "valid", "valid"]);
    }

    #[test]
    fn several_problems_are_all_named() {
        let v = verdicts("phone,email\nabc,x@\n,\n", Some("US"));
        assert_eq!(reason(&v[0]), "phone \"abc\": not a phone number; email \"x@\": not an email address");
        assert_eq!(v.len(), 1, "a row of empty values is an empty line");
    }

    #[test]
    fn valid_rows_are_normalized() {
        let v = verdicts("phone,email,name\n(201) 555-0123, Ann@EXAMPLE.com ,Ann\n", Some("US"));
        let Verdict::Valid(r) = &v[0] else { panic!("{v:?}") };
        assert_eq!(r.contact.phone.as_deref(), Some("+12015550123"));
        assert_eq!(r.contact.email.as_deref(), Some("Ann@example.com"));
        assert_eq!(r.line, 2);
    }

    #[test]
    fn errors_can_be_capped() {
        let csv = "phone\n1\n2\n3\n";
        let r = validate(csv.as_bytes(), &ValidateOptions { max_errors: 1, ..Default::default() }).unwrap();
        assert_eq!(r.invalid, 3);
        assert_eq!(r.errors.len(), 1);
        assert_eq!(r.errors_not_listed, 2);
    }

    #[test]
    fn contacts_are_searched_as_their_template_context() {
        let mut full = Contact::with_phone("+12015550123")
            .name("Ann")
            .field("city", "Austin")
            .field("shop", serde_json::json!({"city": "Boston", "none": null, "list": [1]}))
            .field("", 1)
            .field("a.b", 2);
        full.email = Some("ann@example.com".into());
        full.addresses.insert("telegram".into(), "42".into());
        full.addresses.insert("x.y".into(), "7".into());
        let paths = "contact contacts contact. deal deal.name contact.name contact.name.first contact.phone \
            contact.email contact.email.x contact.nickname contact.fields contact.fields. contact.fields.city \
            contact.fields.City contact.fields.city.x contact.fields.shop contact.fields.shop.city \
            contact.fields.shop.none contact.fields.shop.list contact.fields.shop.list.0 contact.fields.shop.street \
            contact.fields.a contact.fields.a.b contact.addresses contact.addresses.telegram \
            contact.addresses.telegram.x contact.addresses.x contact.addresses.x.y contact.addresses.viber \
            contact..name";
        for contact in [Contact::default(), full] {
            let ctx = template::context(&contact, &Value::Null);
            for path in std::iter::once("").chain(paths.split_whitespace()) {
                assert_eq!(has(&contact, path), template::lookup(&ctx, path).is_some(), "{path:?} in {contact:?}");
            }
        }
    }

    #[test]
    fn a_broken_template_is_refused_before_reading() {
        let options = ValidateOptions { template: Some("Hi {{ contact.name ".into()), ..Default::default() };
        assert!(matches!(validate("phone\n".as_bytes(), &options), Err(ValidateError::Template(_))));
    }
}
