//! Malformed input for robustness tests: arbitrary bytes, real payloads broken the ways senders
//! and attackers break them, and a deadline that turns a hang into a test failure.
//!
//! [`mutated`] starts from real payloads (a provider's documented webhook, an API request) and
//! applies one to three [`Mutation`]s: bit flips, truncations, insertions of bytes or of
//! syntax, removed and repeated ranges; and, where the payload is JSON, a value swapped for a
//! hostile one (a string where a number was, `null`, numbers past every integer type, nesting
//! deeper than any parser allows, a 100 000-character string, escapes and unicode); where it
//! is a form, a field's value swapped, a field dropped or repeated. [`within`] runs the code
//! under test on a thread of its own and fails when it does not return in time.
//!
//! ```
//! use cascade_testkit::mutate::{Payload, config, mutated, within};
//! use proptest::prelude::*;
//! use std::time::Duration;
//!
//! proptest!(config(32), |(body in mutated(vec![br#"{"id": 7, "ok": true}"#.to_vec()]))| {
//!     let Payload(bytes) = body;
//!     let parsed = within(Duration::from_secs(5), "parse", move || serde_json::from_slice::<serde_json::Value>(&bytes).map(|_| ()));
//!     if let Err(e) = parsed {
//!         prop_assert!(!e.to_string().is_empty());
//!     }
//! });
//! ```

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::mpsc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;
use serde_json::Value;

/// A request body under test. Shown as an escaped byte string, so a failing case reads as
/// the text it is and can be pasted into a regression test.
#[derive(Clone, PartialEq, Eq)]
pub struct Payload(pub Vec<u8>);

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// A proptest configuration of `cases` cases, unless `PROPTEST_CASES` says otherwise. Shrinking
/// stops after a minute, so a case that hangs (and each shrink step waits for its deadline)
/// still ends the run.
pub fn config(cases: u32) -> Config {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config.max_shrink_time = 60_000;
    config
}

/// Runs `f` on a thread of its own and returns what it returns; a panic in `f` is resumed
/// here. When `f` does not return within `limit`, panics saying that `what` hung (the thread
/// is left running: there is no safe way to stop it).
pub fn within<T: Send + 'static>(limit: Duration, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name(format!("within: {what}"))
        .spawn(move || {
            let _ = tx.send(catch_unwind(AssertUnwindSafe(f)));
        })
        .unwrap_or_else(|e| panic!("cannot start a thread for {what}: {e}"));
    match rx.recv_timeout(limit) {
        Ok(Ok(value)) => value,
        Ok(Err(panic)) => resume_unwind(panic),
        Err(_) => panic!("{what} did not return within {limit:?}"),
    }
}

/// Arbitrary bytes, up to `max` of them.
pub fn bytes(max: usize) -> impl Strategy<Value = Payload> {
    prop::collection::vec(any::<u8>(), 0..=max).prop_map(Payload)
}

/// Text made of what JSON, forms and multipart bodies are made of, so that more inputs get
/// past the first byte of a parser than arbitrary bytes do.
pub fn syntax_soup(max_pieces: usize) -> impl Strategy<Value = Payload> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..=max_pieces).prop_map(|pieces| Payload(pieces.concat()))
}

/// One of `seeds`, changed by one to three [`Mutation`]s suited to it ([`mutations_of`]).
///
/// # Panics
///
/// If `seeds` is empty.
pub fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Payload> {
    seeded(seeds).prop_map(|(seed, mutations)| Payload(apply(&seed, &mutations)))
}

