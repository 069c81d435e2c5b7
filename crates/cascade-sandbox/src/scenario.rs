//! Scenarios: how each recipient behaves on each channel.
//!
//! A scenario file (TOML or JSON) lists recipients by address — a phone number, a chat or user
//! id — optionally narrowed to some channels, each with a behaviour. Recipients not listed get
//! the default behaviour (`deliver` after one second unless the file says otherwise).

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// The channels the sandbox emulates.
pub const CHANNELS: &[&str] = &["whatsapp", "telegram", "sms", "viber", "max"];

/// What happens to a message sent to a recipient.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Behaviour {
    /// Accepted, then `delivered` after `after` (channels without delivery reports: just
    /// accepted).
    Deliver {
        /// When the delivery report comes.
        after: Duration,
    },
    /// Delivered after `delivered_after`, read after `read_after`.
    Read {
        /// When the delivery report comes.
        delivered_after: Duration,
        /// When the read report comes.
        read_after: Duration,
    },
    /// Delivered at half of `after`, then the contact replies `text` at `after`.
    Reply {
        /// When the reply comes.
        after: Duration,
        /// The reply.
        text: String,
    },
    /// Accepted, and then nothing: no report ever.
    Silent,
    /// The recipient does not use this channel (no such account, not subscribed, not a mobile
    /// number: each provider says it its own way).
    NotOnChannel,
    /// The recipient blocked the sender.
    Blocked,
    /// Accepted, then failed after `after` with the provider error `code` (default: the
    /// provider's "undeliverable"). Providers that report nothing after sending refuse at once.
    Fail {
        /// When the failure report comes.
        after: Duration,
        /// The provider's error code.
        code: Option<String>,
    },
    /// HTTP 500 for the first `times` sends, then delivered after a second.
    ServerError {
        /// How many sends fail.
        times: u32,
    },
    /// Rate-limited (HTTP 429 or the provider's equivalent, with its retry-after) for the first
    /// `times` sends, then delivered after a second.
    RateLimited {
        /// How many sends are refused.
        times: u32,
        /// The retry-after the answer carries.
        retry_after: Duration,
    },
    /// Answers only after `delay` (the first `times` sends; every send when `None`), then
    /// delivered after a second. A send whose client hangs up before the answer is carried
    /// through all the same: accepted, reported, logged as abandoned.
    Slow {
        /// How long the answer takes.
        delay: Duration,
        /// How many sends are slow (`None`: all of them).
        times: Option<u32>,
    },
    /// The connection is reset (TCP RST) once the request is read, with no answer at all, for
    /// the first `times` sends; then delivered after a second.
    Reset {
        /// How many sends get no answer.
        times: u32,
    },
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour::Deliver { after: Duration::from_secs(1) }
    }
}

/// How reports about one recipient's messages are sent.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Delivery {
    /// Every webhook is sent twice.
    pub duplicate: bool,
    /// A message's reports go out newest first (`read` before `delivered`), all at the time of
    /// the last one.
    pub reorder: bool,
    /// A webhook the server did not answer with a 2xx (or did not answer at all) is sent
    /// again, as real providers do: after 1 s, 2 s, 4 s, … up to 8 tries in all.
    pub redeliver: bool,
}

/// One recipient's behaviour.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Recipient {
    /// The address as adapters send it: `+15550100001`, a chat id, a Viber id, a MAX user id.
    pub address: String,
    /// The channels this rule is for (`None`: all).
    pub channels: Option<Vec<String>>,
    /// What happens.
    pub behaviour: Behaviour,
    /// How reports are sent.
    pub delivery: Delivery,
}

/// The scenarios: rules by recipient, and the default.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Scenarios {
    /// For recipients no rule names.
    pub default: (Behaviour, Delivery),
    /// The rules, first match wins.
    pub recipients: Vec<Recipient>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Deliver,
    Read,
    Reply,
    Silent,
    NotOnChannel,
    Blocked,
    Fail,
    ServerError,
    RateLimited,
    Slow,
    Reset,
}

/// A rule as written: every parameter optional, checked against its behaviour afterwards.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    channels: Option<Vec<String>>,
    behaviour: Kind,
    #[serde(default, with = "crate::duration::option")]
    after: Option<Duration>,
    #[serde(default, with = "crate::duration::option")]
    delivered_after: Option<Duration>,
    #[serde(default, with = "crate::duration::option")]
    read_after: Option<Duration>,
    #[serde(default, with = "crate::duration::option")]
    retry_after: Option<Duration>,
    #[serde(default, with = "crate::duration::option")]
    delay: Option<Duration>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    times: Option<u32>,
    #[serde(default)]
    duplicate: bool,
    #[serde(default)]
    reorder: bool,
    #[serde(default)]
    redeliver: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    default: Option<Rule>,
    #[serde(default)]
    recipient: Vec<Rule>,
}

