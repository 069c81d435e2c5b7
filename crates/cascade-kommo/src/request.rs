//! Reading a `widget_request` body: JSON, or a PHP-style form with nested keys.

use serde_json::{Map, Value};

use crate::KommoError;

/// The longest nesting of a form key (`data[a][b][c]…`) that is read.
const MAX_DEPTH: usize = 16;

/// What a SalesBot `widget_request` step POSTs: a signed `token`, the step's `data` (with
/// Kommo's placeholders filled in) and the `return_url` that continues the bot.
///
/// It serializes without its token, so a request kept to be worked on later does not keep
/// the means to start cascades: keep its [`Verified`](crate::Verified) beside it instead.
#[derive(Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WidgetRequest {
    /// The JWT, signed with the integration's client secret (empty when deserialized).
    #[serde(skip_serializing, default)]
    pub token: String,
    /// Where to POST the result so the bot goes on
    /// (`https://SUBDOMAIN.kommo.com/api/v4/salesbot/BOT/continue/ID`).
    pub return_url: String,
    /// The step's `data` object, as sent.
    pub data: Map<String, Value>,
}

impl std::fmt::Debug for WidgetRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token lets its holder start cascades until it expires: not for logs.
        f.debug_struct("WidgetRequest")
            .field("token", &"***")
            .field("return_url", &self.return_url)
            .field("data", &self.data)
            .finish()
    }
}

/// Reads a `widget_request` body.
///
/// `application/json` is read as documented (`{"token": …, "data": {…}, "return_url": …}`);
/// `application/x-www-form-urlencoded` — what accounts send in practice — with PHP's nested
/// keys: `data[phone]=…`, `data[deal][name]=…`, lists as `a[]=x&a[]=y` (or `a[0]=x&a[1]=y`).
/// Without a content type (or with `text/plain`) a body starting with `{` is JSON, anything
/// else a form. Errors name the field.
///
/// ```
/// let body = b"token=eyJ.x.y&return_url=https%3A%2F%2Facme.kommo.com%2Fapi%2Fv4%2Fsalesbot%2F7%2Fcontinue%2F9\
///              &data%5Btext%5D=Hi&data%5Bdeal%5D%5Bname%5D=Order+42";
/// let req = cascade_kommo::parse_widget_request(Some("application/x-www-form-urlencoded"), body).unwrap();
/// assert_eq!(req.data["deal"]["name"], "Order 42");
/// ```
pub fn parse_widget_request(content_type: Option<&str>, body: &[u8]) -> Result<WidgetRequest, KommoError> {
    let essence = content_type
        .map(|c| c.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty());
    let json = match essence.as_deref() {
        Some("application/json") => true,
        Some(c) if c.ends_with("+json") => true,
        Some("application/x-www-form-urlencoded") => false,
        None | Some("text/plain") => body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{'),
        Some(other) => {
            return Err(KommoError::malformed(
                "content-type",
                format!("{other} is not read: send application/json or application/x-www-form-urlencoded"),
            ));
        }
    };
    let root = if json { parse_json(body)? } else { parse_form(body)? };
    from_root(root)
}

fn parse_json(body: &[u8]) -> Result<Map<String, Value>, KommoError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(KommoError::malformed("body", "must be a JSON object with token, data and return_url")),
        Err(e) => Err(KommoError::malformed("body", format!("not JSON: {e}"))),
    }
}

fn from_root(mut root: Map<String, Value>) -> Result<WidgetRequest, KommoError> {
    let token = required_string(&mut root, "token")?;
    let return_url = required_string(&mut root, "return_url")?;
    let data = match root.remove("data") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        // Some senders put the object in as JSON text (`data={"text":"…"}`).
        Some(Value::String(s)) if s.trim().is_empty() => Map::new(),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(&s) {
            Ok(Value::Object(map)) => map,
            _ => return Err(KommoError::malformed("data", "must be an object (data[key]=value, or a JSON object)")),
        },
        Some(_) => return Err(KommoError::malformed("data", "must be an object")),
    };
    Ok(WidgetRequest { token, return_url, data })
}

