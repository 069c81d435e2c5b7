//! `send`, `status`, `list`, `cancel`: cascades on a server.

use std::path::PathBuf;
use std::time::Duration;

use cascade_engine::{Attempt, Contact, Cost, Event, EventKind, Outcome, Timestamp};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::Global;
use crate::client::{Client, Entry};
use crate::exit::{self, Failure};
use crate::out::Out;
use crate::timeline::{Timeline, outcome_text};

/// `cascade send` options.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  cascade send --to +15551234567 --name Ann --text 'Hi {{contact.name}}, your order is ready' --wait
  cascade send --to +15551234567 --telegram 4242 --chain whatsapp,telegram,sms --timeout 30s --text Hi
  cascade send --to +15551234567 --var deal.name='Spring sale' --text 'Deal: {{deal.name}}' --policy default
  cascade send --email ann@example.com --file invoice.pdf --chain email --text 'Your invoice' --json

The policy is --policy NAME (configured on the server; `default` when neither option is given)
or --chain CHANNELS (an inline policy, each step waiting --timeout for --until).")]
pub struct SendArgs {
    /// The contact's phone number, in E.164 (`+15551234567`).
    #[arg(long, value_name = "PHONE")]
    to: Option<String>,
    /// The contact's email address.
    #[arg(long)]
    email: Option<String>,
    /// The contact's Telegram chat id.
    #[arg(long, value_name = "CHAT_ID")]
    telegram: Option<String>,
    /// The contact's Viber user id.
    #[arg(long, value_name = "USER_ID")]
    viber: Option<String>,
    /// The contact's MAX user id.
    #[arg(long, value_name = "USER_ID")]
    max: Option<String>,
    /// An address on any channel (repeatable).
    #[arg(long, value_name = "CHANNEL=ADDRESS")]
    address: Vec<String>,
    /// The contact's name (`{{contact.name}}`).
    #[arg(long)]
    name: Option<String>,
    /// A custom field of the contact (`{{contact.fields.KEY}}`; repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    field: Vec<String>,
    /// A template variable; dots make nested objects (`deal.name=Spring` → `{{deal.name}}`;
    /// repeatable).
    #[arg(long, value_name = "PATH=VALUE")]
    var: Vec<String>,
    /// The message text (a template).
    #[arg(long)]
    text: String,
    /// A file to attach: uploaded first, then sent by URL.
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Where the server POSTs the outcome (the key needs a callback secret).
    #[arg(long, value_name = "URL")]
    callback_url: Option<String>,
    /// Metadata kept with the cascade and returned with it (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    metadata: Vec<String>,
    /// A repeat with the same key returns the same cascade and sends nothing new.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    /// Follow the cascade live until it ends: exit 0 when delivered, 1 otherwise.
    #[arg(long)]
    wait: bool,
}

/// The policy options of `send` and `campaign create`: a configured policy by name, or an
/// inline one from a list of channels.
#[derive(Debug, Args)]
pub(crate) struct PolicyArgs {
    /// A policy configured on the server (default: `default`).
    #[arg(long, conflicts_with = "chain")]
    policy: Option<String>,
    /// The channels to try, in order (an inline policy).
    #[arg(long, value_name = "CHANNELS", value_delimiter = ',')]
    chain: Vec<String>,
    /// With --chain: how long each step waits (`30s`, `2m`; default: the server's, 60 s).
    #[arg(long, requires = "chain")]
    timeout: Option<String>,
    /// With --chain: the status each step waits for (default: the channel's, e.g. `delivered`).
    #[arg(long, requires = "chain")]
    until: Option<String>,
}

impl PolicyArgs {
    /// The request's `policy`: the name (`default` when neither option is given), or
    /// `{"steps": [...]}` for --chain.
    pub(crate) fn to_json(&self) -> Result<Value, Failure> {
        if self.chain.is_empty() {
            return Ok(json!(self.policy.as_deref().unwrap_or("default")));
        }
        if let Some(t) = &self.timeout {
            cascade_engine::model::duration::parse(t)
                .map_err(|e| Failure::invalid(format!("--timeout {t:?}: {e} (write it as 30s, 2m, 1h)")))?;
        }
        let steps: Vec<Value> = self
            .chain
            .iter()
            .map(|c| c.trim())
            .filter(|c| !c.is_empty())
            .map(|channel| {
                let mut step = json!({"channel": channel});
                if let Some(t) = &self.timeout {
                    step["timeout"] = json!(t);
                }
                if let Some(u) = &self.until {
                    step["until"] = json!(u);
                }
                step
            })
            .collect();
        if steps.is_empty() {
            return Err(Failure::invalid("--chain: name at least one channel (whatsapp,telegram,sms)"));
        }
        Ok(json!({"steps": steps}))
    }
}

