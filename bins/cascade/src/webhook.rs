//! `cascade webhook parse`: an adapter's own webhook intake over a saved payload.
//!
//! For people debugging a provider integration: the body is read raw from a file or stdin,
//! the signature is checked with the adapter's own verification when `--secret` is given, and
//! the adapter's own parser turns the payload into statuses and inbound messages, printed as
//! one JSON object per line (in both output modes):
//!
//! ```text
//! {"type":"status","provider_message_id":"wamid.A","status":"failed","at":"2026-01-31T10:00:00Z","error":{"code":"131026","class":"unreachable","detail":"..."}}
//! {"type":"inbound","from":"+447700900123","text":"Hi","at":null}
//! ```
//!
//! Exit codes: 0 parsed, 2 bad arguments or a payload the adapter cannot parse, 3 a missing
//! or wrong signature, 5 a file that cannot be read.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use cascade_channel_kit::webhook::CASCADE_SIGNATURE_HEADER;
use cascade_channel_kit::{ConfigError, Intake, WebhookError, WebhookEvent, WebhookRequest};
use cascade_engine::{InboundMessage, StatusUpdate, Timestamp};
use chrono::SecondsFormat;
use clap::{Args, Subcommand, ValueEnum};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use serde_json::json;

use crate::exit::{self, Failure};
use crate::out::Out;

const PARSE_HELP: &str = "\
Adapters, with the secret and the header each one's signature needs:
  whatsapp  --secret APP_SECRET    --header 'X-Hub-Signature-256: sha256=<hex>'
  telegram  --secret SECRET_TOKEN  --header 'X-Telegram-Bot-Api-Secret-Token: <token>'
  twilio    --secret AUTH_TOKEN    --header 'X-Twilio-Signature: <base64>'  --url <the URL Twilio called>
  viber     --secret AUTH_TOKEN    --header 'X-Viber-Content-Signature: <hex>'
  max       --secret SECRET        --header 'X-Max-Bot-Api-Secret: <secret>'
  webhook   --secret SECRET        --header 'X-Cascade-Signature: t=<unix time>,v1=<hex>'
Without --secret nothing is verified: the payload is only parsed.

