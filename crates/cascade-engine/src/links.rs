//! Link tracking: the links of a message become short redirect URLs, and following one records
//! `clicked` on the attempt that carried it.
//!
//! Turn it on for an engine with [`EngineBuilder::link_tracking`](crate::EngineBuilder::link_tracking)
//! and for a cascade with [`Policy::track_links`](crate::Policy::track_links). When both are on,
//! planning replaces every `http://` and `https://` link in each step's rendered text, email
//! HTML `href` values, button URLs and provider template parameters with
//! `{base_url}{token}`, and keeps the original URLs in the plan
//! ([`PlannedStep::links`](crate::plan::PlannedStep::links)). The server answers a request for
//! such a URL with [`Engine::follow_link`](crate::Engine::follow_link), which records the click
//! and gives the original URL to redirect to.
//!
//! # The token
//!
//! A token is stateless: nothing is stored per link beyond the plan itself.
//!
//! ```text
//! token   = base64url-no-padding( cascade id (16 bytes, the UUID)
//!                                 ‖ link number (LEB128, 1 byte below 128)
//!                                 ‖ tag (16 bytes) )
//! tag     = HMAC-SHA256(key, "cascade-link-v1\0" ‖ cascade id ‖ link number), first 16 bytes
//! ```
//!
//! The link number counts the links of every step in step order (step 0's links first), so
//! one number names both the step and the link. A token is 44 characters for the first 128
//! links of a cascade (46 up to 16,384), all from the GSM-7 basic set: a tracked link in an SMS
//! is `base_url` plus 44 characters and does not force UCS-2 encoding.
//!
//! The tag is checked in constant time. Without the key nobody can make a valid token, nor
//! move a token to another cascade or another link. The redirect target always comes from the
//! stored plan, never from the token or the request, so a tracked URL can only ever lead where
//! the message itself linked: the endpoint is not an open redirect.

use std::fmt;
use std::ops::Range;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::model::{Button, CascadeId, Content, ProviderTemplate};

/// The bytes of the HMAC tag kept in a token.
const TAG_LEN: usize = 16;
/// The bytes of a cascade id.
const ID_LEN: usize = 16;
/// The longest LEB128 encoding of a `u32`.
const MAX_VARINT: usize = 5;
/// Separates link tokens from anything else ever signed with the same key.
const DOMAIN: &[u8] = b"cascade-link-v1\0";

/// Link tracking settings: where tracked links point and the key their tokens are signed with.
///
/// ```
/// use cascade_engine::LinkTracking;
/// let t = LinkTracking::new("https://cascade.example.com/l/", vec![7u8; 32]);
/// assert!(!format!("{t:?}").contains("7, 7"), "the key is never printed");
/// ```
#[derive(Clone)]
pub struct LinkTracking {
    /// The public URL prefix tokens are appended to, e.g. `https://cascade.example.com/l/`.
    /// It must start with `https://` (or `http://`) and hold no `#`; one that ends in neither
    /// `/` nor `=` gets a `/` added.
    pub base_url: String,
    /// The secret key tokens are signed with: at least [`MIN_KEY_LEN`](Self::MIN_KEY_LEN)
    /// random bytes. Changing it makes every link already sent stop working.
    pub key: Vec<u8>,
}

impl LinkTracking {
    /// The shortest key accepted, in bytes.
    pub const MIN_KEY_LEN: usize = 32;

    /// Settings with this public prefix and key.
    pub fn new(base_url: impl Into<String>, key: impl Into<Vec<u8>>) -> Self {
        Self { base_url: base_url.into(), key: key.into() }
    }

