//! Message templates: `{{contact.name}}`, `{{contact.fields.city}}`, `{{deal.name}}`, defaults
//! with `{{contact.name | default("there")}}`, and the bracket masks CRM users know from their
//! bot widgets (`[Contact.Name]`, `[Deal.Name]`), which mean the same variables.
//!
//! Rendering is strict: a variable that is neither in the context nor given a default is an
//! error that names it. Templates are [MiniJinja](https://docs.rs/minijinja) (Jinja2 syntax).
//! Templates come from API callers, so a rendering is bounded: at most [`MAX_STEPS`]
//! instructions and [`MAX_OUTPUT`] bytes of text; a template that needs more is an error.
//!
//! ```
//! use cascade_engine::{Contact, template::{context, render}};
//! let ctx = context(&Contact::default().name("Ann"), &serde_json::json!({"deal": {"name": "Roof"}}));
//! assert_eq!(render("Hi [Contact.Name], about {{deal.name}}", &ctx).unwrap(), "Hi Ann, about Roof");
//! let err = render("Hi {{contact.fields.city}}", &ctx).unwrap_err();
//! assert_eq!(err.missing, vec!["contact.fields.city".to_string()]);
//! ```

use std::borrow::Cow;
use std::cell::{OnceCell, RefCell};
use std::io;
use std::sync::OnceLock;

use foldhash::{HashMap, HashMapExt};
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde_json::{Map, Value};

use crate::model::Contact;

/// A template that could not be rendered.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    /// The variables the template uses that the context lacks (dotted paths), if that is the
    /// problem.
    pub missing: Vec<String>,
    /// A human-readable explanation.
    pub message: String,
}

/// How many template instructions one rendering may run: far more than any message takes
/// (a loop over a thousand items fits many times), and few enough that a template written to
/// loop billions of times is stopped within milliseconds.
pub const MAX_STEPS: u64 = 100_000;

/// The longest text a rendering may produce (1 MiB, the API's body limit): more is an error.
pub const MAX_OUTPUT: usize = 1 << 20;

fn new_env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env.set_fuel(Some(MAX_STEPS));
    // Messages are text: never HTML-escaped, whatever a template's name.
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env
}

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(new_env)
}

/// How many compiled templates each thread keeps; past it, the thread's cache starts over.
const CACHED_TEMPLATES: usize = 256;

/// Templates longer than this are compiled for each rendering, so that the cache's memory
/// stays small (at most about 2 MiB of source per thread).
const CACHED_SOURCE: usize = 4096;

/// Templates compiled on this thread: a message sent to many contacts (a campaign, a CRM's
/// bot) is compiled once per thread, not once per cascade. Each is named with this thread's
/// random prefix and a number, so a template cannot `include` or `extend` another by its name
/// (uncached, there is none to find either).
struct Compiled {
    env: Environment<'static>,
    /// Template names by source.
    names: HashMap<String, String>,
    prefix: String,
}

thread_local! {
    static COMPILED: RefCell<Compiled> = RefCell::new(Compiled {
        env: new_env(),
        names: HashMap::new(),
        prefix: format!("{}:", uuid::Uuid::now_v7().simple()),
    });
}

/// Renders `source` (masks expanded) with a compiled template cached on this thread. `None`
/// when it is too long to cache, does not compile or does not render: the caller renders it
/// again uncached, which explains the failure.
fn render_cached(source: &str, ctx: &impl serde::Serialize) -> Option<String> {
    if source.len() > CACHED_SOURCE {
        return None;
    }
    COMPILED.with_borrow_mut(|c| {
        if !c.names.contains_key(source) {
            if c.names.len() >= CACHED_TEMPLATES {
                c.env.clear_templates();
                c.names.clear();
            }
            let name = format!("{}{}", c.prefix, c.names.len());
            c.env.add_template_owned(name.clone(), source.to_owned()).ok()?;
            c.names.insert(source.to_owned(), name);
        }
        let name = c.names.get(source)?;
        let mut out = Bounded(Vec::new());
        c.env.get_template(name).ok()?.render_captured_to(ctx, &mut out).ok()?;
        Some(into_text(out))
    })
}

