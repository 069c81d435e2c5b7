//! # cascade-sandbox
//!
//! Wire-compatible local emulators of the providers cascade's adapters talk to — WhatsApp Cloud
//! API, Telegram Bot API, Twilio Messaging, Viber REST Bot API and the MAX bot API — so that
//! the real adapters send real HTTP to something that answers, fails and reports the way the
//! providers do, without accounts anywhere.
//!
//! - Each provider lives under its own prefix (`/whatsapp`, `/telegram`, `/twilio`, `/viber`,
//!   `/max`): point an adapter's `base_url` there ([`Sandbox::base_url`]). Auth is checked as
//!   the provider checks it, and answers use the provider's success and error bodies. The
//!   wire types here are the sandbox's own, written from the providers' documentation: this
//!   crate does not use the adapter crates, so tests of one against the other are not tests of
//!   code against itself.
//! - What happens to each recipient comes from [`Scenarios`] (a TOML or JSON file): delivered,
//!   read, replies, silent, not on the channel, blocked, fails later, server errors, rate limits,
//!   slow answers, connections reset without an answer. Unlisted recipients are delivered after
//!   a second.
//! - Status reports and replies go to each provider's webhook URL, signed with the provider's
//!   real scheme, optionally duplicated or reordered.
//! - Every request is logged: `GET /_sandbox/requests` (and `/_sandbox/webhooks` for what the
//!   sandbox sent), for tests that assert "sent exactly once".
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let sandbox = cascade_sandbox::Sandbox::start(cascade_sandbox::SandboxConfig::default()).await?;
//! println!("Telegram base_url: {}", sandbox.base_url("telegram"));
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod config;
mod duration;
mod listener;
mod providers;
pub mod scenario;
mod sign;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State as AxumState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

pub use config::*;
pub use scenario::{Behaviour, Delivery, Scenarios};
pub use state::{Recorded, SentWebhook, State};

/// The largest request body the sandbox reads (uploads included).
const MAX_BODY: usize = 120 << 20;

/// The router, for embedding the sandbox in another server or test.
pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .merge(providers::whatsapp::routes())
        .merge(providers::telegram::routes())
        .merge(providers::twilio::routes())
        .merge(providers::viber::routes())
        .merge(providers::max::routes())
        .layer(middleware::from_fn_with_state(state.clone(), record))
        .route("/_sandbox/requests", get(requests).delete(clear))
        .route("/_sandbox/webhooks", get(webhooks))
        .route("/_sandbox/inbound", axum::routing::post(inbound))
        .with_state(state)
}

async fn requests(AxumState(state): AxumState<Arc<State>>) -> Response {
    axum::Json(state.requests()).into_response()
}

async fn webhooks(AxumState(state): AxumState<Arc<State>>) -> Response {
    axum::Json(state.webhooks()).into_response()
}

/// `POST /_sandbox/inbound`: a contact writes to us.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct InboundRequest {
    channel: String,
    from: String,
    text: String,
    #[serde(default)]
    to: Option<String>,
}

async fn inbound(AxumState(state): AxumState<Arc<State>>, body: Bytes) -> Response {
    let request: InboundRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let hint = r#"send {"channel": "whatsapp", "from": "+15550100001", "text": "Hi"}"#;
            return (StatusCode::UNPROCESSABLE_ENTITY, format!("{e}; {hint}")).into_response();
        }
    };
    match send_inbound(&state, &request.channel, &request.from, request.to.as_deref(), &request.text).await {
        Ok(status) => axum::Json(json!({"webhook_status": status})).into_response(),
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, e).into_response(),
    }
}

async fn send_inbound(state: &State, channel: &str, from: &str, to: Option<&str>, text: &str) -> Result<u16, String> {
    let (provider, hook) = providers::inbound_hook(state, channel, from, to, text)?;
    state
        .post(provider, &hook)
        .await
        .ok_or_else(|| format!("the {channel} webhook could not be delivered to {}", hook.url))
}

async fn clear(AxumState(state): AxumState<Arc<State>>) -> StatusCode {
    state.clear();
    StatusCode::NO_CONTENT
}

/// Set by handlers on their response: whom the request was for.
#[derive(Clone, Debug)]
pub(crate) struct RecipientTag(pub String);

/// Set by handlers on a send they accepted: the provider message id it got.
#[derive(Clone, Debug)]
pub(crate) struct MessageTag(pub String);