    /// Checks the settings and returns them with `base_url` normalized.
    pub(crate) fn checked(mut self) -> Result<Self, String> {
        if self.key.len() < Self::MIN_KEY_LEN {
            return Err(format!(
                "the key is {} bytes long; it needs at least {} random bytes",
                self.key.len(),
                Self::MIN_KEY_LEN
            ));
        }
        let base = self.base_url.trim();
        let has_host = scheme_len(base).is_some_and(|n| base[n..].chars().next().is_some_and(|c| c != '/'));
        if !has_host {
            return Err(format!(
                "base URL `{base}` must be an absolute http(s) URL, e.g. https://cascade.example.com/l/"
            ));
        }
        if let Some(c) = base.chars().find(|c| stops_url(*c) || *c == '#') {
            return Err(format!("base URL `{base}` must not contain {c:?}"));
        }
        let mut base = base.to_owned();
        if !base.ends_with('/') && !base.ends_with('=') {
            base.push('/');
        }
        self.base_url = base;
        Ok(self)
    }

    fn mac(&self) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC accepts keys of any length");
        mac.update(DOMAIN);
        mac
    }

    /// The token of link `link` of cascade `cascade`.
    pub(crate) fn token(&self, cascade: CascadeId, link: u32) -> String {
        let mut bytes = Vec::with_capacity(ID_LEN + MAX_VARINT + TAG_LEN);
        bytes.extend_from_slice(cascade.as_uuid().as_bytes());
        put_varint(link, &mut bytes);
        let mut mac = self.mac();
        mac.update(&bytes);
        let tag = mac.finalize().into_bytes();
        bytes.extend_from_slice(&tag[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The cascade and link number of a token signed with this key, or `None`.
    pub(crate) fn verify(&self, token: &str) -> Option<(CascadeId, u32)> {
        if token.len() > (ID_LEN + MAX_VARINT + TAG_LEN).div_ceil(3) * 4 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
        if bytes.len() < ID_LEN + 1 + TAG_LEN {
            return None;
        }
        let (payload, tag) = bytes.split_at(bytes.len() - TAG_LEN);
        let mut mac = self.mac();
        mac.update(payload);
        mac.verify_truncated_left(tag).ok()?;
        let (id, number) = payload.split_at(ID_LEN);
        let id = CascadeId::from_uuid(uuid::Uuid::from_slice(id).ok()?);
        Some((id, get_varint(number)?))
    }

    /// The tracked URL of link `link` of cascade `cascade`.
    fn url(&self, cascade: CascadeId, link: u32) -> String {
        format!("{}{}", self.base_url, self.token(cascade, link))
    }
}

impl fmt::Debug for LinkTracking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkTracking")
            .field("base_url", &self.base_url)
            .field("key", &format_args!("<redacted, {} bytes>", self.key.len()))
            .finish()
    }
}