/// How many templates this thread has compiled and kept.
#[cfg(test)]
fn cached_here() -> usize {
    COMPILED.with_borrow(|c| c.names.len())
}

/// MiniJinja writes text only.
fn into_text(out: Bounded) -> String {
    String::from_utf8(out.0).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The rendered text, refusing to grow past [`MAX_OUTPUT`].
struct Bounded(Vec<u8>);

impl io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.0.len() + buf.len() > MAX_OUTPUT {
            return Err(io::Error::other("the output limit is reached"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The template context for a contact and caller-given variables (e.g. `{"deal": {...}}`).
///
/// The contact is under `contact` (`name`, `phone`, `email`, `fields`, `addresses`); every
/// top-level key of `variables` is a variable of its own. A `contact` key in `variables` is
/// ignored: the contact is the contact.
pub fn context(contact: &Contact, variables: &Value) -> Value {
    let mut root = Map::new();
    if let Value::Object(vars) = variables {
        for (k, v) in vars {
            if k != "contact" {
                root.insert(k.clone(), v.clone());
            }
        }
    }
    let mut c = Map::new();
    if let Some(name) = &contact.name {
        c.insert("name".into(), Value::String(name.clone()));
    }
    if let Some(phone) = &contact.phone {
        c.insert("phone".into(), Value::String(phone.clone()));
    }
    if let Some(email) = &contact.email {
        c.insert("email".into(), Value::String(email.clone()));
    }
    c.insert("fields".into(), Value::Object(contact.fields.clone().into_iter().collect()));
    c.insert(
        "addresses".into(),
        Value::Object(contact.addresses.iter().map(|(k, v)| (k.to_string(), Value::String(v.clone()))).collect()),
    );
    root.insert("contact".into(), Value::Object(c));
    Value::Object(root)
}

/// The variables of one contact and its caller-given variables, for rendering several parts of
/// one message ([`render_vars`]). The same variables as [`context`] makes; each form of them is
/// built once, when first needed: MiniJinja's own for renderings that succeed, the JSON one
/// only to explain a failure.
#[derive(Debug)]
pub struct Vars<'a> {
    contact: &'a Contact,
    variables: &'a Value,
    jinja: OnceCell<minijinja::Value>,
    json: OnceCell<Value>,
}

impl<'a> Vars<'a> {
    /// The variables of `contact` and `variables` (e.g. `{"deal": {...}}`), as [`context`].
    pub fn new(contact: &'a Contact, variables: &'a Value) -> Self {
        Self { contact, variables, jinja: OnceCell::new(), json: OnceCell::new() }
    }

    /// As [`context`] makes them.
    pub fn json(&self) -> &Value {
        self.json.get_or_init(|| context(self.contact, self.variables))
    }

    /// MiniJinja's value of [`Vars::json`], built without going through JSON. Keys go in
    /// sorted order, as JSON maps keep them.
    fn jinja(&self) -> &minijinja::Value {
        use minijinja::Value as V;
        self.jinja.get_or_init(|| {
            let c = self.contact;
            let text = |s: &Option<String>| s.as_deref().map(V::from);
            let contact: Vec<(&str, V)> = [
                ("addresses", Some(V::from_iter(c.addresses.iter().map(|(k, v)| (k.as_str().to_owned(), v.as_str()))))),
                ("email", text(&c.email)),
                ("fields", Some(V::from_serialize(&c.fields))),
                ("name", text(&c.name)),
                ("phone", text(&c.phone)),
            ]
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?)))
            .collect();
            let mut root: Vec<(&str, V)> = match self.variables {
                Value::Object(vars) => vars
                    .iter()
                    .filter(|(k, _)| *k != "contact")
                    .map(|(k, v)| (k.as_str(), V::from_serialize(v)))
                    .collect(),
                _ => Vec::new(),
            };
            let at = root.partition_point(|(k, _)| *k < "contact");
            root.insert(at, ("contact", V::from_iter(contact)));
            V::from_iter(root)
        })
    }
}