/// One of `seeds` with one to three mutations suited to it, for tests that need the seed as
/// well as the broken payload ([`apply`] them).
///
/// # Panics
///
/// If `seeds` is empty.
pub fn seeded(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = (Vec<u8>, Vec<Mutation>)> {
    assert!(!seeds.is_empty(), "mutations need at least one seed");
    prop::sample::select(seeds).prop_flat_map(|seed| {
        let mutations = mutations_of(&seed);
        (Just(seed), mutations)
    })
}

/// One to three mutations for `seed`: mostly structural ones of its kind (values swapped and
/// members dropped in JSON; fields changed, dropped or repeated in anything else, read as a
/// form), byte-level ones, and now and then one of the other kind. Structural mutations keep
/// a payload well-formed more often than not, so most cases get past the parser's syntax
/// check to what reads the values.
pub fn mutations_of(seed: &[u8]) -> impl Strategy<Value = Vec<Mutation>> + use<> {
    let json = serde_json::from_slice::<Value>(seed).is_ok();
    prop::collection::vec(mutation(json), 1..=3)
}

/// `seed` changed by `mutations`, in order.
pub fn apply(seed: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut body = seed.to_vec();
    for m in mutations {
        m.apply(&mut body);
    }
    body
}

/// One way to break a payload. Positions are [`Index`]es, resolved against the payload's
/// length when applied, so any mutation applies to any payload.
#[derive(Clone, Debug)]
pub enum Mutation {
    /// Flips one bit of one byte.
    FlipBit(Index, u8),
    /// Cuts the payload short.
    Truncate(Index),
    /// Inserts bytes.
    Insert(Index, Vec<u8>),
    /// Removes up to this many bytes.
    Remove(Index, usize),
    /// Repeats up to this many bytes in place.
    Repeat(Index, usize),
    /// Replaces one value of a JSON payload (any node, the root included) with this raw JSON
    /// text. When the payload is not JSON, the text is inserted instead.
    JsonValue(Index, String),
    /// Removes one member of one object of a JSON payload (nothing when there is none).
    JsonDrop(Index),
    /// Replaces the value of one `name=value` field of a form with this raw text (inserted
    /// when the payload has no field).
    FormValue(Index, String),
    /// Drops one field of a form.
    FormDrop(Index),
    /// Repeats one field of a form.
    FormRepeat(Index),
}

/// Tokens [`syntax_soup`] and insertions draw from.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b"\\",
    b"\\u",
    b"\\ud800",
    b",",
    b":",
    b"null",
    b"true",
    b"0",
    b"-1",
    b"1e999",
    b"18446744073709551616",
    b"\"id\"",
    b"\"status\"",
    b"\"text\"",
    b" ",
    b"\n",
    b"\r\n",
    b"\0",
    b"\xef\xbb\xbf",
    b"\xff",
    b"\xc3",
    b"\xf0\x9f\x91\x8b",
    b"&",
    b"=",
    b"%",
    b"%zz",
    b"%FF",
    b"+",
    b"[]",
    b"data[",
    b"--",
    b"boundary",
    b"Content-Disposition: form-data; name=\"file\"",
    b"{{",
    b"}}",
    b"{%",
    b"%}",
];

/// Raw JSON texts a value is swapped for.
fn hostile_json() -> impl Strategy<Value = String> {
    let fixed = prop::sample::select(vec![
        "null",
        "true",
        "false",
        "0",
        "-1",
        "1.5",
        "-0.0",
        "1e308",
        "-1e400",
        "18446744073709551616",
        "-9223372036854775809",
        "123456789012345678901234567890",
        "\"\"",
        "\" \"",
        "\"1735690000\"",
        "\"not a number\"",
        "\"\\ud800\"",
        "\"\\u0000\"",
        "\"\\\\\"",
        "\"Grüße 👋 مرحبا\"",
        "\"\u{202e}evil\"",
        "\"+\"",
        "\"{{contact.name}}\"",
        "\"{% for a in range(9) %}x{% endfor %}\"",
        "\"{% for a in range(99999) %}{% for b in range(99999) %}{{ a }}{% endfor %}{% endfor %}\"",
        "\"{{ 'x' * 5000000 }}\"",
        "{}",
        "[]",
        "[null]",
        "{\"\": null}",
        "\"2026-13-45T99:99:99Z\"",
        "\"https://\"",
    ])
    .prop_map(str::to_owned);
    prop_oneof![
        6 => fixed,
        1 => (1usize..300).prop_map(|depth| format!("{}{}", "[".repeat(depth), "]".repeat(depth))),
        1 => (1usize..300).prop_map(|depth| format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))),
        1 => (0usize..100_000, prop::sample::select(vec!['x', 'é', '👋', '"'])).prop_map(|(n, c)| {
            let s: String = std::iter::repeat_n(c, n).collect();
            serde_json::to_string(&s).unwrap_or_default()
        }),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| f.to_string()),
    ]
}

/// Raw form values a field's value is swapped for.
fn hostile_form_value() -> impl Strategy<Value = String> {
    let fixed = prop::sample::select(vec![
        "",
        "+",
        "%",
        "%zz",
        "%FF%FE",
        "%00",
        "%E2%80%AE",
        "a=b=c",
        "[]",
        "%7B%22text%22%3A1%7D",
        "9223372036854775808",
        "-1",
        "{{contact.phone}}",
        "Gr%C3%BC%C3%9Fe+%F0%9F%91%8B",
    ])
    .prop_map(str::to_owned);
    prop_oneof![
        4 => fixed,
        1 => (0usize..50_000).prop_map(|n| "x".repeat(n)),
        1 => "[ -~]{0,40}",
    ]
}