fn put_varint(mut n: u32, out: &mut Vec<u8>) {
    loop {
        let low = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

/// Decodes a whole slice as one canonical LEB128 `u32`.
fn get_varint(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() || bytes.len() > MAX_VARINT {
        return None;
    }
    let mut n: u64 = 0;
    for (i, b) in bytes.iter().enumerate() {
        let last = i + 1 == bytes.len();
        if (b & 0x80 != 0) == last {
            return None; // a continuation bit on the last byte, or none before it
        }
        n |= u64::from(b & 0x7f) << (7 * i);
    }
    if bytes.len() > 1 && bytes[bytes.len() - 1] == 0 {
        return None; // not the shortest encoding
    }
    u32::try_from(n).ok()
}

/// Rewrites the links of one step's content and collects their original URLs.
#[derive(Debug)]
pub(crate) struct Rewriter<'a> {
    tracking: &'a LinkTracking,
    cascade: CascadeId,
    first: u32,
    links: Vec<String>,
}

impl<'a> Rewriter<'a> {
    /// A rewriter whose first new link gets number `first`.
    pub(crate) fn new(tracking: &'a LinkTracking, cascade: CascadeId, first: u32) -> Self {
        Self { tracking, cascade, first, links: Vec::new() }
    }

    /// The original URLs, in link-number order.
    pub(crate) fn into_links(self) -> Vec<String> {
        self.links
    }

    fn tracked(&mut self, original: &str) -> String {
        let i = match self.links.iter().position(|l| l == original) {
            Some(i) => i,
            None => {
                self.links.push(original.to_owned());
                self.links.len() - 1
            }
        };
        let number = self.first.saturating_add(u32::try_from(i).unwrap_or(u32::MAX));
        self.tracking.url(self.cascade, number)
    }

    fn trackable(&self, url: &str) -> bool {
        is_url(url) && !url.starts_with(&self.tracking.base_url)
    }

    /// Plain text with its links rewritten, or `None` if it has none.
    fn text(&mut self, text: &str) -> Option<String> {
        let ranges: Vec<Range<usize>> =
            find_urls(text).into_iter().filter(|r| self.trackable(&text[r.clone()])).collect();
        if ranges.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for r in ranges {
            out.push_str(&text[last..r.start]);
            out.push_str(&self.tracked(&text[r.clone()]));
            last = r.end;
        }
        out.push_str(&text[last..]);
        Some(out)
    }

    /// HTML with its `href` values rewritten, or `None` if it has none to rewrite.
    fn html(&mut self, html: &str) -> Option<String> {
        let mut out = String::new();
        let mut last = 0;
        let mut changed = false;
        for r in find_hrefs(html) {
            let url = unescape_html(html[r.clone()].trim());
            if !self.trackable(&url) {
                continue;
            }
            out.push_str(&html[last..r.start]);
            out.push_str(&escape_attr(&self.tracked(&url)));
            last = r.end;
            changed = true;
        }
        if !changed {
            return None;
        }
        out.push_str(&html[last..]);
        Some(out)
    }

    /// A value that is one URL as a whole (a button's), rewritten, or `None`.
    fn whole(&mut self, value: &str) -> Option<String> {
        let url = value.trim();
        self.trackable(url).then(|| self.tracked(url))
    }

    /// The content with every link rewritten, or `None` if it has no link. The subject, the
    /// attachment and the provider template's name and language are left alone.
    pub(crate) fn content(&mut self, content: &Content) -> Option<Content> {
        let text = self.text(&content.text);
        let html = content.html.as_deref().and_then(|h| self.html(h));
        let buttons: Vec<Option<String>> = content.buttons.iter().map(|b| self.whole(&b.url)).collect();
        let params: Vec<Option<String>> =
            content.template.iter().flat_map(|t| &t.params).map(|p| self.text(p)).collect();
        if text.is_none() && html.is_none() && buttons.iter().chain(&params).all(Option::is_none) {
            return None;
        }
        Some(Content {
            text: text.unwrap_or_else(|| content.text.clone()),
            subject: content.subject.clone(),
            html: html.or_else(|| content.html.clone()),
            attachment: content.attachment.clone(),
            buttons: content
                .buttons
                .iter()
                .zip(buttons)
                .map(|(b, url)| Button { caption: b.caption.clone(), url: url.unwrap_or_else(|| b.url.clone()) })
                .collect(),
            template: content.template.as_ref().map(|t| ProviderTemplate {
                name: t.name.clone(),
                language: t.language.clone(),
                params: t.params.iter().zip(params).map(|(p, new)| new.unwrap_or_else(|| p.clone())).collect(),
            }),
        })
    }
}

/// The length of the `http://` or `https://` scheme `s` starts with (any case).
fn scheme_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    ["https://", "http://"]
        .into_iter()
        .find(|p| b.len() >= p.len() && b[..p.len()].eq_ignore_ascii_case(p.as_bytes()))
        .map(str::len)
}

/// Characters that end a URL in plain text.
fn stops_url(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(
            c,
            '<' | '>' | '"' | '\'' | '`' | '«' | '»' | '“' | '”' | '‘' | '’' | '„' | '\u{200B}'
                ..='\u{200F}' | '\u{2060}' | '\u{FEFF}'
        )
}

/// Whether a whole string is an http(s) URL with a host and nothing that cannot be in one.
fn is_url(s: &str) -> bool {
    scheme_len(s).is_some_and(|n| s[n..].chars().next().is_some_and(|c| c.is_alphanumeric() || c == '['))
        && !s.chars().any(stops_url)
}