Output (the same with and without --json), one line per status or inbound message, in the
payload's order; other events (a Viber `subscribed`, a Telegram `edited_message`...) are skipped:
  {\"type\":\"status\",\"provider_message_id\":\"...\",\"status\":\"delivered\",\"at\":\"2026-01-31T10:00:00Z\"}
  {\"type\":\"status\",...,\"status\":\"failed\",...,\"error\":{\"code\":\"...\",\"class\":\"unreachable\",\"detail\":\"...\"}}
  {\"type\":\"inbound\",\"from\":\"+447700900123\",\"text\":\"Hi\",\"at\":null}

Exit codes: 0 parsed; 2 bad arguments or a payload the adapter cannot parse; 3 the signature is
missing or does not match; 5 the file cannot be read.

Examples:
  cascade webhook parse --adapter viber callback.json
  cascade webhook parse --adapter whatsapp --secret \"$APP_SECRET\" \\
      --header 'X-Hub-Signature-256: sha256=1f0c...' notification.json
  cascade webhook parse --adapter twilio --secret \"$TWILIO_AUTH_TOKEN\" \\
      --url 'https://cascade.example.com/webhooks/sms-us' \\
      --header 'X-Twilio-Signature: 0B4/7hbRKp3...' - < status-callback.txt";

/// `cascade webhook ...`
#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Verify and parse a saved provider webhook with the adapter's own intake.
    ///
    /// Reads the raw body from FILE or stdin, checks its signature when `--secret` is given,
    /// and prints one JSON line per status or inbound message it carries.
    #[command(after_help = PARSE_HELP)]
    Parse(ParseArgs),
}

/// The arguments of `cascade webhook parse`.
#[derive(Debug, Args)]
pub struct ParseArgs {
    /// The adapter whose intake reads the payload.
    #[arg(long, value_enum)]
    pub adapter: Adapter,
    /// A request header as received, `'Name: value'` (repeatable): the signature header.
    #[arg(long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The full URL the provider called, query string included (Twilio signs it).
    #[arg(long)]
    pub url: Option<String>,
    /// Verify the signature with this secret first (the app secret, auth token or webhook
    /// secret of the connection; see below). Without it the payload is only parsed.
    #[arg(long)]
    pub secret: Option<String>,
    /// The raw body, as the provider sent it; `-` or nothing: stdin.
    #[arg(value_name = "FILE|-")]
    pub file: Option<PathBuf>,
}

/// The adapters whose webhooks can be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Adapter {
    /// WhatsApp Cloud API notifications (JSON).
    Whatsapp,
    /// Telegram bot `Update`s (JSON).
    Telegram,
    /// Twilio status callbacks and incoming messages (form-encoded).
    Twilio,
    /// Viber bot callbacks (JSON).
    Viber,
    /// MAX bot updates (JSON).
    Max,
    /// The generic webhook channel's reports (JSON).
    Webhook,
}

impl Adapter {
    /// The name used on the command line.
    fn name(self) -> &'static str {
        match self {
            Adapter::Whatsapp => "whatsapp",
            Adapter::Telegram => "telegram",
            Adapter::Twilio => "twilio",
            Adapter::Viber => "viber",
            Adapter::Max => "max",
            Adapter::Webhook => "webhook",
        }
    }

    /// The header the provider authenticates its calls with.
    fn signature_header(self) -> &'static str {
        match self {
            Adapter::Whatsapp => cascade_whatsapp::webhook::SIGNATURE_HEADER,
            Adapter::Telegram => cascade_telegram::webhook::SECRET_HEADER,
            Adapter::Twilio => cascade_sms_twilio::webhook::SIGNATURE_HEADER,
            Adapter::Viber => cascade_viber::webhook::SIGNATURE_HEADER,
            Adapter::Max => cascade_max::webhook::SECRET_HEADER,
            Adapter::Webhook => CASCADE_SIGNATURE_HEADER,
        }
    }

    /// What `--secret` is for this adapter, for messages.
    fn secret_name(self) -> &'static str {
        match self {
            Adapter::Whatsapp => "the app secret",
            Adapter::Telegram => "the webhook secret token given to setWebhook",
            Adapter::Twilio => "the account's auth token",
            Adapter::Viber => "the bot's auth token",
            Adapter::Max => "the subscription's secret",
            Adapter::Webhook => "the channel's shared secret",
        }
    }

    /// Parses the body without verifying anything: the same parser the intake runs after its
    /// signature check.
    fn parse(self, request: &WebhookRequest<'_>) -> Result<Vec<WebhookEvent>, WebhookError> {
        match self {
            Adapter::Whatsapp => cascade_whatsapp::webhook::parse_notification(request.body, None),
            Adapter::Telegram => cascade_telegram::webhook::parse_update(request.body),
            Adapter::Twilio => cascade_sms_twilio::webhook::parse_callback(&request.form()),
            Adapter::Viber => cascade_viber::webhook::parse_callback(request.body),
            Adapter::Max => cascade_max::webhook::parse_update(request.body),
            Adapter::Webhook => cascade_webhook::webhook::parse_report(request.body),
        }
    }

    /// Verifies the request with `secret`, then parses it: the adapter's own intake, built from
    /// a connection config holding only that secret.
    fn receive(self, secret: &str, request: &WebhookRequest<'_>, source: &str) -> Result<Vec<WebhookEvent>, Failure> {
        let bad_secret = |e: ConfigError| {
            Failure::invalid(format!("{}: --secret cannot be {}: {}", self.name(), self.secret_name(), e.message))
        };
        let received = match self {
            Adapter::Whatsapp => {
                let mut config = cascade_whatsapp::WhatsAppConfig::new("unused", "0");
                config.app_secret = Some(secret.into());
                let whatsapp = cascade_whatsapp::WhatsApp::new(config).map_err(bad_secret)?;
                // The intake keeps only the changes for its connection's phone number id; here
                // every number's changes are shown, so the check and the parse run apart.
                whatsapp.verify(request).and_then(|()| self.parse(request))
            }
            Adapter::Telegram => {
                let mut config = cascade_telegram::TelegramConfig::new("0:unused");
                config.webhook_secret = Some(secret.into());
                cascade_telegram::Telegram::new(config).map_err(bad_secret)?.receive(request)
            }
            Adapter::Twilio => {
                let config =
                    cascade_sms_twilio::TwilioConfig::new("AC00000000000000000000000000000000", secret, "+10000000000");
                cascade_sms_twilio::Twilio::new(config).map_err(bad_secret)?.receive(request)
            }
            Adapter::Viber => {
                let config = cascade_viber::ViberConfig::new(secret, "cascade");
                cascade_viber::Viber::new(config).map_err(bad_secret)?.receive(request)
            }
            Adapter::Max => {
                let mut config = cascade_max::MaxConfig::new("unused");
                config.webhook_secret = Some(secret.into());
                cascade_max::Max::new(config).map_err(bad_secret)?.receive(request)
            }
            Adapter::Webhook => {
                let config = cascade_webhook::WebhookConfig::new("webhook", "http://127.0.0.1/", secret);
                cascade_webhook::Webhook::new(config).map_err(bad_secret)?.receive(request)
            }
        };
        received.map_err(|e| self.refusal(e, request, source))
    }

    /// The failure for an error of the intake over the body read from `source`: exit 3 for the
    /// signature, 2 for the rest.
    fn refusal(self, error: WebhookError, request: &WebhookRequest<'_>, source: &str) -> Failure {
        let header = self.signature_header();
        let (code, reason, message) = match &error {
            WebhookError::MissingSignature { header } => (
                exit::SIGNATURE,
                "missing_signature",
                format!(
                    "the {header} header is missing: give it as received with --header '{header}: ...' \
                     (or leave out --secret to parse without verifying)"
                ),
            ),
            WebhookError::BadSignature => {
                (exit::SIGNATURE, "bad_signature", format!("{} does not match: {}", header, self.mismatch_hint()))
            }
            WebhookError::Stale => (exit::SIGNATURE, "stale_signature", stale_message(request)),
            e if e.is_auth() => (exit::SIGNATURE, "bad_signature", e.to_string()),
            WebhookError::Malformed(what) => (exit::INVALID, "malformed", format!("cannot parse {source}: {what}")),
            e => (exit::INVALID, "refused", e.to_string()),
        };
        Failure::new(code, format!("{}: {message}", self.name())).with_detail(json!({
            "adapter": self.name(),
            "reason": reason,
            "header": header,
        }))
    }

    /// Why a signature may not match, for this adapter.
    fn mismatch_hint(self) -> &'static str {
        match self {
            Adapter::Whatsapp => {
                "expected 'sha256=' and the hex HMAC-SHA256 of the raw body keyed with the app secret \
                 (is --secret the app secret, and the body byte for byte as received?)"
            }
            Adapter::Telegram | Adapter::Max => "the header's value is not the secret given with --secret",
            Adapter::Twilio => {
                "expected the base64 HMAC-SHA1, keyed with the auth token, of the URL followed by the \
                 form parameters sorted by name (is --url exactly the URL Twilio called, scheme, host, \
                 path and query string, and --secret the account's primary auth token?)"
            }
            Adapter::Viber => {
                "expected the hex HMAC-SHA256 of the raw body keyed with the bot's auth token \
                 (is the body byte for byte as received?)"
            }
            Adapter::Webhook => {
                "expected 't=<unix time>,v1=<hex HMAC-SHA256 of \"<t>.<body>\" keyed with the secret>' \
                 (is the body byte for byte as received?)"
            }
        }
    }
}

