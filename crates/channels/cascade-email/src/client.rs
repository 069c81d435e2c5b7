//! Sending: one SMTP transaction per message, on a pooled connection.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cascade_channel_kit::media::{self, Source};
use cascade_channel_kit::{ConfigError, http};
use cascade_engine::{
    Accepted, AddressKind, Button, Capabilities, Channel, ChannelInfo, Connection, ConnectionId, MediaLimits,
    SendError, SendRequest, Status,
};
use lettre::Address;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, Message, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};

use crate::error::{Stage, classify, without_reply};
use crate::{EmailConfig, Security};

/// The adapter name.
pub const ADAPTER: &str = "smtp";
/// The channel name a connection serves unless its config names another.
pub const DEFAULT_CHANNEL: &str = "email";
/// Idle connections kept for the next message, at most.
const MAX_IDLE: usize = 8;
/// An idle connection older than this is closed rather than reused (servers drop idle clients
/// after about a minute).
const IDLE_FOR: Duration = Duration::from_secs(30);

/// An SMTP account as a cascade [`Channel`]. Email's highest status is `sent`: the server took
/// the message (`250` after `DATA`); nothing reports delivery or reading.
pub struct Email {
    config: EmailConfig,
    info: ChannelInfo,
    from: Mailbox,
    reply_to: Option<Mailbox>,
    hello: ClientId,
    tls: Option<TlsParameters>,
    credentials: Option<Credentials>,
    fetch: reqwest::Client,
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Email").field("config", &self.config).field("info", &self.info).finish_non_exhaustive()
    }
}

/// A message ready to hand over.
struct Outgoing {
    to: Address,
    message_id: String,
    bytes: Vec<u8>,
}

/// Why a transaction failed: a reused connection that turned out dead before the server took
/// anything is retried once on a new one.
enum Failure {
    Stale(SendError),
    Send(SendError),
}

impl Email {
    /// An adapter for one account. Fails, naming the key, on a config that cannot work (including
    /// a `root_certificate` that cannot be read).
    pub fn new(config: EmailConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let (from, reply_to) = config.mailboxes()?;
        let hello = match &config.hello_name {
            Some(name) => ClientId::Domain(name.clone()),
            None => ClientId::default(),
        };
        let tls = match config.security {
            Security::Plain => None,
            Security::Starttls | Security::Tls => Some(tls_parameters(&config)?),
        };
        let credentials = match (&config.username, &config.password) {
            (Some(user), Some(password)) => Some(Credentials::new(user.clone(), password.expose().to_owned())),
            _ => None,
        };
        if config.security == Security::Plain && credentials.is_some() {
            tracing::warn!(host = %config.host, "SMTP credentials will cross the network unencrypted (security = plain)");
        }
        let capabilities = Capabilities {
            address_kinds: vec![AddressKind::Email],
            max_file_size: MediaLimits::all(config.max_attachment_size),
            highest_status: Status::Sent,
            inbound: false,
            buttons: true,
            conversation_window: None,
        };
        let info = ChannelInfo { channel: config.channel.as_str().into(), adapter: ADAPTER.into(), capabilities };
        Ok(Self {
            fetch: http::client(config.timeout),
            info,
            from,
            reply_to,
            hello,
            tls,
            credentials,
            idle: Mutex::new(Vec::new()),
            config,
        })
    }

    /// The engine connection for this account, with its price and rate limit.
    pub fn connection(self: &Arc<Self>, id: impl Into<ConnectionId>) -> Connection {
        cascade_channel_kit::config::connection(self.clone(), id, self.config.price, self.config.rate_limit)
    }