/// `cascade status` options.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  cascade status 0191c1a4-7d2e-7c3a-9f00-3f1a2b3c4d5e\n  cascade status 0191c1a4-7d2e-7c3a-9f00-3f1a2b3c4d5e --watch\n  cascade status 0191c1a4-7d2e-7c3a-9f00-3f1a2b3c4d5e --json | jq .outcome"
)]
pub struct StatusArgs {
    /// The cascade's id.
    id: String,
    /// Follow it live until it ends: exit 0 when delivered, 1 otherwise.
    #[arg(long)]
    watch: bool,
}

/// `cascade list` options.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  cascade list\n  cascade list --state failed --since 2h\n  cascade list --channel sms --since 2026-01-31T00:00:00Z --limit 200 --json"
)]
pub struct ListArgs {
    /// Only cascades in this state: running, delivered, failed, cancelled, expired.
    #[arg(long)]
    state: Option<String>,
    /// Only cascades that tried this channel.
    #[arg(long)]
    channel: Option<String>,
    /// Only cascades created since: an RFC 3339 time, or a duration ago (`2h`, `30m`, `7d`).
    #[arg(long)]
    since: Option<String>,
    /// How many (1 to 200).
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Continue after an earlier page (its `next_cursor`).
    #[arg(long)]
    cursor: Option<String>,
}

/// `cascade cancel` options.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  cascade cancel 0191c1a4-7d2e-7c3a-9f00-3f1a2b3c4d5e")]
pub struct CancelArgs {
    /// The cascade's id.
    id: String,
}

/// The parts of `GET /v1/cascades/{id}` the CLI shows.
#[derive(Debug, Deserialize)]
pub(crate) struct View {
    pub(crate) id: String,
    pub(crate) state: String,
    #[serde(default)]
    pub(crate) outcome: Option<Outcome>,
    #[serde(default)]
    pub(crate) attempts: Vec<Attempt>,
    #[serde(default)]
    pub(crate) cost: Cost,
    pub(crate) created_at: Timestamp,
    #[serde(default)]
    pub(crate) finished_at: Option<Timestamp>,
    #[serde(default)]
    pub(crate) contact: Option<Contact>,
    #[serde(default)]
    pub(crate) events: Vec<Event>,
}

/// A cascade as the server returned it.
pub(crate) fn parse_view(value: &Value) -> Result<View, Failure> {
    View::deserialize(value).map_err(|e| Failure::io(format!("the server's cascade does not read as one: {e}")))
}

/// The id in a `POST /v1/cascades` answer.
pub(crate) fn started_id(answer: &Value) -> Result<String, Failure> {
    answer
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| Failure::io(format!("the server's answer has no cascade id: {answer}")))
}

/// A client of the server the global options name.
pub(crate) fn client(g: &Global) -> Result<Client, Failure> {
    Client::new(&g.server, g.api_key.clone())
}

/// `KEY=VALUE` (or `--name KEY=VALUE` in messages).
fn pair<'a>(option: &str, s: &'a str) -> Result<(&'a str, &'a str), Failure> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim(), v)),
        _ => Err(Failure::invalid(format!("--{option} {s:?}: write it as KEY=VALUE"))),
    }
}

/// Sets `path` (dotted) in `root` to `value`, making objects on the way.
fn set_path(root: &mut Map<String, Value>, path: &str, value: Value) -> Result<(), Failure> {
    let mut parts = path.split('.').peekable();
    let mut node = root;
    while let Some(part) = parts.next() {
        if part.is_empty() {
            return Err(Failure::invalid(format!("--var {path:?}: empty name between dots")));
        }
        if parts.peek().is_none() {
            node.insert(part.to_owned(), value);
            return Ok(());
        }
        let next = node.entry(part.to_owned()).or_insert_with(|| Value::Object(Map::new()));
        node = next
            .as_object_mut()
            .ok_or_else(|| Failure::invalid(format!("--var {path:?}: {part:?} is already a value, not an object")))?;
    }
    Ok(())
}