/// The message for a cascade signature whose timestamp is outside the accepted window.
fn stale_message(request: &WebhookRequest<'_>) -> String {
    let t = request.header(CASCADE_SIGNATURE_HEADER).and_then(|h| {
        h.split(',').find_map(|p| p.trim().strip_prefix("t=")).and_then(|t| t.trim().parse::<i64>().ok())
    });
    let window = cascade_channel_kit::webhook::SIGNATURE_TOLERANCE.as_secs();
    match t {
        Some(t) => format!(
            "{CASCADE_SIGNATURE_HEADER} matches, but its timestamp t={t} is {} s from now (at most {window} s \
             are accepted): the server would refuse it as a replay",
            chrono::Utc::now().timestamp().abs_diff(t)
        ),
        None => format!("the {CASCADE_SIGNATURE_HEADER} timestamp is more than {window} s from now"),
    }
}

/// `Name: value` as a header.
fn parse_header(arg: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = arg
        .split_once(':')
        .ok_or_else(|| "expected 'Name: value', e.g. 'X-Viber-Content-Signature: 9a1c...'".to_owned())?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("{:?} is not a header name", name.trim()))?;
    let value =
        HeaderValue::from_str(value.trim()).map_err(|_| format!("the value of {name} is not a valid header value"))?;
    Ok((name, value))
}