fn mutation(json: bool) -> impl Strategy<Value = Mutation> {
    let inserted =
        prop_oneof![prop::sample::select(TOKENS).prop_map(<[u8]>::to_vec), prop::collection::vec(any::<u8>(), 1..16),];
    // (JSON, form) weights: the payload's own kind dominates.
    let (j, f) = if json { (4, 0) } else { (0, 4) };
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, bit)| Mutation::FlipBit(i, bit)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        2 => (any::<Index>(), inserted).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<Index>(), 1usize..32).prop_map(|(i, n)| Mutation::Remove(i, n)),
        1 => (any::<Index>(), 1usize..64).prop_map(|(i, n)| Mutation::Repeat(i, n)),
        1 + 4 * j => (any::<Index>(), hostile_json()).prop_map(|(i, v)| Mutation::JsonValue(i, v)),
        1 + j => any::<Index>().prop_map(Mutation::JsonDrop),
        1 + 4 * f => (any::<Index>(), hostile_form_value()).prop_map(|(i, v)| Mutation::FormValue(i, v)),
        1 + f => any::<Index>().prop_map(Mutation::FormDrop),
        1 + f => any::<Index>().prop_map(Mutation::FormRepeat),
    ]
}

/// The text a JSON node is replaced with before it is swapped for raw text.
const MARK: &str = "\u{1}cascade-mutation\u{1}";

impl Mutation {
    /// Applies the mutation to `body`.
    pub fn apply(&self, body: &mut Vec<u8>) {
        let at = |i: &Index, len: usize| i.index(len + 1);
        match self {
            Mutation::FlipBit(i, bit) => {
                if !body.is_empty() {
                    let n = i.index(body.len());
                    body[n] ^= 1 << bit;
                }
            }
            Mutation::Truncate(i) => body.truncate(at(i, body.len())),
            Mutation::Insert(i, bytes) => {
                let n = at(i, body.len());
                body.splice(n..n, bytes.iter().copied());
            }
            Mutation::Remove(i, len) => {
                let n = at(i, body.len());
                body.drain(n..(n + len).min(body.len()));
            }
            Mutation::Repeat(i, len) => {
                let n = at(i, body.len());
                let piece = body[n..(n + len).min(body.len())].to_vec();
                body.splice(n..n, piece);
            }
            Mutation::JsonValue(i, raw) => match serde_json::from_slice::<Value>(body) {
                Ok(mut root) => {
                    let target = i.index(count_nodes(&root));
                    replace_node(&mut root, &mut { target }, &Value::String(MARK.into()));
                    let marked = serde_json::to_string(&root).unwrap_or_default();
                    let quoted = serde_json::to_string(MARK).unwrap_or_default();
                    *body = marked.replacen(&quoted, raw, 1).into_bytes();
                }
                Err(_) => {
                    let n = at(i, body.len());
                    body.splice(n..n, raw.bytes());
                }
            },
            Mutation::JsonDrop(i) => {
                if let Ok(mut root) = serde_json::from_slice::<Value>(body) {
                    let objects = count_objects(&root);
                    if objects > 0 {
                        drop_member(&mut root, &mut { i.index(objects) }, i);
                        *body = serde_json::to_vec(&root).unwrap_or_default();
                    }
                }
            }
            Mutation::FormValue(i, raw) => {
                let mut fields = split_form(body);
                if fields.is_empty() {
                    body.extend_from_slice(raw.as_bytes());
                    return;
                }
                let field = i.get_mut(&mut fields);
                let name_end = field.iter().position(|b| *b == b'=').unwrap_or(field.len());
                field.truncate(name_end);
                field.push(b'=');
                field.extend_from_slice(raw.as_bytes());
                *body = fields.join(&b'&');
            }
            Mutation::FormDrop(i) => {
                let mut fields = split_form(body);
                if !fields.is_empty() {
                    fields.remove(i.index(fields.len()));
                    *body = fields.join(&b'&');
                }
            }
            Mutation::FormRepeat(i) => {
                let mut fields = split_form(body);
                if !fields.is_empty() {
                    let field = i.get(&fields).clone();
                    fields.push(field);
                    *body = fields.join(&b'&');
                }
            }
        }
    }
}

fn split_form(body: &[u8]) -> Vec<Vec<u8>> {
    if body.is_empty() {
        return Vec::new();
    }
    body.split(|b| *b == b'&').map(<[u8]>::to_vec).collect()
}

fn count_nodes(v: &Value) -> usize {
    1 + match v {
        Value::Array(items) => items.iter().map(count_nodes).sum(),
        Value::Object(map) => map.values().map(count_nodes).sum(),
        _ => 0,
    }
}

fn count_objects(v: &Value) -> usize {
    match v {
        Value::Array(items) => items.iter().map(count_objects).sum(),
        Value::Object(map) => usize::from(!map.is_empty()) + map.values().map(count_objects).sum::<usize>(),
        _ => 0,
    }
}