/// `--var PATH=VALUE` options as template variables; dots in the path nest objects.
pub(crate) fn variables(vars: &[String]) -> Result<Map<String, Value>, Failure> {
    let mut variables = Map::new();
    for s in vars {
        let (k, v) = pair("var", s)?;
        set_path(&mut variables, k, json!(v))?;
    }
    Ok(variables)
}

/// `--metadata KEY=VALUE` options as an object.
pub(crate) fn metadata(pairs: &[String]) -> Result<Map<String, Value>, Failure> {
    let mut metadata = Map::new();
    for s in pairs {
        let (k, v) = pair("metadata", s)?;
        metadata.insert(k.into(), json!(v));
    }
    Ok(metadata)
}

/// The `POST /v1/cascades` body for these options (the attachment added by the caller).
fn start_body(a: &SendArgs) -> Result<Value, Failure> {
    let mut addresses = Map::new();
    for (channel, value) in [("telegram", &a.telegram), ("viber", &a.viber), ("max", &a.max)] {
        if let Some(v) = value {
            addresses.insert(channel.into(), json!(v));
        }
    }
    for s in &a.address {
        let (k, v) = pair("address", s)?;
        addresses.insert(k.into(), json!(v));
    }
    let mut fields = Map::new();
    for s in &a.field {
        let (k, v) = pair("field", s)?;
        fields.insert(k.into(), json!(v));
    }
    let mut contact = Map::new();
    for (k, v) in [("name", &a.name), ("phone", &a.to), ("email", &a.email)] {
        if let Some(v) = v {
            contact.insert(k.into(), json!(v));
        }
    }
    if contact.get("phone").is_none() && contact.get("email").is_none() && addresses.is_empty() {
        return Err(Failure::invalid(
            "no address for the contact: give --to, --email, --telegram, --viber, --max or --address",
        ));
    }
    contact.insert("addresses".into(), Value::Object(addresses));
    contact.insert("fields".into(), Value::Object(fields));
    let variables = variables(&a.var)?;
    let metadata = metadata(&a.metadata)?;
    let policy = a.policy.to_json()?;
    let mut body = json!({
        "contact": contact,
        "message": {"text": a.text},
        "policy": policy,
        "variables": variables,
        "metadata": metadata,
    });
    if let Some(url) = &a.callback_url {
        body["callback_url"] = json!(url);
    }
    Ok(body)
}

/// Starts a cascade; with `--wait`, follows it to its end.
pub async fn send(g: &Global, out: &Out, a: SendArgs) -> Result<u8, Failure> {
    let mut body = start_body(&a)?;
    let client = client(g)?;
    if let Some(path) = &a.file {
        let uploaded = client.upload(path).await?;
        let id = uploaded
            .get("upload_id")
            .and_then(Value::as_str)
            .ok_or_else(|| Failure::io(format!("the server's upload answer has no upload_id: {uploaded}")))?;
        body["message"]["attachment"] = json!({"upload_id": id});
    }
    let started = client.start(&body, a.idempotency_key.as_deref()).await?;
    let id = started_id(&started)?;
    if !a.wait {
        if out.json {
            out.json_line(&started);
        } else {
            let again =
                if started["existing"] == true { " (an earlier cascade with this idempotency key)" } else { "" };
            println!("{id}{again}");
            eprintln!("started; follow it with: cascade status {id} --watch");
        }
        return Ok(exit::OK);
    }
    if out.json {
        out.json_line(&started);
    } else {
        println!("{} {}", out.bold("cascade"), id);
    }
    follow(&client, out, &id).await
}

/// Shows a cascade; with `--watch`, follows it to its end.
pub async fn status(g: &Global, out: &Out, a: StatusArgs) -> Result<u8, Failure> {
    let client = client(g)?;
    if a.watch {
        if !out.json {
            println!("{} {}", out.bold("cascade"), a.id);
        }
        return follow(&client, out, &a.id).await;
    }
    let value = client.get(&a.id).await?;
    if out.json {
        out.json_line(&value);
    } else {
        let view = parse_view(&value)?;
        print_view(out, &view, true);
    }
    Ok(exit::OK)
}

