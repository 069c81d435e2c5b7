//! From the step's `data` to a cascade's parts: the pure half (no I/O).

use serde_json::{Map, Value};

use crate::KommoError;

/// What a cascade is made of, taken from a verified `widget_request`.
#[derive(Clone, PartialEq, Debug)]
pub struct Mapped {
    /// Who to write to. The phone is normalized where that is safe (spaces, dashes, brackets
    /// and dots removed); whether it is E.164 is the engine's check.
    pub contact: cascade_engine::Contact,
    /// The message text: a template, rendered by the engine with the contact and
    /// [`variables`](Self::variables) (`[Deal.Name]`, `{{deal.name}}`).
    pub text: String,
    /// The policy: the request's `data[policy]`, else the account's `policy`, else the
    /// config's `default_policy`; `None` leaves the choice to the server.
    pub policy: Option<String>,
    /// Template variables: `{"deal": {…}}` from `data[deal]`, or `null`.
    pub variables: Value,
}

/// Whether `s` holds a placeholder Kommo left unfilled (`{{contact.phone}}`).
pub(crate) fn has_placeholder(s: &str) -> bool {
    s.find("{{").is_some_and(|i| s[i + 2..].contains("}}"))
}

/// `s` without its `{{…}}` placeholders.
fn without_placeholders(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("{{") {
        let Some(j) = rest[i + 2..].find("}}") else { break };
        out.push_str(&rest[..i]);
        rest = &rest[i + 2 + j + 2..];
    }
    out.push_str(rest);
    out
}

/// The value at the first of `paths` that is present (not null), with its field name
/// (`data.contact.phone`).
pub(crate) fn lookup<'a>(data: &'a Map<String, Value>, paths: &[&[&str]]) -> Option<(&'a Value, String)> {
    paths.iter().find_map(|path| {
        let (first, rest) = path.split_first()?;
        let mut value = data.get(*first)?;
        for key in rest {
            value = value.as_object()?.get(*key)?;
        }
        (!value.is_null()).then(|| (value, format!("data.{}", path.join("."))))
    })
}

/// A text value (numbers are written out); an object or a list is refused naming the field.
fn as_text(value: &Value, field: &str) -> Result<Option<String>, KommoError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.trim().to_owned())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(_) | Value::Array(_) | Value::Object(_) => Err(KommoError::invalid(field, "must be text")),
    }
}

/// A contact detail from the first of `paths`; empty or unfilled values are missing.
pub(crate) fn detail(data: &Map<String, Value>, paths: &[&[&str]]) -> Result<Option<String>, KommoError> {
    for path in paths {
        if let Some((value, field)) = lookup(data, &[path])
            && let Some(text) = as_text(value, &field)?
            && !text.is_empty()
            && !has_placeholder(&text)
        {
            return Ok(Some(text));
        }
    }
    Ok(None)
}

/// The message text (`data[text]`, or `data[message]`). Text that is only unfilled
/// placeholders is missing; placeholders inside a text are left for the engine to render.
pub(crate) fn message_text(data: &Map<String, Value>) -> Result<String, KommoError> {
    let found = lookup(data, &[&["text"], &["message"]]);
    let field = found.as_ref().map_or_else(|| "data.text".to_owned(), |(_, f)| f.clone());
    let text = match found {
        Some((value, field)) => as_text(value, &field)?.unwrap_or_default(),
        None => String::new(),
    };
    if without_placeholders(&text).trim().is_empty() {
        let why = if text.is_empty() {
            "missing: put the message in the step's data as \"text\"".to_owned()
        } else {
            format!("{text:?} is a placeholder Kommo could not fill")
        };
        return Err(KommoError::invalid(field, why));
    }
    Ok(text)
}

/// A copy of `value` without the strings Kommo left empty or unfilled.
pub(crate) fn filled(value: &Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::String(s) if s.trim().is_empty() || has_placeholder(s) => None,
        Value::Object(map) => {
            Some(Value::Object(map.iter().filter_map(|(k, v)| Some((k.clone(), filled(v)?))).collect()))
        }
        Value::Array(items) => Some(Value::Array(items.iter().filter_map(filled).collect())),
        other => Some(other.clone()),
    }
}

/// An object from `data` at `path`, cleaned with [`filled`]; anything but an object is
/// refused naming the field.
pub(crate) fn object(data: &Map<String, Value>, path: &[&str]) -> Result<Map<String, Value>, KommoError> {
    match lookup(data, &[path]) {
        None => Ok(Map::new()),
        Some((value @ Value::Object(_), _)) => Ok(filled(value).and_then(into_map).unwrap_or_default()),
        Some((Value::String(s), _)) if s.trim().is_empty() || has_placeholder(s) => Ok(Map::new()),
        Some((_, field)) => Err(KommoError::invalid(field, "must be an object (data[deal][name]=…)")),
    }
}