/// One line of output.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Item<'a> {
    Status {
        provider_message_id: &'a str,
        status: &'static str,
        at: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<ItemError<'a>>,
    },
    Inbound {
        from: &'a str,
        text: Option<&'a str>,
        at: Option<String>,
    },
}

/// The classified error of a failed status.
#[derive(Debug, Serialize)]
struct ItemError<'a> {
    code: &'a str,
    class: &'static str,
    detail: &'a str,
}

fn rfc3339(at: Option<&Timestamp>) -> Option<String> {
    at.map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

impl<'a> Item<'a> {
    fn of(event: &'a WebhookEvent) -> Self {
        match event {
            WebhookEvent::Status(StatusUpdate { provider_message_id, status, at, error }) => Item::Status {
                provider_message_id,
                status: status.as_str(),
                at: rfc3339(at.as_ref()),
                error: error.as_ref().map(|e| ItemError { code: &e.code, class: e.class.as_str(), detail: &e.detail }),
            },
            WebhookEvent::Inbound(InboundMessage { from, text, at }) => {
                Item::Inbound { from, text: text.as_deref(), at: rfc3339(at.as_ref()) }
            }
        }
    }
}

/// Runs a webhook command.
pub fn run(_out: &Out, command: WebhookCommand) -> Result<u8, Failure> {
    let WebhookCommand::Parse(args) = command;
    parse(args)
}

/// `cascade webhook parse`.
fn parse(args: ParseArgs) -> Result<u8, Failure> {
    let adapter = args.adapter;
    if args.secret.as_deref().is_some_and(str::is_empty) {
        return Err(Failure::invalid("--secret must not be empty (leave it out to parse without verifying)"));
    }
    if let Some(url) = &args.url {
        url::Url::parse(url).map_err(|e| Failure::invalid(format!("--url is not a URL ({e}): {url:?}")))?;
    }
    if adapter == Adapter::Twilio && args.secret.is_some() && args.url.is_none() {
        return Err(Failure::invalid(
            "twilio: --url is needed with --secret: Twilio signs the full URL it called (scheme, host, path \
             and query string) with the form parameters",
        ));
    }
    let (source, body) = read_body(args.file.as_ref())?;
    let mut headers = HeaderMap::new();
    for (name, value) in args.headers {
        headers.append(name, value);
    }
    let url = args.url.as_deref().unwrap_or("http://127.0.0.1/");
    let request = WebhookRequest::post(url, &headers, &body);
    let events = match &args.secret {
        Some(secret) => adapter.receive(secret, &request, &source)?,
        None => adapter.parse(&request).map_err(|e| adapter.refusal(e, &request, &source))?,
    };
    let mut stdout = std::io::stdout().lock();
    for event in events {
        let line = serde_json::to_string(&Item::of(&event)).expect("items serialize");
        if let Err(e) = writeln!(stdout, "{line}") {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(exit::OK);
            }
            return Err(Failure::io(format!("cannot write to stdout: {e}")));
        }
    }
    stdout.flush().map_err(|e| Failure::io(format!("cannot write to stdout: {e}")))?;
    Ok(exit::OK)
}

/// The raw body from `file`, or from stdin for `-` or no file: where it came from, and its bytes.
fn read_body(file: Option<&PathBuf>) -> Result<(String, Vec<u8>), Failure> {
    match file {
        Some(path) if path.as_os_str() != "-" => match std::fs::read(path) {
            Ok(body) => Ok((path.display().to_string(), body)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Failure::invalid(format!("{}: no such file", path.display())))
            }
            Err(e) => Err(Failure::io(format!("cannot read {}: {e}", path.display()))),
        },
        stdin => {
            let mut input = std::io::stdin().lock();
            if stdin.is_none() && input.is_terminal() {
                return Err(Failure::invalid("no payload: give a FILE, or `-` and the body on stdin"));
            }
            let mut body = Vec::new();
            input.read_to_end(&mut body).map_err(|e| Failure::io(format!("cannot read stdin: {e}")))?;
            Ok(("stdin".to_owned(), body))
        }
    }
}