    async fn outgoing(&self, request: &SendRequest) -> Result<Outgoing, SendError> {
        let value = request.address.value.trim();
        let to: Address = value
            .parse()
            .map_err(|e| without_reply("invalid_address", format!("{value:?} is not an email address: {e}")))?;
        let message_id = format!("{}.{}@{}", request.cascade_id, request.attempt, self.from.email.domain());
        let content = &request.content;
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to.clone()))
            .message_id(Some(format!("<{message_id}>")))
            .date_now();
        if let Some(reply_to) = &self.reply_to {
            builder = builder.reply_to(reply_to.clone());
        }
        if let Some(subject) = content.subject.as_deref().filter(|s| !s.trim().is_empty()) {
            builder = builder.subject(subject.trim());
        }
        let text = SinglePart::plain(with_links(&content.text, &content.buttons));
        let body = content.html.as_deref().map(|html| {
            MultiPart::alternative()
                .singlepart(text.clone())
                .singlepart(SinglePart::html(html_with_links(html, &content.buttons)))
        });
        let file = match &content.attachment {
            Some(a) => {
                let source = Source::of(a)?;
                let bytes = media::bytes(&self.fetch, &source, self.config.max_attachment_size).await?;
                let kind = ContentType::parse(&a.media_type).map_err(|_| {
                    SendError::rejected("attachment_type", format!("not a media type: {:?}", a.media_type))
                })?;
                Some(Attachment::new(media::file_name(a)).body(bytes, kind))
            }
            None => None,
        };
        let message = match (body, file) {
            (None, None) => builder.singlepart(text),
            (Some(body), None) => builder.multipart(body),
            (None, Some(file)) => builder.multipart(MultiPart::mixed().singlepart(text).singlepart(file)),
            (Some(body), Some(file)) => builder.multipart(MultiPart::mixed().multipart(body).singlepart(file)),
        }
        .map_err(|e| SendError::rejected("message", format!("the message cannot be built: {e}")))?;
        Ok(Outgoing { to, message_id, bytes: message.formatted() })
    }

    async fn open(&self) -> Result<AsyncSmtpConnection, SendError> {
        let server = (self.config.host.as_str(), self.config.port());
        let implicit = (self.config.security == Security::Tls).then(|| self.tls.clone()).flatten();
        let mut conn =
            AsyncSmtpConnection::connect_tokio1(server, Some(self.config.timeout), &self.hello, implicit, None)
                .await
                .map_err(|e| classify(Stage::Connect, &e))?;
        if self.config.security == Security::Starttls {
            if !conn.can_starttls() {
                conn.abort().await;
                return Err(without_reply("starttls", format!("{} does not offer STARTTLS", self.config.host)));
            }
            let tls = self.tls.clone().expect("starttls has TLS parameters");
            conn.starttls(tls, &self.hello).await.map_err(|e| classify(Stage::Connect, &e))?;
        }
        if let Some(credentials) = &self.credentials
            && let Err(e) = conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials).await
        {
            conn.abort().await;
            return Err(classify(Stage::Auth, &e));
        }
        Ok(conn)
    }

    fn take_idle(&self) -> Option<AsyncSmtpConnection> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((conn, since)) = idle.pop() {
            if since.elapsed() < IDLE_FOR && !conn.has_broken() {
                return Some(conn);
            }
        }
        None
    }

    fn put_idle(&self, conn: AsyncSmtpConnection) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|(_, since)| since.elapsed() < IDLE_FOR);
        if idle.len() < MAX_IDLE {
            idle.push((conn, Instant::now()));
        }
    }

    /// `MAIL FROM`, `RCPT TO`, `DATA`, the message.
    async fn transaction(&self, conn: &mut AsyncSmtpConnection, out: &Outgoing, reused: bool) -> Result<(), Failure> {
        let mut params = Vec::new();
        if !out.to.to_string().is_ascii() || !self.from.email.to_string().is_ascii() {
            if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
                let e = without_reply("smtputf8", format!("{} takes ASCII addresses only", self.config.host));
                return Err(Failure::Send(e));
            }
            params.push(MailParameter::SmtpUtfEight);
        }
        if !out.bytes.is_ascii() && conn.server_info().supports_feature(Extension::EightBitMime) {
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        if let Err(e) = conn.command(Mail::new(Some(self.from.email.clone()), params)).await {
            let error = classify(Stage::Mail, &e);
            // A pooled connection the server closed meanwhile fails here without a reply.
            return Err(if reused && e.status().is_none() { Failure::Stale(error) } else { Failure::Send(error) });
        }
        let step = |stage| move |e| Failure::Send(classify(stage, &e));
        conn.command(Rcpt::new(out.to.clone(), Vec::new())).await.map_err(step(Stage::Rcpt))?;
        conn.command(Data).await.map_err(step(Stage::Data))?;
        conn.message(&out.bytes).await.map_err(step(Stage::Data))?;
        Ok(())
    }

    async fn deliver(&self, out: &Outgoing) -> Result<(), SendError> {
        let mut pooled = self.take_idle();
        loop {
            let reused = pooled.is_some();
            let mut conn = match pooled.take() {
                Some(conn) => conn,
                None => self.open().await?,
            };
            match self.transaction(&mut conn, out, reused).await {
                Ok(()) => {
                    self.put_idle(conn);
                    return Ok(());
                }
                Err(Failure::Stale(e)) => {
                    tracing::debug!(error = %e, "pooled SMTP connection was closed; opening a new one");
                    conn.abort().await;
                }
                Err(Failure::Send(e)) => {
                    conn.abort().await;
                    return Err(e);
                }
            }
        }
    }
}