/// Replaces the `target`-th node in pre-order with `with`; `target` counts down as nodes go by.
fn replace_node(v: &mut Value, target: &mut usize, with: &Value) -> bool {
    if *target == 0 {
        *v = with.clone();
        return true;
    }
    *target -= 1;
    match v {
        Value::Array(items) => items.iter_mut().any(|item| replace_node(item, target, with)),
        Value::Object(map) => map.values_mut().any(|item| replace_node(item, target, with)),
        _ => false,
    }
}

/// Removes one member (chosen by `which`) of the `target`-th non-empty object.
fn drop_member(v: &mut Value, target: &mut usize, which: &Index) -> bool {
    match v {
        Value::Array(items) => items.iter_mut().any(|item| drop_member(item, target, which)),
        Value::Object(map) if !map.is_empty() => {
            if *target == 0 {
                let key = which.get(&map.keys().cloned().collect::<Vec<_>>()).clone();
                map.remove(&key);
                return true;
            }
            *target -= 1;
            map.values_mut().any(|item| drop_member(item, target, which))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    fn index(n: usize) -> Index {
        // An Index resolves as `raw * len / 2^64`-ish; search for one that lands on `n` of 1000.
        let mut runner = TestRunner::deterministic();
        loop {
            let i = any::<Index>().new_tree(&mut runner).expect("tree").current();
            if i.index(1000) == n {
                return i;
            }
        }
    }

    #[test]
    fn json_values_are_swapped_for_raw_text() {
        let mut body = br#"{"a": [1, 2]}"#.to_vec();
        Mutation::JsonValue(index(0), "\"\\ud800\"".into()).apply(&mut body);
        assert_eq!(body, b"\"\\ud800\"", "node 0 is the root");

        let mut body = br#"{"a": [1, 2]}"#.to_vec();
        // Nodes in pre-order: the root, the array, 1, 2. Index 999 of 4 is the last.
        Mutation::JsonValue(index(999), "[[[]]]".into()).apply(&mut body);
        assert_eq!(String::from_utf8_lossy(&body), r#"{"a":[1,[[[]]]]}"#);

        let mut text = b"not json".to_vec();
        Mutation::JsonValue(index(0), "null".into()).apply(&mut text);
        assert_eq!(text, b"nullnot json", "inserted where the payload is not JSON");
    }

    #[test]
    fn forms_lose_repeat_and_change_fields() {
        let mut body = b"a=1&b=2".to_vec();
        Mutation::FormValue(index(999), "%zz".into()).apply(&mut body);
        assert_eq!(body, b"a=1&b=%zz");
        Mutation::FormDrop(index(0)).apply(&mut body);
        assert_eq!(body, b"b=%zz");
        Mutation::FormRepeat(index(0)).apply(&mut body);
        assert_eq!(body, b"b=%zz&b=%zz");
    }

    #[test]
    fn byte_mutations_stay_in_bounds() {
        for m in [
            Mutation::FlipBit(index(999), 7),
            Mutation::Truncate(index(999)),
            Mutation::Insert(index(999), b"x".to_vec()),
            Mutation::Remove(index(999), 31),
            Mutation::Repeat(index(999), 63),
            Mutation::JsonDrop(index(999)),
        ] {
            for seed in [&b""[..], b"{}", b"{\"a\":{\"b\":1}}"] {
                let mut body = seed.to_vec();
                m.apply(&mut body);
            }
        }
        let mut body = b"abc".to_vec();
        Mutation::Repeat(index(500), 64).apply(&mut body);
        assert!(body.len() > 3 && body.starts_with(b"a"), "{body:?}");
    }

    #[test]
    fn a_hang_fails_and_a_panic_is_resumed() {
        assert_eq!(within(Duration::from_secs(5), "adding", || 2 + 2), 4);
        let hang = std::panic::catch_unwind(|| {
            within(Duration::from_millis(50), "sleeping", || std::thread::sleep(Duration::from_secs(2)))
        });
        let message = hang.expect_err("a hang fails");
        assert_eq!(message.downcast_ref::<String>().map(String::as_str), Some("sleeping did not return within 50ms"));
        let panic = std::panic::catch_unwind(|| within(Duration::from_secs(5), "panicking", || panic!("boom")));
        assert_eq!(panic.expect_err("resumed").downcast_ref::<&str>(), Some(&"boom"));
    }

    #[test]
    fn payloads_show_as_byte_strings() {
        assert_eq!(format!("{:?}", Payload(b"{\"a\"\n\xff}".to_vec())), r#"b"{\"a\"\n\xff}""#);
    }
}