fn into_map(v: Value) -> Option<Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// A Kommo entity id from `data` (`lead_id`, `contact_id`): a positive number, or missing
/// when empty or unfilled.
pub(crate) fn entity_id(data: &Map<String, Value>, key: &str) -> Result<Option<u64>, KommoError> {
    let Some((value, field)) = lookup(data, &[&[key]]) else { return Ok(None) };
    let Some(text) = as_text(value, &field)? else { return Ok(None) };
    if text.is_empty() || has_placeholder(&text) {
        return Ok(None);
    }
    match text.parse::<u64>() {
        Ok(id) if id > 0 => Ok(Some(id)),
        _ => Err(KommoError::invalid(field, format!("{text:?} is not a Kommo id"))),
    }
}

/// A phone number with what is safe to drop dropped: spaces, dashes, brackets, dots and a
/// `tel:` prefix (`+1 (555) 123-45-67` → `+15551234567`). Nothing is guessed: a national
/// number (`8 999 …`) stays national, and the engine's E.164 check refuses it.
pub fn normalize_phone(phone: &str) -> String {
    let phone = phone.trim();
    let phone = phone.strip_prefix("tel:").unwrap_or(phone);
    phone
        .chars()
        .filter(|c| !(c.is_whitespace() || matches!(c, '-' | '\u{2010}'..='\u{2015}' | '(' | ')' | '.' | '\u{2212}')))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn data(v: Value) -> Map<String, Value> {
        into_map(v).expect("object")
    }

    #[test]
    fn placeholders() {
        assert!(has_placeholder("{{contact.phone}}"));
        assert!(has_placeholder("+1 {{lead.cf.123}}"));
        assert!(!has_placeholder("{{ not closed"));
        assert!(!has_placeholder("}} {{"));
        assert_eq!(without_placeholders("Hi {{contact.name}}, order {{lead.name}}!"), "Hi , order !");
    }

    #[test]
    fn text_rules() {
        assert_eq!(message_text(&data(json!({"text": " Hi [Contact.Name] "}))).expect("text"), "Hi [Contact.Name]");
        assert_eq!(message_text(&data(json!({"message": "Hi {{deal.name}}"}))).expect("text"), "Hi {{deal.name}}");
        let missing = |v: Value| message_text(&data(v)).expect_err("missing");
        assert_eq!(missing(json!({})).field(), Some("data.text"));
        assert_eq!(missing(json!({"text": "{{lead.cf.5}}"})).field(), Some("data.text"));
        assert_eq!(missing(json!({"message": "  "})).field(), Some("data.message"));
        assert_eq!(missing(json!({"text": {"a": 1}})).field(), Some("data.text"));
    }

    #[test]
    fn details_skip_unfilled_values() {
        let d = data(json!({"phone": "{{contact.phone}}", "contact": {"phone": "+1 555 0100", "email": ""}}));
        assert_eq!(detail(&d, &[&["phone"], &["contact", "phone"]]).expect("ok").as_deref(), Some("+1 555 0100"));
        assert_eq!(detail(&d, &[&["email"], &["contact", "email"]]).expect("ok"), None);
        let d = data(json!({"phone": 79991234567u64, "name": ["x"]}));
        assert_eq!(detail(&d, &[&["phone"]]).expect("number").as_deref(), Some("79991234567"));
        assert_eq!(detail(&d, &[&["name"]]).expect_err("list").field(), Some("data.name"));
    }

    #[test]
    fn objects_are_cleaned() {
        let d = data(json!({"deal": {"name": "Order 42", "price": "", "stage": "{{lead.status}}",
                                     "items": ["a", "{{x}}"], "meta": {"n": 1}}}));
        assert_eq!(
            Value::Object(object(&d, &["deal"]).expect("deal")),
            json!({"name": "Order 42", "items": ["a"], "meta": {"n": 1}})
        );
        assert!(object(&data(json!({"deal": "{{lead}}"})), &["deal"]).expect("unfilled").is_empty());
        assert_eq!(object(&data(json!({"deal": 5})), &["deal"]).expect_err("number").field(), Some("data.deal"));
    }

    #[test]
    fn ids() {
        let d = data(json!({"lead_id": "1234", "contact_id": "{{contact.id}}", "x": "abc", "n": 77}));
        assert_eq!(entity_id(&d, "lead_id").expect("ok"), Some(1234));
        assert_eq!(entity_id(&d, "contact_id").expect("ok"), None);
        assert_eq!(entity_id(&d, "n").expect("ok"), Some(77));
        assert_eq!(entity_id(&d, "missing").expect("ok"), None);
        assert_eq!(entity_id(&d, "x").expect_err("garbage").field(), Some("data.x"));
    }

    #[test]
    fn phones() {
        assert_eq!(normalize_phone("+1 555 123 4567"), "+15551234567");
        assert_eq!(normalize_phone("+7 (999) 123-45-67"), "+79991234567");
        assert_eq!(normalize_phone("8 (999) 123-45-67"), "89991234567");
        assert_eq!(normalize_phone("tel:+44.20.7946.0958"), "+442079460958");
        assert_eq!(normalize_phone("+49\u{a0}30\u{2013}1234567"), "+49301234567");
        assert!(cascade_engine::is_e164(&normalize_phone("+1 (555) 123-4567")));
        assert!(!cascade_engine::is_e164(&normalize_phone("8 (999) 123-45-67")));
    }
}
