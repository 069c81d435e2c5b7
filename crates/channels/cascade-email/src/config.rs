//! The connection config of one SMTP account.

use std::path::PathBuf;
use std::time::Duration;

use cascade_channel_kit::{ConfigError, Secret, config};
use cascade_engine::{Cost, RateLimit};
use lettre::message::Mailbox;
use serde::Deserialize;

/// The largest attachment by default: 25 MB, what the large mailbox providers accept.
pub const DEFAULT_MAX_ATTACHMENT: u64 = 25_000_000;

/// How the connection to the SMTP server is protected.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Security {
    /// Plain connection upgraded with `STARTTLS`, which the server must offer (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte, "SMTPS" (port 465).
    Tls,
    /// No encryption (port 25): a relay on the same host or a trusted network only.
    Plain,
}

impl Security {
    /// The usual port for this mode.
    pub fn default_port(self) -> u16 {
        match self {
            Security::Starttls => 587,
            Security::Tls => 465,
            Security::Plain => 25,
        }
    }
}

/// One SMTP account, as configured (TOML/JSON). `host` and `from` are required.
///
/// ```
/// let config: cascade_email::EmailConfig = serde_json::from_str(r#"{
///     "host": "smtp.example.com", "username": "news@acme.test", "password": "app-password-1",
///     "from": "Acme <news@acme.test>", "reply_to": "support@acme.test"
/// }"#).unwrap();
/// assert_eq!(config.port(), 587);
/// assert!(!format!("{config:?}").contains("app-password-1"));
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// The SMTP server's host name (also the name its certificate must carry).
    pub host: String,
    /// The port (default: 587 for `starttls`, 465 for `tls`, 25 for `plain`).
    #[serde(default)]
    pub port: Option<u16>,
    /// `starttls` (default), `tls` or `plain`.
    #[serde(default)]
    pub security: Security,
    /// The login, when the server wants one (with `password`).
    #[serde(default)]
    pub username: Option<String>,
    /// The password (or app password / API key).
    #[serde(default)]
    pub password: Option<Secret>,
    /// The sender, as `Name <address>` or a bare address.
    pub from: String,
    /// Where replies go, if not to `from`.
    #[serde(default)]
    pub reply_to: Option<String>,
    /// The name given in `EHLO` (default: this machine's host name).
    #[serde(default)]
    pub hello_name: Option<String>,
    /// A PEM file with a further root certificate to trust (a private CA of an in-house relay).
    #[serde(default)]
    pub root_certificate: Option<PathBuf>,
    /// The largest attachment, in bytes (default 25 MB).
    #[serde(default = "default_max_attachment")]
    pub max_attachment_size: u64,
    /// The channel name steps use (default `email`).
    #[serde(default = "default_channel")]
    pub channel: String,
    /// The price of one message.
    #[serde(default)]
    pub price: Option<Cost>,
    /// At most this many sends.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// The limit for one whole send (connect, hand-over, the server's answer).
    #[serde(default = "config::default_timeout", with = "cascade_engine::model::duration")]
    pub timeout: Duration,
}

fn default_max_attachment() -> u64 {
    DEFAULT_MAX_ATTACHMENT
}

fn default_channel() -> String {
    crate::DEFAULT_CHANNEL.to_owned()
}

impl EmailConfig {
    /// A config with the required settings and the defaults.
    pub fn new(host: impl Into<String>, from: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            port: None,
            security: Security::default(),
            username: None,
            password: None,
            from: from.into(),
            reply_to: None,
            hello_name: None,
            root_certificate: None,
            max_attachment_size: DEFAULT_MAX_ATTACHMENT,
            channel: default_channel(),
            price: None,
            rate_limit: None,
            timeout: config::default_timeout(),
        }
    }

    /// The port to connect to.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or_else(|| self.security.default_port())
    }

    /// Checks the settings; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        config::required("host", &self.host)?;
        if self.host.contains([':', '/', ' ']) {
            return Err(ConfigError::new("host", "a host name only; give the port as `port`"));
        }
        if self.port == Some(0) {
            return Err(ConfigError::new("port", "must be 1 to 65535"));
        }
        self.mailboxes()?;
        match (&self.username, &self.password) {
            (Some(user), Some(_)) if user.trim().is_empty() => Err(ConfigError::new("username", "is empty")),
            (Some(_), None) => Err(ConfigError::new("password", "is required with username")),
            (None, Some(_)) => Err(ConfigError::new("username", "is required with password")),
            _ => config::required("channel", &self.channel),
        }
    }

    /// `from` and `reply_to`, parsed.
    pub(crate) fn mailboxes(&self) -> Result<(Mailbox, Option<Mailbox>), ConfigError> {
        let parse = |key: &str, value: &str| {
            value
                .trim()
                .parse::<Mailbox>()
                .map_err(|e| ConfigError::new(key, format!("{value:?} is not a mailbox: {e}")))
        };
        let from = parse("from", &self.from)?;
        let reply_to = self.reply_to.as_deref().map(|r| parse("reply_to", r)).transpose()?;
        Ok((from, reply_to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_key() {
        let bad = |f: fn(&mut EmailConfig)| {
            let mut c = EmailConfig::new("smtp.example.com", "news@acme.test");
            f(&mut c);
            c.validate().expect_err("invalid").key
        };
        assert_eq!(bad(|c| c.from = "not an address".into()), "from");
        assert_eq!(bad(|c| c.reply_to = Some("a@".into())), "reply_to");
        assert_eq!(bad(|c| c.host = "smtp.example.com:587".into()), "host");
        assert_eq!(bad(|c| c.username = Some("u".into())), "password");
        assert_eq!(bad(|c| c.password = Some("p".into())), "username");
        assert_eq!(bad(|c| c.port = Some(0)), "port");
    }

    #[test]
    fn ports_follow_the_security_mode() {
        let mut c = EmailConfig::new("smtp.example.com", "news@acme.test");
        assert_eq!(c.port(), 587);
        c.security = Security::Tls;
        assert_eq!(c.port(), 465);
        c.port = Some(2525);
        assert_eq!(c.port(), 2525);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = serde_json::from_str::<EmailConfig>(r#"{"host": "h", "from": "a@b.test", "tls": true}"#)
            .expect_err("unknown key");
        assert!(err.to_string().contains("tls"), "{err}");
    }
}