/// Set by handlers on a send that gets no answer: its connection is reset instead.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ResetTag;

/// Logs every provider request with the status it got.
///
/// The handler runs on a task of its own, so that a request whose client hangs up before the
/// answer (a client timeout) is carried through all the same, as at a provider that already
/// has it, and logged as abandoned. The log entry is written before the answer goes out. A
/// handler that asks for a reset gets its connection reset instead of an answer, when the
/// sandbox serves the connection itself ([`Sandbox::start`]).
async fn record(AxumState(state): AxumState<Arc<State>>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large for the sandbox").into_response();
    };
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    let method = parts.method.to_string();
    let described = describe(&parts.headers, &bytes);
    let provider = match path.trim_start_matches('/').split('/').next().unwrap_or_default() {
        "twilio" => "sms".to_owned(),
        p @ ("whatsapp" | "telegram" | "viber" | "max") => p.to_owned(),
        _ => "sandbox".to_owned(),
    };
    let connection = parts.extensions.get::<ConnectInfo<listener::Connection>>().map(|c| c.0.clone());
    let at = state::now_rfc3339();
    let (answer, answered) = tokio::sync::oneshot::channel::<Response>();
    tokio::spawn(async move {
        let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
        let reset = match &connection {
            Some(connection) if response.extensions().get::<ResetTag>().is_some() => {
                connection.reset();
                true
            }
            _ => false,
        };
        let seq = state.record(Recorded {
            seq: 0,
            at,
            provider,
            method,
            path,
            query,
            body: described,
            recipient: response.extensions().get::<RecipientTag>().map(|t| t.0.clone()),
            status: if reset { 0 } else { response.status().as_u16() },
            message_id: response.extensions().get::<MessageTag>().map(|t| t.0.clone()),
            reset,
            // A reset drops the request on the sandbox's side too: that is not its client
            // giving up.
            abandoned: !reset && answer.is_closed(),
        });
        if answer.send(response).is_err() && !reset {
            state.mark_abandoned(seq);
        }
    });
    answered
        .await
        .unwrap_or_else(|_| (StatusCode::INTERNAL_SERVER_ERROR, "the sandbox failed on this request").into_response())
}

/// A body for the log: JSON as is, forms as objects (repeated keys as arrays), the rest named.
fn describe(headers: &HeaderMap, body: &Bytes) -> Value {
    let kind = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if body.is_empty() {
        return Value::Null;
    }
    if kind.starts_with("application/json") {
        return serde_json::from_slice(body).unwrap_or_else(|_| json!(String::from_utf8_lossy(body)));
    }
    if kind.starts_with("application/x-www-form-urlencoded") {
        return providers::form_json(body);
    }
    json!(format!("{} ({} bytes)", kind.split(';').next().unwrap_or("body"), body.len()))
}

/// A running sandbox; stops when dropped or [`stop`](Sandbox::stop)ped.
#[derive(Debug)]
pub struct Sandbox {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sandbox {
    /// Binds `config.listen` and serves until stopped.
    pub async fn start(config: SandboxConfig) -> std::io::Result<Sandbox> {
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::new(config));
        let app = router(state.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let app = app.into_make_service_with_connect_info::<listener::Connection>();
            let serve = axum::serve(listener::Listener(listener), app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "the sandbox stopped");
            }
        });
        Ok(Sandbox { addr, state, stop: Some(stop), task })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `base_url` to give an adapter for `provider` (`whatsapp`, `telegram`, `sms` or
    /// `twilio`, `viber`, `max`).
    pub fn base_url(&self, provider: &str) -> String {
        match provider {
            "sms" | "twilio" => format!("{}/twilio", self.url()),
            "viber" => format!("{}/viber/pa", self.url()),
            other => format!("{}/{other}", self.url()),
        }
    }

    /// The shared state: logs, scenarios.
    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests()
    }

    /// Every webhook sent so far.
    pub fn webhooks(&self) -> Vec<SentWebhook> {
        self.state.webhooks()
    }

    /// Makes the contact at `from` write `text` to us on `channel` (`whatsapp`, `telegram`,
    /// `sms`, `viber`, `max`): the provider's inbound-message webhook is sent now, signed, and
    /// the status it was answered with returned. The same as `POST /_sandbox/inbound`.
    pub async fn inbound(&self, channel: &str, from: &str, text: &str) -> Result<u16, String> {
        send_inbound(&self.state, channel, from, None, text).await
    }

    /// Stops serving and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