/// The byte ranges of the `http://` and `https://` URLs in plain text.
///
/// A URL runs to the first whitespace, `<`, `>`, quote or backtick; punctuation that ends a
/// sentence (`.`, `,`, `:`, `;`, `!`, `?`, `…`), messenger formatting marks (`*`, `_`, `~`) and
/// closing brackets without an opening one inside the URL are not part of it.
pub(crate) fn find_urls(text: &str) -> Vec<Range<usize>> {
    let b = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !matches!(b[i], b'h' | b'H') {
            i += 1;
            continue;
        }
        let Some(scheme) = scheme_len(&text[i..]) else {
            i += 1;
            continue;
        };
        let body = i + scheme;
        if text[..i].chars().next_back().is_some_and(char::is_alphanumeric) {
            i = body;
            continue;
        }
        let mut end = body;
        for (off, c) in text[body..].char_indices() {
            if stops_url(c) {
                break;
            }
            end = body + off + c.len_utf8();
        }
        while let Some(c) = text[body..end].chars().next_back() {
            let url = &text[i..end];
            let unbalanced = |open: char, close: char| url.matches(close).count() > url.matches(open).count();
            let trailing = match c {
                '.' | ',' | ':' | ';' | '!' | '?' | '…' | '*' | '_' | '~' => true,
                ')' => unbalanced('(', ')'),
                ']' => unbalanced('[', ']'),
                '}' => unbalanced('{', '}'),
                _ => false,
            };
            if !trailing {
                break;
            }
            end -= c.len_utf8();
        }
        if is_url(&text[i..end]) {
            found.push(i..end);
            i = end;
        } else {
            i = body;
        }
    }
    found
}

/// The byte ranges of the values of `href` attributes in HTML (inside the quotes, if quoted).
fn find_hrefs(html: &str) -> Vec<Range<usize>> {
    let b = html.as_bytes();
    let n = b.len();
    let ws = |c: u8| c.is_ascii_whitespace();
    let mut found = Vec::new();
    let mut i = 0;
    while i < n {
        if b[i] != b'<' {
            i += 1;
            continue;
        }
        if html[i..].starts_with("<!--") {
            i = html[i + 4..].find("-->").map_or(n, |p| i + 4 + p + 3);
            continue;
        }
        if !b.get(i + 1).is_some_and(u8::is_ascii_alphabetic) {
            i += 1;
            continue;
        }
        i += 1;
        while i < n && !ws(b[i]) && b[i] != b'>' && b[i] != b'/' {
            i += 1;
        }
        // Attributes, up to the end of the tag.
        loop {
            while i < n && (ws(b[i]) || b[i] == b'/') {
                i += 1;
            }
            if i >= n {
                break;
            }
            if b[i] == b'>' {
                i += 1;
                break;
            }
            let name_start = i;
            while i < n && !ws(b[i]) && !matches!(b[i], b'=' | b'>' | b'/') {
                i += 1;
            }
            let name = &html[name_start..i];
            let mut j = i;
            while j < n && ws(b[j]) {
                j += 1;
            }
            if j >= n || b[j] != b'=' {
                continue;
            }
            j += 1;
            while j < n && ws(b[j]) {
                j += 1;
            }
            let value = if j < n && (b[j] == b'"' || b[j] == b'\'') {
                let start = j + 1;
                let end = html[start..].find(b[j] as char).map_or(n, |p| start + p);
                i = (end + 1).min(n);
                start..end
            } else {
                let start = j;
                while j < n && !ws(b[j]) && b[j] != b'>' {
                    j += 1;
                }
                i = j;
                start..j
            };
            if name.eq_ignore_ascii_case("href") {
                found.push(value);
            }
        }
    }
    found
}