fn required_string(root: &mut Map<String, Value>, field: &str) -> Result<String, KommoError> {
    match root.remove(field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        None | Some(Value::Null) => Err(KommoError::malformed(field, "missing")),
        Some(Value::String(_)) => Err(KommoError::malformed(field, "empty")),
        Some(_) => Err(KommoError::malformed(field, "must be a string")),
    }
}

/// One step into a form key: `[name]`, or `[]` (append).
#[derive(Debug, PartialEq)]
enum Segment {
    Key(String),
    Append,
}

/// `data[deal][name]` → `data`, `[deal, name]`.
fn split_key(key: &str) -> Result<(String, Vec<Segment>), KommoError> {
    let (name, mut rest) = match key.find('[') {
        Some(i) => (&key[..i], &key[i..]),
        None => (key, ""),
    };
    if key.is_empty() {
        // `=value`, or `&=`: no key to name as the field.
        return Err(KommoError::malformed("body", "a form field without a name (`=value`)"));
    }
    if name.is_empty() {
        return Err(KommoError::malformed(key, "a form key must start with a name"));
    }
    let mut segments = Vec::new();
    while !rest.is_empty() {
        let Some(inner) = rest.strip_prefix('[') else {
            return Err(KommoError::malformed(key, "text after a closing bracket"));
        };
        let Some(end) = inner.find(']') else {
            return Err(KommoError::malformed(key, "unclosed bracket"));
        };
        let segment = &inner[..end];
        if segment.contains('[') {
            return Err(KommoError::malformed(key, "nested bracket"));
        }
        segments.push(if segment.is_empty() { Segment::Append } else { Segment::Key(segment.to_owned()) });
        rest = &inner[end + 1..];
    }
    if segments.len() > MAX_DEPTH {
        return Err(KommoError::malformed(key, format!("nested deeper than {MAX_DEPTH} levels")));
    }
    Ok((name.to_owned(), segments))
}

/// The next index for `[]` in `map`: one past the largest integer key, as PHP does.
fn next_index(map: &Map<String, Value>) -> String {
    map.keys().filter_map(|k| canonical_index(k)).max().map_or(0, |m| m + 1).to_string()
}

fn canonical_index(k: &str) -> Option<usize> {
    let n: usize = k.parse().ok()?;
    (n.to_string() == k).then_some(n)
}

fn parse_form(body: &[u8]) -> Result<Map<String, Value>, KommoError> {
    let mut root = Map::new();
    for (key, value) in url::form_urlencoded::parse(body) {
        let (name, segments) = split_key(&key)?;
        insert(&mut root, &key, name, &segments, value.into_owned())?;
    }
    Ok(root.into_iter().map(|(k, v)| (k, listify(v))).collect())
}

fn insert(
    map: &mut Map<String, Value>,
    key: &str,
    name: String,
    rest: &[Segment],
    value: String,
) -> Result<(), KommoError> {
    let Some((next, rest)) = rest.split_first() else {
        if matches!(map.get(&name), Some(Value::Object(_))) {
            return Err(KommoError::malformed(key, "a value for a key that also has nested keys"));
        }
        map.insert(name, Value::String(value)); // a repeated plain key: the last one wins, as in PHP
        return Ok(());
    };
    let child = map.entry(name).or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(child) = child else {
        return Err(KommoError::malformed(key, "nested keys for a key that also has a value"));
    };
    let name = match next {
        Segment::Key(k) => k.clone(),
        Segment::Append => next_index(child),
    };
    insert(child, key, name, rest, value)
}