impl Rule {
    /// The behaviour, refusing parameters that do not belong to it.
    fn behaviour(&self, at: &str) -> Result<(Behaviour, Delivery), String> {
        let secs = Duration::from_secs;
        let given: [(&str, bool); 8] = [
            ("after", self.after.is_some()),
            ("delivered_after", self.delivered_after.is_some()),
            ("read_after", self.read_after.is_some()),
            ("retry_after", self.retry_after.is_some()),
            ("delay", self.delay.is_some()),
            ("text", self.text.is_some()),
            ("code", self.code.is_some()),
            ("times", self.times.is_some()),
        ];
        let (behaviour, allowed): (Behaviour, &[&str]) = match self.behaviour {
            Kind::Deliver => (Behaviour::Deliver { after: self.after.unwrap_or(secs(1)) }, &["after"]),
            Kind::Read => (
                Behaviour::Read {
                    delivered_after: self.delivered_after.unwrap_or(secs(1)),
                    read_after: self.read_after.unwrap_or(secs(2)),
                },
                &["delivered_after", "read_after"],
            ),
            Kind::Reply => (
                Behaviour::Reply {
                    after: self.after.unwrap_or(secs(2)),
                    text: self.text.clone().unwrap_or_else(|| "Thanks, got it!".to_owned()),
                },
                &["after", "text"],
            ),
            Kind::Silent => (Behaviour::Silent, &[]),
            Kind::NotOnChannel => (Behaviour::NotOnChannel, &[]),
            Kind::Blocked => (Behaviour::Blocked, &[]),
            Kind::Fail => {
                (Behaviour::Fail { after: self.after.unwrap_or(secs(1)), code: self.code.clone() }, &["after", "code"])
            }
            Kind::ServerError => (Behaviour::ServerError { times: self.times.unwrap_or(1) }, &["times"]),
            Kind::RateLimited => (
                Behaviour::RateLimited {
                    times: self.times.unwrap_or(1),
                    retry_after: self.retry_after.unwrap_or(secs(1)),
                },
                &["times", "retry_after"],
            ),
            Kind::Slow => {
                let delay = self.delay.ok_or_else(|| format!("{at}: behaviour \"slow\" needs `delay`"))?;
                (Behaviour::Slow { delay, times: self.times }, &["delay", "times"])
            }
            Kind::Reset => (Behaviour::Reset { times: self.times.unwrap_or(1) }, &["times"]),
        };
        if let Some((key, _)) = given.iter().find(|(key, set)| *set && !allowed.contains(key)) {
            return Err(format!("{at}: `{key}` does not apply to behaviour {:?}", self.behaviour));
        }
        Ok((behaviour, Delivery { duplicate: self.duplicate, reorder: self.reorder, redeliver: self.redeliver }))
    }
}

impl TryFrom<File> for Scenarios {
    type Error = String;

    fn try_from(file: File) -> Result<Self, String> {
        let default = match &file.default {
            Some(rule) if rule.address.is_some() || rule.channels.is_some() => {
                return Err("default: `address` and `channels` belong in [[recipient]] rules".to_owned());
            }
            Some(rule) => rule.behaviour("default")?,
            None => (Behaviour::default(), Delivery::default()),
        };
        let mut recipients = Vec::new();
        for (i, rule) in file.recipient.iter().enumerate() {
            let address = rule.address.clone().unwrap_or_default();
            let at = format!("recipient[{i}] ({address:?})");
            if address.trim().is_empty() {
                return Err(format!("recipient[{i}]: `address` is required"));
            }
            for c in rule.channels.iter().flatten() {
                if !CHANNELS.contains(&c.as_str()) {
                    return Err(format!("{at}: unknown channel {c:?}; the sandbox has {}", CHANNELS.join(", ")));
                }
            }
            let (behaviour, delivery) = rule.behaviour(&at)?;
            recipients.push(Recipient { address, channels: rule.channels.clone(), behaviour, delivery });
        }
        Ok(Scenarios { default, recipients })
    }
}

/// A scenario file that cannot be used; the message names the place.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ScenarioError {
    /// The file.
    pub path: String,
    /// What is wrong, and where (line and column for TOML, line for JSON, or the rule).
    pub message: String,
}

impl Scenarios {
    /// Reads a `.toml` or `.json` scenario file.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let error = |message: String| ScenarioError { path: path.display().to_string(), message };
        let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
        let json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let scenarios = if json { Self::from_json(&text) } else { Self::from_toml(&text) };
        scenarios.map_err(error)
    }

    /// Parses TOML; the error says where.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str::<File>(text).map_err(|e| e.to_string())?.try_into()
    }

    /// Parses JSON; the error says where.
    pub fn from_json(text: &str) -> Result<Self, String> {
        serde_json::from_str::<File>(text).map_err(|e| e.to_string())?.try_into()
    }

    /// The behaviour for `address` on `channel`.
    pub fn lookup(&self, channel: &str, address: &str) -> (Behaviour, Delivery) {
        let address = normalize(address);
        let rule = self.recipients.iter().find(|r| {
            normalize(&r.address) == address && r.channels.as_ref().is_none_or(|cs| cs.iter().any(|c| c == channel))
        });
        match rule {
            Some(r) => (r.behaviour.clone(), r.delivery),
            None => self.default.clone(),
        }
    }
}