fn tls_parameters(config: &EmailConfig) -> Result<TlsParameters, ConfigError> {
    let mut builder = TlsParameters::builder(config.host.clone());
    if let Some(path) = &config.root_certificate {
        let pem = std::fs::read(path)
            .map_err(|e| ConfigError::new("root_certificate", format!("cannot read {}: {e}", path.display())))?;
        let cert = Certificate::from_pem(&pem).map_err(|e| {
            ConfigError::new("root_certificate", format!("{} is not a PEM certificate: {e}", path.display()))
        })?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build().map_err(|e| ConfigError::new("security", format!("TLS cannot be set up: {e}")))
}

/// The text body with each button as a `caption: url` line.
fn with_links(text: &str, buttons: &[Button]) -> String {
    let mut out = text.to_owned();
    for (i, b) in buttons.iter().enumerate() {
        out.push_str(if i == 0 && !text.is_empty() { "\n\n" } else { "\n" });
        out.push_str(&format!("{}: {}", b.caption, b.url));
    }
    out
}

/// The HTML body with each button as a link, before `</body>` if there is one.
fn html_with_links(html: &str, buttons: &[Button]) -> String {
    if buttons.is_empty() {
        return html.to_owned();
    }
    let links: String =
        buttons.iter().map(|b| format!("<p><a href=\"{}\">{}</a></p>", escape(&b.url), escape(&b.caption))).collect();
    match html.to_ascii_lowercase().rfind("</body>") {
        Some(at) => format!("{}{links}{}", &html[..at], &html[at..]),
        None => format!("{html}{links}"),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[async_trait]
impl Channel for Email {
    fn info(&self) -> &ChannelInfo {
        &self.info
    }

    async fn send(&self, request: &SendRequest) -> Result<Accepted, SendError> {
        let out = self.outgoing(request).await?;
        match tokio::time::timeout(self.config.timeout, self.deliver(&out)).await {
            Ok(result) => result?,
            Err(_) => {
                let detail = format!("no answer from {} within {:?}", self.config.host, self.config.timeout);
                return Err(SendError::timeout(detail));
            }
        }
        Ok(Accepted::new(out.message_id).with_status(Status::Sent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn button(caption: &str, url: &str) -> Button {
        Button { caption: caption.into(), url: url.into() }
    }

    #[test]
    fn buttons_become_links() {
        let buttons = [button("Track <order>", "https://acme.test/t?a=1&b=2")];
        assert_eq!(with_links("Shipped.", &buttons), "Shipped.\n\nTrack <order>: https://acme.test/t?a=1&b=2");
        assert_eq!(
            html_with_links("<html><body><p>Shipped.</p></BODY></html>", &buttons),
            "<html><body><p>Shipped.</p><p><a href=\"https://acme.test/t?a=1&amp;b=2\">Track &lt;order&gt;</a></p></BODY></html>"
        );
        assert_eq!(html_with_links("<b>x</b>", &[]), "<b>x</b>");
    }
}