/// Prints the timeline live until the cascade ends, then its summary; 0 when delivered.
async fn follow(client: &Client, out: &Out, id: &str) -> Result<u8, Failure> {
    let spinner = ProgressBar::new_spinner();
    spinner.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    if out.json {
        spinner.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    } else {
        spinner.enable_steady_tick(Duration::from_millis(120));
        spinner.set_message("waiting for the first event");
    }
    let mut timeline = Timeline::default();
    // Entries shown so far: the stream replays the stored timeline first, so after a
    // reconnect the first `seen` entries are skipped.
    let mut seen = 0usize;
    let lost = format!("lost the event stream of {id}; see `cascade status {id}`");
    let followed = client
        .follow_cascade(id, &lost, |index, event| {
            if index <= seen {
                return Ok(Entry::Replayed);
            }
            seen = index;
            if out.json {
                out.json_line(&serde_json::to_value(&event).unwrap_or(Value::Null));
            } else {
                let line = timeline.line(out, &event);
                spinner.suspend(|| println!("{}", line.render(out)));
                spinner.set_message(format!("{} {}", line.channel, console::strip_ansi_codes(&line.text)));
            }
            Ok(if matches!(event.kind, EventKind::Finished { .. }) { Entry::Last } else { Entry::New })
        })
        .await;
    spinner.finish_and_clear();
    followed?;
    let value = client.get(id).await?;
    let view = parse_view(&value)?;
    if out.json {
        out.json_line(&value);
    } else {
        println!();
        print_view(out, &view, false);
    }
    Ok(if view.state == "delivered" { exit::OK } else { exit::UNDELIVERED })
}

fn print_view(out: &Out, v: &View, with_timeline: bool) {
    let outcome = v.outcome.as_ref().map(|o| outcome_text(out, o)).unwrap_or_else(|| out.state(&v.state));
    println!("{} {}  {}  cost {}", out.bold("cascade"), v.id, outcome, v.cost);
    if let Some(c) = &v.contact {
        let mut who: Vec<String> = Vec::new();
        who.extend(c.name.clone());
        who.extend(c.phone.clone());
        who.extend(c.email.clone());
        who.extend(c.addresses.iter().map(|(k, a)| format!("{k}:{a}")));
        println!("{} {}", out.dim("contact "), who.join("  "));
    }
    let finished =
        v.finished_at.map(|t| format!("  finished {}", t.format("%Y-%m-%d %H:%M:%S%.3f UTC"))).unwrap_or_default();
    println!("{} {}{finished}", out.dim("created "), v.created_at.format("%Y-%m-%d %H:%M:%S%.3f UTC"));
    if let Some(Outcome::Failed { steps }) = &v.outcome {
        for s in steps {
            let class = s.class.map(|c| format!(" [{c}]")).unwrap_or_default();
            println!("  step {} {}{}: {}", s.step + 1, s.channel, class, s.reason);
        }
    }
    if !v.attempts.is_empty() {
        let mut table = out.table(&["#", "channel", "connection", "provider id", "statuses", "error", "cost"]);
        for a in &v.attempts {
            let statuses: Vec<String> = a.statuses.iter().map(|s| out.state(&s.status.to_string())).collect();
            let error = a.error.as_ref().map(|e| format!("{} {}", e.class, e.code)).unwrap_or_default();
            table.add_row(vec![
                a.number.to_string(),
                a.channel.to_string(),
                a.connection.as_ref().map(ToString::to_string).unwrap_or_default(),
                a.provider_message_id.clone().unwrap_or_default(),
                statuses.join(" "),
                error,
                a.cost.to_string(),
            ]);
        }
        println!("{table}");
    }
    if with_timeline && !v.events.is_empty() {
        println!("{}", out.bold("timeline"));
        let mut t = Timeline::default();
        for e in &v.events {
            println!("{}", t.line(out, e).render(out));
        }
    }
}