/// Renders `source` with `vars`: the same as [`render`] with [`Vars::json`], without building
/// the JSON context unless the rendering fails.
pub fn render_vars(source: &str, vars: &Vars<'_>) -> Result<String, TemplateError> {
    if is_plain(source) {
        return Ok(source.to_owned());
    }
    if let Some(text) = render_cached(&expand_masks(source), vars.jinja()) {
        return Ok(text);
    }
    render(source, vars.json())
}

/// Whether `source` needs rendering at all (plain text is returned as is, cheaply).
pub fn is_plain(source: &str) -> bool {
    !(source.contains("{{") || source.contains("{%") || source.contains("{#") || source.contains('['))
}

/// Renders `source` against `ctx` (built by [`context`]).
pub fn render(source: &str, ctx: &Value) -> Result<String, TemplateError> {
    if is_plain(source) {
        return Ok(source.to_owned());
    }
    let source = expand_masks(source);
    if let Some(text) = render_cached(&source, ctx) {
        return Ok(text);
    }
    let tmpl = env().template_from_str(&source).map_err(|e| TemplateError {
        missing: Vec::new(),
        message: format!("template syntax error: {}", e.detail().unwrap_or(&e.to_string())),
    })?;
    let mut out = Bounded(Vec::new());
    if let Err(e) = tmpl.render_captured_to(ctx, &mut out) {
        return Err(match e.kind() {
            minijinja::ErrorKind::OutOfFuel => TemplateError {
                missing: Vec::new(),
                message: format!("template error: rendering takes more than {MAX_STEPS} steps (a loop too long?)"),
            },
            minijinja::ErrorKind::WriteFailure => TemplateError {
                missing: Vec::new(),
                message: format!("template error: the text rendered is longer than {MAX_OUTPUT} bytes"),
            },
            _ => {
                let mut missing: Vec<String> =
                    tmpl.undeclared_variables(true).into_iter().filter(|path| lookup(ctx, path).is_none()).collect();
                missing.sort();
                if missing.is_empty() || e.kind() != minijinja::ErrorKind::UndefinedError {
                    TemplateError { missing: Vec::new(), message: format!("template error: {e}") }
                } else {
                    let list = missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ");
                    TemplateError { message: format!("unknown template variable {list}"), missing }
                }
            }
        });
    }
    Ok(into_text(out))
}

/// Follows a dotted path (`contact.fields.city`, as [`TemplateError::missing`] names variables)
/// through a JSON value such as a [`context`]: the value there, or `None` when a key is absent
/// or a value on the way is not an object.
///
/// ```
/// use cascade_engine::template::lookup;
/// let ctx = serde_json::json!({"contact": {"fields": {"city": "Austin"}}});
/// assert_eq!(lookup(&ctx, "contact.fields.city"), Some(&serde_json::json!("Austin")));
/// assert_eq!(lookup(&ctx, "contact.fields.city.name"), None);
/// ```
pub fn lookup<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(value, |v, seg| match v {
        Value::Object(m) => m.get(seg),
        _ => None,
    })
}