/// Phone numbers compare without `+`, spaces, dashes or a `whatsapp:` prefix.
fn normalize(address: &str) -> String {
    let a = address.trim();
    let a = a.strip_prefix("whatsapp:").unwrap_or(a);
    a.chars().filter(|c| !matches!(c, '+' | ' ' | '-' | '(' | ')')).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[default]
behaviour = "read"
delivered_after = "500ms"

[[recipient]]
address = "+1 555 010-0001"
channels = ["whatsapp"]
behaviour = "not_on_channel"

[[recipient]]
address = "+15550100001"
behaviour = "reply"
after = "3s"
text = "STOP"
duplicate = true

[[recipient]]
address = "42"
behaviour = "server_error"
times = 2
"#;

    #[test]
    fn rules_match_by_address_and_channel_in_order() {
        let s = Scenarios::from_toml(FILE).expect("valid");
        assert_eq!(s.lookup("whatsapp", "+15550100001").0, Behaviour::NotOnChannel);
        assert_eq!(s.lookup("whatsapp", "whatsapp:+15550100001").0, Behaviour::NotOnChannel);
        let (b, d) = s.lookup("sms", "15550100001");
        assert_eq!(b, Behaviour::Reply { after: Duration::from_secs(3), text: "STOP".into() });
        assert!(d.duplicate && !d.reorder);
        assert_eq!(s.lookup("telegram", "42").0, Behaviour::ServerError { times: 2 });
        assert_eq!(
            s.lookup("viber", "someone-else").0,
            Behaviour::Read { delivered_after: Duration::from_millis(500), read_after: Duration::from_secs(2) }
        );
        assert_eq!(Scenarios::default().lookup("sms", "1").0, Behaviour::Deliver { after: Duration::from_secs(1) });
    }

    #[test]
    fn the_example_file_parses() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios.example.toml");
        let s = Scenarios::load(&path).expect("the documented example is valid");
        assert_eq!(s.recipients.len(), 8);
        assert_eq!(s.lookup("telegram", "700004").0, Behaviour::Blocked);
        assert_eq!(s.lookup("sms", "700004").0, s.default.0);
        assert_eq!(
            s.lookup("sms", "+1 555 010 0005").1,
            Delivery { duplicate: false, reorder: true, redeliver: false }
        );
    }

    #[test]
    fn errors_say_where() {
        let err = Scenarios::from_toml("[[recipient]]\naddress = \"1\"\nbehaviour = \"vanish\"\n").expect_err("bad");
        assert!(err.contains("vanish") && err.contains("line"), "{err}");
        let err =
            Scenarios::from_toml("[[recipient]]\naddress = \"1\"\nchannels = [\"fax\"]\nbehaviour = \"silent\"\n")
                .expect_err("bad channel");
        assert!(err.contains("recipient[0]") && err.contains("fax"), "{err}");
        let err =
            Scenarios::from_json(r#"{"recipient": [{"address": "1", "behaviour": "slow"}]}"#).expect_err("no delay");
        assert!(err.contains("delay"), "{err}");
        let err = Scenarios::from_toml("[[recipient]]\naddress = \"1\"\nbehaviour = \"silent\"\ntimes = 2\n")
            .expect_err("times on silent");
        assert!(err.contains("`times` does not apply"), "{err}");
        let err = Scenarios::from_toml("[[recipient]]\naddress = \"1\"\nbehaviour = \"deliver\"\naftr = \"1s\"\n")
            .expect_err("typo");
        assert!(err.contains("aftr"), "{err}");
    }

    #[test]
    fn resets_and_slow_answers_count_their_sends() {
        let s = Scenarios::from_toml(
            r#"
[[recipient]]
address = "1"
behaviour = "reset"

[[recipient]]
address = "2"
behaviour = "reset"
times = 3

[[recipient]]
address = "3"
behaviour = "slow"
delay = "2s"
times = 1

[[recipient]]
address = "4"
behaviour = "slow"
delay = "500ms"
"#,
        )
        .expect("valid");
        assert_eq!(s.lookup("sms", "1").0, Behaviour::Reset { times: 1 });
        assert_eq!(s.lookup("sms", "2").0, Behaviour::Reset { times: 3 });
        assert_eq!(s.lookup("sms", "3").0, Behaviour::Slow { delay: Duration::from_secs(2), times: Some(1) });
        assert_eq!(s.lookup("sms", "4").0, Behaviour::Slow { delay: Duration::from_millis(500), times: None });
        let err = Scenarios::from_toml("[[recipient]]\naddress = \"1\"\nbehaviour = \"reset\"\ndelay = \"1s\"\n")
            .expect_err("delay on reset");
        assert!(err.contains("`delay` does not apply"), "{err}");
    }
}