/// `--since`: an RFC 3339 time, or a duration ago.
fn since(s: &str) -> Result<String, Failure> {
    if chrono::DateTime::parse_from_rfc3339(s).is_ok() {
        return Ok(s.to_owned());
    }
    let ago = cascade_engine::model::duration::parse(s).map_err(|_| {
        Failure::invalid(format!(
            "--since {s:?}: give an RFC 3339 time (2026-01-31T09:00:00Z) or a duration ago (2h, 30m, 7d)"
        ))
    })?;
    let ago = chrono::Duration::from_std(ago).map_err(|_| Failure::invalid(format!("--since {s:?}: too long ago")))?;
    Ok((chrono::Utc::now() - ago).to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// Lists cascades.
pub async fn list(g: &Global, out: &Out, a: ListArgs) -> Result<u8, Failure> {
    let mut query = vec![("limit", a.limit.to_string())];
    for (k, v) in [("state", &a.state), ("channel", &a.channel), ("cursor", &a.cursor)] {
        if let Some(v) = v {
            query.push((k, v.clone()));
        }
    }
    if let Some(s) = &a.since {
        query.push(("since", since(s)?));
    }
    let page = client(g)?.list(&query).await?;
    if out.json {
        out.json_line(&page);
        return Ok(exit::OK);
    }
    let items: Vec<View> = match page.get("items") {
        Some(items) => Vec::<View>::deserialize(items)
            .map_err(|e| Failure::io(format!("the server's list does not read as one: {e}")))?,
        None => Vec::new(),
    };
    if items.is_empty() {
        println!("no cascades");
        return Ok(exit::OK);
    }
    let mut table = out.table(&["id", "state", "outcome", "contact", "created", "cost"]);
    for v in &items {
        let outcome = match &v.outcome {
            Some(Outcome::Delivered { channel, status, .. }) => format!("{channel} ({status})"),
            Some(Outcome::Failed { steps }) => format!("{} step(s) tried", steps.len()),
            _ => String::new(),
        };
        let contact = v
            .contact
            .as_ref()
            .map(|c| c.name.clone().or(c.phone.clone()).or(c.email.clone()).unwrap_or_default())
            .unwrap_or_default();
        table.add_row(vec![
            v.id.clone(),
            out.state(&v.state),
            outcome,
            contact,
            v.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            v.cost.to_string(),
        ]);
    }
    println!("{table}");
    if let Some(next) = page.get("next_cursor").and_then(Value::as_str) {
        eprintln!("more: cascade list --cursor {next}");
    }
    Ok(exit::OK)
}

/// Cancels a cascade.
pub async fn cancel(g: &Global, out: &Out, a: CancelArgs) -> Result<u8, Failure> {
    let answer = client(g)?.cancel(&a.id).await?;
    if out.json {
        out.json_line(&answer);
    } else if answer["cancelled"] == true {
        println!("{} {}", a.id, out.state("cancelled"));
    } else {
        let state = answer.get("state").and_then(Value::as_str).unwrap_or("finished");
        println!("{} had already ended: {}", a.id, out.state(state));
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_variables_nest_and_clash_clearly() {
        let mut root = Map::new();
        set_path(&mut root, "deal.name", json!("Spring")).expect("set");
        set_path(&mut root, "deal.amount", json!("10")).expect("set");
        assert_eq!(Value::Object(root.clone()), json!({"deal": {"name": "Spring", "amount": "10"}}));
        let err = set_path(&mut root, "deal.name.first", json!("x")).expect_err("a value, not an object");
        assert!(err.message.contains("\"name\" is already a value"), "{}", err.message);
        assert!(set_path(&mut root, "a..b", json!(1)).is_err());
    }

    #[test]
    fn since_takes_times_and_durations() {
        assert_eq!(since("2026-01-31T09:00:00Z").expect("time"), "2026-01-31T09:00:00Z");
        let two_hours_ago = chrono::DateTime::parse_from_rfc3339(&since("2h").expect("duration")).expect("rfc3339");
        let diff = chrono::Utc::now() - two_hours_ago.with_timezone(&chrono::Utc);
        assert!((diff.num_seconds() - 7200).abs() < 5, "{diff}");
        assert_eq!(since("yesterday").expect_err("bad").code, exit::INVALID);
    }
}