/// Rewrites bracket masks (`[Contact.Name]`, `[Contact.Fields.City]`, `[Deal.Name]`) to
/// MiniJinja expressions. A mask is `[` + two or more dot-separated identifiers + `]`; segments
/// are lower-cased except custom field names (those after `Fields`). Other brackets stay text.
pub fn expand_masks(source: &str) -> Cow<'_, str> {
    if !source.contains('[') {
        return Cow::Borrowed(source);
    }
    let mut out = String::with_capacity(source.len() + 16);
    let mut rest = source;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find(']').map(|close| (&after[..close], close)) {
            Some((inner, close)) if is_mask(inner) => {
                out.push_str("{{ ");
                let mut in_fields = false;
                for (i, seg) in inner.split('.').enumerate() {
                    if i > 0 {
                        out.push('.');
                    }
                    if in_fields {
                        out.push_str(seg);
                    } else {
                        let lower = seg.to_ascii_lowercase();
                        in_fields = i > 0 && lower == "fields";
                        out.push_str(&lower);
                    }
                }
                out.push_str(" }}");
                rest = &after[close + 1..];
            }
            _ => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

fn is_mask(inner: &str) -> bool {
    let mut segs = 0;
    for seg in inner.split('.') {
        let mut chars = seg.chars();
        let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return false;
        }
        segs += 1;
    }
    segs >= 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Value {
        let c = Contact::with_phone("+15551234567").name("Ann").field("City", "Austin");
        context(&c, &json!({"deal": {"name": "Roof repair", "price": 1200}}))
    }

    #[test]
    fn renders_contact_fields_and_variables() {
        let out = render("Hi {{contact.name}} from {{contact.fields.City}}: {{deal.name}} ${{deal.price}}", &ctx());
        assert_eq!(out.unwrap(), "Hi Ann from Austin: Roof repair $1200");
    }

    #[test]
    fn default_filter_covers_missing_values() {
        let c = context(&Contact::default(), &json!({}));
        assert_eq!(render("Hi {{contact.name | default(\"there\")}}", &c).unwrap(), "Hi there");
    }

    /// Templates come from API callers: one that loops ten billion times, or renders
    /// gigabytes, is an error within milliseconds, not a server thread lost.
    #[test]
    fn renderings_are_bounded() {
        let started = std::time::Instant::now();
        let loops = "{% for a in range(99999) %}{% for b in range(99999) %}{{ a }}{% endfor %}{% endfor %}";
        let e = render(loops, &ctx()).unwrap_err();
        assert_eq!(
            e.message,
            format!("template error: rendering takes more than {MAX_STEPS} steps (a loop too long?)")
        );
        let e = render("{% for a in range(100) %}{{ 'x' * 50000 }}{% endfor %}", &ctx()).unwrap_err();
        assert_eq!(e.message, format!("template error: the text rendered is longer than {MAX_OUTPUT} bytes"));
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
        // What real messages do still renders: a loop over a list, a long text.
        let list = context(&Contact::default(), &json!({"items": (0..1000).collect::<Vec<_>>()}));
        let out = render("{% for i in items %}{{ i }},{% endfor %}", &list).unwrap();
        assert!(out.starts_with("0,1,2,") && out.ends_with("999,"), "{out}");
        assert_eq!(render(&format!("{{{{ 'x' }}}}{}", "y".repeat(100_000)), &list).unwrap().len(), 100_001);
    }

    /// A template compiled once serves every later rendering on its thread: with another
    /// context, one that lacks a variable (still named), and after the cache started over.
    #[test]
    fn a_cached_template_renders_each_context_as_its_own() {
        let source = "Hi {{contact.name}} from {{contact.fields.city}}";
        let austin = context(&Contact::default().name("Ann").field("city", "Austin"), &json!({}));
        let boston = context(&Contact::default().name("Bo").field("city", "Boston"), &json!({}));
        let lacking = context(&Contact::default().name("Cy"), &json!({}));
        let before = cached_here();
        assert_eq!(render(source, &austin).unwrap(), "Hi Ann from Austin");
        assert_eq!(render(source, &boston).unwrap(), "Hi Bo from Boston");
        assert_eq!(cached_here(), before + 1, "compiled once, rendered twice");
        let long = format!("{{{{contact.name}}}}{}", "x".repeat(CACHED_SOURCE));
        assert!(render(&long, &austin).unwrap().starts_with("Annxxx"));
        assert_eq!(cached_here(), before + 1, "a template over the size limit is not kept");
        assert_eq!(render(source, &lacking).unwrap_err().missing, vec!["contact.fields.city"]);
        for i in 0..=CACHED_TEMPLATES {
            assert_eq!(render(&format!("{i}: {{{{contact.name}}}}"), &austin).unwrap(), format!("{i}: Ann"));
        }
        assert_eq!(render(source, &boston).unwrap(), "Hi Bo from Boston");
        assert!(render("Hi {{ contact.name", &austin).unwrap_err().message.contains("syntax error"));
    }

    /// `render_vars` (MiniJinja's context built directly) renders exactly as `render` with the
    /// JSON context: values, key order when iterating, `contact` in the variables ignored.
    /// (A failing rendering is explained by `render` itself, so its error is the same by
    /// construction; those templates are here to show they fail on both paths.)
    #[test]
    fn vars_render_as_the_json_context_does() {
        let contacts = [
            Contact::default(),
            Contact::with_phone("+15551234567").name("Ann").email("ann@example.com"),
            Contact::default()
                .name("Bo")
                .field("city", "Boston")
                .field("zip", json!({"code": 2101, "plus": [1, 2]}))
                .field("vip", true)
                .address("telegram", "@bo")
                .address("viber", "v-1"),
        ];
        let variables = [
            json!(null),
            json!({}),
            json!({"deal": {"name": "Roof", "price": 1200.5, "tags": ["a", "b"]}, "zeta": 1, "alpha": "first"}),
            json!({"contact": {"name": "Mallory"}, "deal": {"name": "Gutter"}}),
            json!(["not", "an", "object"]),
        ];
        let templates = [
            "Hi {{contact.name}}",
            "Hi [Contact.Name], {{ contact.fields.city | default('nowhere') }} {{ deal.name }}",
            "{% for k, v in contact|items %}{{k}}={{v}};{% endfor %}",
            "{% for k, v in contact.fields|items %}{{k}}={{v}};{% endfor %}|{{ contact.addresses }}",
            "{{ deal }} {{ zeta }} {{ alpha }} {{ deal.tags[1] }} {{ deal.price * 2 }}",
            "{{ contact.phone | default('no phone') }} {{ contact.email | default('no email') }}",
            "{{ contact.fields.zip.plus | length }} {{ contact.fields.vip }} {{ contact.fields.zip.code + 1 }}",
            "{{ contact.fields.missing }}",
            "{{ nothing.here }} and {{ contact.name }",
        ];
        for contact in &contacts {
            for vars in &variables {
                let json = context(contact, vars);
                let direct = Vars::new(contact, vars);
                for t in templates {
                    assert_eq!(render_vars(t, &direct), render(t, &json), "{t:?} with {contact:?} and {vars}");
                }
                assert_eq!(direct.json(), &json);
            }
        }
    }

    /// A message is text: a template whose text ends like an HTML file name is not escaped,
    /// and a template cannot reach another one by a name, cached or not.
    #[test]
    fn cached_templates_are_text_and_stand_alone() {
        let tom = context(&Contact::default().name("Tom & <Jerry>"), &json!({}));
        for _ in 0..2 {
            assert_eq!(
                render("Hi {{contact.name}}, see x.io/a.html", &tom).unwrap(),
                "Hi Tom & <Jerry>, see x.io/a.html"
            );
        }
        let first = "Hi {{contact.name}}";
        render(first, &tom).unwrap();
        for attempt in [format!("{{% include {first:?} %}}"), "{% include \"0\" %}".to_owned()] {
            assert!(render(&attempt, &tom).is_err(), "{attempt} found another template");
            assert!(render(&attempt, &tom).is_err(), "{attempt} found another template, cached");
        }
    }

    #[test]
    fn unknown_variable_is_named() {
        let err = render("Hi {{contact.nickname}} and {{order.id}}", &ctx()).unwrap_err();
        assert_eq!(err.missing, vec!["contact.nickname", "order.id"]);
        assert!(err.message.contains("`contact.nickname`"), "{}", err.message);
    }

    #[test]
    fn bracket_masks_are_the_same_variables() {
        assert_eq!(
            render("[Contact.Name], [Deal.Name], [Contact.Fields.City]", &ctx()).unwrap(),
            "Ann, Roof repair, Austin"
        );
        let err = render("Hi [Lead.Title]", &ctx()).unwrap_err();
        assert_eq!(err.missing, vec!["lead.title"]);
    }

    #[test]
    fn other_brackets_stay_text() {
        assert_eq!(
            render("[Note] see [1] or [a.b c] {{contact.name}}", &ctx()).unwrap(),
            "[Note] see [1] or [a.b c] Ann"
        );
        assert_eq!(render("plain text", &ctx()).unwrap(), "plain text");
    }

    #[test]
    fn syntax_errors_are_reported() {
        let err = render("Hi {{ contact.name ", &ctx()).unwrap_err();
        assert!(err.message.contains("syntax"), "{}", err.message);
        assert!(err.missing.is_empty());
    }
}