/// Objects whose keys are exactly `0..n` become arrays (PHP lists), recursively.
fn listify(value: Value) -> Value {
    let Value::Object(map) = value else { return value };
    let map: Map<String, Value> = map.into_iter().map(|(k, v)| (k, listify(v))).collect();
    let mut indexed: Vec<(usize, &Value)> = Vec::with_capacity(map.len());
    for (k, v) in &map {
        match canonical_index(k) {
            Some(i) => indexed.push((i, v)),
            None => return Value::Object(map),
        }
    }
    indexed.sort_by_key(|(i, _)| *i);
    if map.is_empty() || indexed.iter().enumerate().any(|(n, (i, _))| n != *i) {
        return Value::Object(map);
    }
    Value::Array(indexed.into_iter().map(|(_, v)| v.clone()).collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

    fn form(body: &str) -> Result<WidgetRequest, KommoError> {
        parse_widget_request(FORM, body.as_bytes())
    }

    #[test]
    fn php_style_nested_keys() {
        let req = form(
            "token=t&return_url=https%3A%2F%2Facme.kommo.com%2Fx&data%5Bphone%5D=%2B1+555&data[deal][name]=Order+42\
             &data[deal][items][]=a&data[deal][items][]=b&data[tags][0]=x&data[tags][1]=y&data[sparse][3]=z",
        )
        .expect("form");
        assert_eq!(req.token, "t");
        assert_eq!(req.return_url, "https://acme.kommo.com/x");
        assert_eq!(
            Value::Object(req.data),
            json!({"phone": "+1 555", "deal": {"name": "Order 42", "items": ["a", "b"]},
                   "tags": ["x", "y"], "sparse": {"3": "z"}})
        );
    }

    #[test]
    fn more_than_ten_list_items_stay_in_order() {
        let body: String = (0..12).map(|i| format!("&data[l][]={i}")).collect();
        let req = form(&format!("token=t&return_url=u{body}")).expect("form");
        assert_eq!(req.data["l"], json!(["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11"]));
    }

    #[test]
    fn json_bodies_and_sniffing() {
        let body = br#"{"token": "t", "return_url": "https://acme.kommo.com/x", "data": {"deal": {"name": "N"}}}"#;
        for ct in [Some("application/json; charset=utf-8"), None, Some("text/plain")] {
            let req = parse_widget_request(ct, body).expect("json");
            assert_eq!(req.data["deal"]["name"], "N");
        }
        let req = form("token=t&return_url=u&data=%7B%22text%22%3A%22hi%22%7D").expect("data as JSON text");
        assert_eq!(req.data["text"], "hi");
        let req = parse_widget_request(None, b"token=secret-jwt&return_url=u").expect("no data");
        assert!(req.data.is_empty());
        assert!(!format!("{req:?}").contains("secret-jwt"));
    }

    #[test]
    fn errors_name_the_field() {
        let field = |r: Result<WidgetRequest, KommoError>| match r.expect_err("bad") {
            KommoError::Malformed { field, .. } => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(form("return_url=u")), "token");
        assert_eq!(field(form("token=t&return_url=")), "return_url");
        assert_eq!(field(form("token=t&return_url=u&data[deal=x")), "data[deal");
        assert_eq!(field(form("token=t&return_url=u&data[a]b=x")), "data[a]b");
        assert_eq!(field(form("token=t&return_url=u&[a]=x")), "[a]");
        // Found by the kommo_widget_request fuzz target: a field without a name was refused
        // naming the empty field (`": a form key must start with a name"`).
        assert_eq!(field(form("token=t&=n&return_url=u")), "body");
        assert_eq!(field(form("token=t&return_url=u&data[a]=x&data[a][b]=y")), "data[a][b]");
        assert_eq!(field(form("token=t&return_url=u&data[a][b]=y&data[a]=x")), "data[a]");
        assert_eq!(field(form("token=t&return_url=u&data=plain")), "data");
        assert_eq!(field(parse_widget_request(Some("application/json"), b"[1]")), "body");
        assert_eq!(field(parse_widget_request(Some("application/json"), b"{\"token\": 1}")), "token");
        assert_eq!(field(parse_widget_request(Some("application/json"), b"{oops")), "body");
        assert_eq!(field(parse_widget_request(Some("multipart/form-data; boundary=x"), b"")), "content-type");
        let deep = format!("token=t&return_url=u&data{}=x", "[a]".repeat(MAX_DEPTH + 1));
        assert!(form(&deep).is_err());
    }
}