/// Decodes the character references that appear in URLs in HTML attributes.
fn unescape_html(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find('&') {
        out.push_str(&rest[..p]);
        rest = &rest[p..];
        let decoded = rest.find(';').filter(|e| *e <= 10).and_then(|e| {
            let name = &rest[1..e];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => {
                    let code = if let Some(hex) = name.strip_prefix("#x").or_else(|| name.strip_prefix("#X")) {
                        u32::from_str_radix(hex, 16).ok()
                    } else {
                        name.strip_prefix('#').and_then(|d| d.parse().ok())
                    };
                    code.and_then(char::from_u32)
                }
            };
            c.map(|c| (c, e + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Escapes a value for an HTML attribute.
fn escape_attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// A URL fit for an HTTP `Location` header: bytes outside ASCII are percent-encoded (browsers
/// read such a URL, host included, as the original).
pub(crate) fn location_safe(url: &str) -> String {
    if url.is_ascii() {
        return url.to_owned();
    }
    let mut out = String::with_capacity(url.len() + 16);
    for &b in url.as_bytes() {
        if b.is_ascii() {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracking() -> LinkTracking {
        LinkTracking::new("https://c.test/l/", vec![42u8; 32]).checked().expect("valid")
    }

    fn urls(text: &str) -> Vec<&str> {
        find_urls(text).into_iter().map(|r| &text[r]).collect()
    }

    #[test]
    fn finds_urls_and_leaves_out_punctuation_around_them() {
        let cases: &[(&str, &[&str])] = &[
            ("see https://x.test/a.", &["https://x.test/a"]),
            ("(https://x.test/b)", &["https://x.test/b"]),
            ("see https://x.test/a, then http://y.test!", &["https://x.test/a", "http://y.test"]),
            ("Really? https://x.test/q?a=1&b=2?", &["https://x.test/q?a=1&b=2"]),
            (
                "https://en.wikipedia.org/wiki/Rust_(programming_language)).",
                &["https://en.wikipedia.org/wiki/Rust_(programming_language)"],
            ),
            ("[https://x.test/a]", &["https://x.test/a"]),
            ("<https://x.test/a>", &["https://x.test/a"]),
            ("\"https://x.test/a\" 'https://x.test/b'", &["https://x.test/a", "https://x.test/b"]),
            ("*https://x.test/bold*", &["https://x.test/bold"]),
            ("_https://x.test/it_", &["https://x.test/it"]),
            ("«https://x.test/ru»", &["https://x.test/ru"]),
            ("ссылка: https://пример.рф/путь.", &["https://пример.рф/путь"]),
            ("HTTPS://X.TEST/UP", &["HTTPS://X.TEST/UP"]),
            ("one https://x.test/1\nhttps://x.test/2\ttwo", &["https://x.test/1", "https://x.test/2"]),
            ("https://x.test/a#frag:", &["https://x.test/a#frag"]),
            ("https://[::1]:8080/x", &["https://[::1]:8080/x"]),
            ("https://x.test/…", &["https://x.test/"]),
            ("a\u{200B}https://x.test/z\u{200B}b", &["https://x.test/z"]),
            ("https://a.test/?next=https://b.test/", &["https://a.test/?next=https://b.test/"]),
        ];
        for (text, want) in cases {
            assert_eq!(urls(text), *want, "in {text:?}");
        }
    }

    #[test]
    fn ignores_what_is_not_a_link() {
        for text in [
            "no links here",
            "https://",
            "https:// spaced",
            "http://.",
            "ftp://x.test/a",
            "mailto:a@x.test",
            "xhttps://x.test/glued",
            "https:/x.test",
            "hTtP:",
            "",
        ] {
            assert!(urls(text).is_empty(), "{text:?} has no link");
        }
    }

    #[test]
    fn finds_href_values_only() {
        let html = concat!(
            r#"<p>Go to https://x.test/text</p><a class="b" HREF="https://x.test/a?x=1&amp;y=2">A</a>"#,
            r#"<a href='https://x.test/b'>B</a><a href=https://x.test/c>C</a><a title="href=x" href = "#,
            r#""https://x.test/d" >D</a><!-- <a href="https://x.test/comment"> --><img src="https://x.test/i.png">"#,
        );
        let hrefs: Vec<&str> = find_hrefs(html).into_iter().map(|r| &html[r]).collect();
        assert_eq!(hrefs, ["https://x.test/a?x=1&amp;y=2", "https://x.test/b", "https://x.test/c", "https://x.test/d"]);
        // Broken HTML ends the scan without panicking.
        for broken in ["<a href=", "<a href=\"https://x", "<a", "<", "<!--", "<a =x>", "<a href='x'"] {
            let _ = find_hrefs(broken);
        }
    }

    #[test]
    fn unescapes_and_escapes_attribute_values() {
        assert_eq!(unescape_html("a?x=1&amp;y=2&#38;z=&#x33;&unknown;&"), "a?x=1&y=2&z=3&unknown;&");
        assert_eq!(escape_attr(r#"a&b"c'd<e>"#), "a&amp;b&quot;c&#39;d&lt;e&gt;");
    }

    #[test]
    fn tokens_round_trip_and_are_44_characters() {
        let t = tracking();
        let id = CascadeId::new();
        for n in [0, 1, 127, 128, 16_383, 16_384, u32::MAX] {
            let token = t.token(id, n);
            assert_eq!(t.verify(&token), Some((id, n)), "link {n}");
            assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        }
        assert_eq!(t.token(id, 0).len(), 44);
        assert_eq!(t.token(id, 127).len(), 44);
        assert_eq!(t.token(id, 128).len(), 46);
    }

    #[test]
    fn tokens_cannot_be_forged_or_moved() {
        let t = tracking();
        let (a, b) = (CascadeId::new(), CascadeId::new());
        let token = t.token(a, 3);
        // Any changed character.
        for i in 0..token.len() {
            let mut chars: Vec<char> = token.chars().collect();
            chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
            let forged: String = chars.into_iter().collect();
            assert_eq!(t.verify(&forged), None, "changed at {i}");
        }
        // The tag of one cascade's link on another cascade, or on another link.
        let bytes = URL_SAFE_NO_PAD.decode(&token).expect("base64");
        let tag = &bytes[bytes.len() - TAG_LEN..];
        let mut other = b.as_uuid().as_bytes().to_vec();
        other.push(3);
        other.extend_from_slice(tag);
        assert_eq!(t.verify(&URL_SAFE_NO_PAD.encode(&other)), None);
        let mut next = a.as_uuid().as_bytes().to_vec();
        next.push(4);
        next.extend_from_slice(tag);
        assert_eq!(t.verify(&URL_SAFE_NO_PAD.encode(&next)), None);
        // Another key.
        let elsewhere = LinkTracking::new("https://c.test/l/", vec![43u8; 32]);
        assert_eq!(elsewhere.verify(&token), None);
        // Truncated, padded, too long, empty, not base64.
        assert_eq!(t.verify(&token[..token.len() - 1]), None);
        assert_eq!(t.verify(&format!("{token}=")), None);
        assert_eq!(t.verify(&format!("{token}{token}")), None);
        assert_eq!(t.verify(""), None);
        assert_eq!(t.verify("../../etc/passwd"), None);
    }

    #[test]
    fn varints_are_canonical() {
        assert_eq!(get_varint(&[0x80, 0x00]), None);
        assert_eq!(get_varint(&[0x80]), None);
        assert_eq!(get_varint(&[0x01, 0x01]), None);
        assert_eq!(get_varint(&[0xff, 0xff, 0xff, 0xff, 0x1f]), None);
        assert_eq!(get_varint(&[0xff, 0xff, 0xff, 0xff, 0x0f]), Some(u32::MAX));
        assert_eq!(get_varint(&[0x80, 0x01]), Some(128));
    }

    #[test]
    fn settings_are_checked_and_the_key_is_never_printed() {
        let key = vec![9u8; 32];
        let ok = |base: &str| LinkTracking::new(base, key.clone()).checked().map(|t| t.base_url);
        assert_eq!(ok("https://c.test/l/").as_deref(), Ok("https://c.test/l/"));
        assert_eq!(ok(" https://c.test/l ").as_deref(), Ok("https://c.test/l/"));
        assert_eq!(ok("https://c.test/r?t=").as_deref(), Ok("https://c.test/r?t="));
        for bad in ["c.test/l/", "ftp://c.test/", "https:///l/", "https://c.test/#/l/", "https://c.test/a b/", ""] {
            assert!(ok(bad).is_err(), "{bad:?} refused");
        }
        let short = LinkTracking::new("https://c.test/l/", vec![1u8; 31]).checked();
        assert!(short.is_err_and(|e| e.contains("at least 32")));
        let shown =
            format!("{:?}", LinkTracking::new("https://c.test/l/", b"super-secret-key-material-000000".to_vec()));
        assert!(!shown.contains("super") && !shown.contains("115"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn rewrites_every_part_that_holds_links() {
        let t = tracking();
        let id = CascadeId::new();
        let content = Content {
            text: "Track https://shop.test/o/1. Terms: https://shop.test/terms, again https://shop.test/o/1".into(),
            subject: Some("See https://shop.test/subject".into()),
            html: Some(r#"<a href="https://shop.test/o/1">https://shop.test/o/1</a> <a href="tel:+1">call</a>"#.into()),
            attachment: Some(crate::model::Attachment {
                url: "https://files.test/f.pdf".into(),
                media_type: "application/pdf".into(),
                size: 1,
                filename: None,
            }),
            buttons: vec![
                Button { caption: "Open".into(), url: " https://shop.test/app ".into() },
                Button { caption: "Call".into(), url: "tel:+15551234567".into() },
            ],
            template: Some(ProviderTemplate {
                name: "https_order_update".into(),
                language: "en".into(),
                params: vec!["Ann".into(), "https://shop.test/o/1".into()],
            }),
        };
        let mut rw = Rewriter::new(&t, id, 5);
        let out = rw.content(&content).expect("rewritten");
        let links = rw.into_links();
        assert_eq!(links, ["https://shop.test/o/1", "https://shop.test/terms", "https://shop.test/app"]);
        let url = |n: u32| t.url(id, n);
        assert_eq!(out.text, format!("Track {}. Terms: {}, again {}", url(5), url(6), url(5)));
        assert_eq!(
            out.html.as_deref(),
            Some(format!(r#"<a href="{}">https://shop.test/o/1</a> <a href="tel:+1">call</a>"#, url(5)).as_str())
        );
        assert_eq!(out.buttons[0].url, url(7));
        assert_eq!(out.buttons[1].url, "tel:+15551234567");
        let tpl = out.template.as_ref().expect("template");
        assert_eq!((tpl.name.as_str(), tpl.params[0].as_str()), ("https_order_update", "Ann"));
        assert_eq!(tpl.params[1], url(5));
        assert_eq!(out.subject, content.subject, "the subject is left alone");
        assert_eq!(out.attachment, content.attachment, "files are fetched, not followed");
        // Already tracked links and content without links are left alone.
        let mut rw = Rewriter::new(&t, id, 0);
        assert_eq!(rw.content(&Content { text: format!("again {}", url(1)), ..Content::default() }), None);
        assert_eq!(rw.content(&Content { text: "no link".into(), ..Content::default() }), None);
        assert!(rw.into_links().is_empty());
    }

    #[test]
    fn location_targets_are_ascii() {
        assert_eq!(location_safe("https://x.test/a?b=1"), "https://x.test/a?b=1");
        assert_eq!(
            location_safe("https://пример.рф/ü"),
            "https://%D0%BF%D1%80%D0%B8%D0%BC%D0%B5%D1%80.%D1%80%D1%84/%C3%BC"
        );
    }
}
