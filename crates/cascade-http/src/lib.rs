//! # cascade-http
//!
//! cascade's HTTP server as an [axum] router you can run on its own (`cascade-server`) or mount
//! in your own service: the JSON API under `/v1` (start, read, list, cancel and watch
//! cascades; create, watch, pause, resume, cancel and export campaigns; list, read, save and
//! delete named policies ([`policies`]); upload files), provider webhooks at
//! `/webhooks/{connection_id}`, signed file links
//! at `/files/{id}`, link redirects at `/l/{token}`, the Kommo SalesBot endpoint, `/healthz`,
//! `/readyz`, `/metrics`, and the OpenAPI document at `/v1/openapi.json`. Errors are
//! `application/problem+json`. Background work (callback delivery, metrics, the campaign
//! runner, reading stored policies, resuming held Kommo requests) runs in
//! [`App::spawn_workers`]; [`App::serve`] runs it all and stops in order.
//!
//! ```no_run
//! # async fn demo(engine: cascade_engine::Engine) -> std::io::Result<()> {
//! use std::time::Duration;
//! use cascade_http::{App, auth::{ApiKey, Scope}};
//!
//! let app = App::builder(engine)
//!     .public_url("https://cascade.example.com".parse().unwrap())
//!     .secret(b"a long random secret of 32 bytes or more".to_vec())
//!     .api_key(ApiKey::from_plain("crm", "ck_live_secret", [Scope::Send, Scope::Read]))
//!     .build();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! // Until Ctrl-C or SIGTERM; then the sends in flight get 10 s to finish.
//! app.serve(listener, cascade_http::shutdown_signal(), Duration::from_secs(10)).await?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod activity;
pub mod api;
pub mod auth;
pub mod callbacks;
pub mod campaigns;
pub mod connections;
pub mod console;
pub mod kommo;
pub mod limits;
pub mod metrics;
pub mod net;
pub mod openapi;
pub mod ops;
pub mod policies;
pub mod problem;
pub mod redirect;
mod serve;
pub mod uploads;
pub mod webhooks;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use cascade_campaigns::{Campaigns, CampaignsConfig};
use cascade_channel_kit::webhook::Intake;
use cascade_engine::{ConnectionId, Engine, Policy};

use crate::auth::{ApiKey, ApiKeys};
use crate::callbacks::CallbackSettings;
use crate::metrics::Metrics;
use crate::net::UrlPolicy;
use crate::policies::PolicyCatalog;
use crate::uploads::Uploads;

pub use crate::problem::{Problem, ProblemKind};

/// The largest JSON body accepted by default (1 MiB).
pub const DEFAULT_MAX_BODY: usize = 1 << 20;
/// The largest upload accepted by default: 100 MB (100,000,000 bytes), the engine's default
/// attachment limit ([`cascade_engine::plan::DEFAULT_MAX_FILE_SIZE`]).
pub const DEFAULT_MAX_UPLOAD: u64 = cascade_engine::plan::DEFAULT_MAX_FILE_SIZE;

/// The server: an engine and everything the HTTP side needs. Cheap to clone.
#[derive(Clone, Debug)]
pub struct App {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) engine: Engine,
    pub(crate) policies: PolicyCatalog,
    pub(crate) intakes: HashMap<ConnectionId, Arc<dyn Intake>>,
    pub(crate) keys: ApiKeys,
    pub(crate) public_url: url::Url,
    pub(crate) uploads: Option<Uploads>,
    pub(crate) url_policy: UrlPolicy,
    pub(crate) max_body: usize,
    pub(crate) header_timeout: Duration,
    pub(crate) body_timeout: Duration,
    pub(crate) upload_timeout: Duration,
    pub(crate) link_ttl: Duration,
    pub(crate) callbacks: CallbackSettings,
    pub(crate) metrics: Metrics,
    /// What each connection did lately, as this instance saw it (the Connections page).
    pub(crate) activity: activity::Activity,
    pub(crate) kommo: Option<Arc<cascade_kommo::Kommo>>,
    pub(crate) campaigns: Campaigns,
    /// Signs the console's form tokens (the builder's secret).
    pub(crate) secret: Vec<u8>,
    pub(crate) shutdown: tokio::sync::watch::Sender<bool>,
}

/// Builds an [`App`].
#[derive(Debug)]
pub struct AppBuilder {
    engine: Engine,
    policies: HashMap<String, Arc<Policy>>,
    intakes: HashMap<ConnectionId, Arc<dyn Intake>>,
    keys: ApiKeys,
    public_url: url::Url,
    secret: Vec<u8>,
    upload_dir: Option<std::path::PathBuf>,
    max_upload: u64,
    url_policy: UrlPolicy,
    max_body: usize,
    header_timeout: Duration,
    body_timeout: Duration,
    upload_timeout: Duration,
    link_ttl: Duration,
    callbacks: CallbackSettings,
    kommo: Option<Arc<cascade_kommo::Kommo>>,
    campaigns: CampaignsConfig,
}

impl App {
    /// Starts building a server around `engine`.
    pub fn builder(engine: Engine) -> AppBuilder {
        AppBuilder {
            engine,
            policies: HashMap::new(),
            intakes: HashMap::new(),
            keys: ApiKeys::default(),
            public_url: url::Url::parse("http://127.0.0.1:8080/").unwrap_or_else(|_| unreachable!()),
            secret: Vec::new(),
            upload_dir: None,
            max_upload: DEFAULT_MAX_UPLOAD,
            url_policy: UrlPolicy::default(),
            max_body: DEFAULT_MAX_BODY,
            header_timeout: limits::DEFAULT_HEADER_TIMEOUT,
            body_timeout: limits::DEFAULT_BODY_TIMEOUT,
            upload_timeout: limits::DEFAULT_UPLOAD_TIMEOUT,
            link_ttl: Duration::from_secs(7 * 86_400),
            callbacks: CallbackSettings::default(),
            kommo: None,
            campaigns: CampaignsConfig::default(),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The named policies requests may refer to: the configuration's, with the stored ones
    /// over them ([`PolicyCatalog`]).
    pub fn policies(&self) -> &PolicyCatalog {
        &self.inner.policies
    }

    /// The router with every endpoint. Mount it at the root of your service (paths are absolute).
    /// Every request body is limited in size and in time ([`limits`]).
    pub fn router(&self) -> Router {
        let upload_limit = usize::try_from(self.inner.uploads.as_ref().map_or(0, Uploads::max_size))
            .unwrap_or(usize::MAX)
            .saturating_add(limits::UPLOAD_OVERHEAD as usize);
        Router::new()
            .route("/v1/cascades", post(api::start).get(api::list))
            .route("/v1/cascades/{id}", get(api::get_one))
            .route("/v1/cascades/{id}/cancel", post(api::cancel))
            .route("/v1/cascades/{id}/events", get(api::events))
            .route("/v1/campaigns", post(campaigns::create).get(campaigns::list))
            .route("/v1/campaigns/{id}", get(campaigns::get_one))
            .route("/v1/campaigns/{id}/events", get(campaigns::events))
            .route("/v1/campaigns/{id}/pause", post(campaigns::pause))
            .route("/v1/campaigns/{id}/resume", post(campaigns::resume))
            .route("/v1/campaigns/{id}/cancel", post(campaigns::cancel))
            .route("/v1/campaigns/{id}/export", get(campaigns::export))
            .route("/v1/policies", get(policies::list))
            .route("/v1/policies/{name}", get(policies::get_one).put(policies::put).delete(policies::delete))
            .route("/v1/callbacks/dead", get(api::dead_callbacks))
            .route("/v1/connections", get(connections::list))
            .route("/v1/uploads", post(api::upload).layer(DefaultBodyLimit::max(upload_limit)))
            .route("/v1/openapi.json", get(openapi::serve))
            .route("/files/{id}", get(api::file))
            .route("/l/{token}", get(redirect::follow))
            .route("/kommo/widget_request", post(kommo::widget_request))
            .route("/webhooks/{connection}", post(webhooks::receive).get(webhooks::handshake))
            .route("/healthz", get(ops::healthz))
            .route("/readyz", get(ops::readyz))
            .route("/metrics", get(ops::metrics))
            .merge(console::router())
            .fallback(ops::not_found)
            .method_not_allowed_fallback(ops::method_not_allowed)
            .layer(axum::middleware::from_fn(ops::decodable_path))
            .layer(DefaultBodyLimit::max(self.inner.max_body))
            .layer(axum::middleware::from_fn_with_state(self.clone(), limits::guard))
            .with_state(self.clone())
    }

    /// Starts the background work: callback delivery from the outbox, metrics from the
    /// engine's events, the campaign runner ([`Campaigns::start`]), reading the stored
    /// policies (at once, then every [`policies::REFRESH_EVERY`]), and, with Kommo, taking
    /// over the `widget_request`s an instance held but did not finish ([`kommo`]; at once,
    /// then every 30 s), and deleting uploads no request has named for the link lifetime
    /// ([`uploads`]; at once, then hourly). Stop it with [`Workers::stop`] on shutdown.
    pub fn spawn_workers(&self) -> Workers {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let campaigns = self.inner.campaigns.clone();
        let mut campaigns_stopped = stopped.clone();
        let tasks = vec![
            tokio::spawn(callbacks::run(self.clone(), stopped.clone())),
            tokio::spawn(policies::run(self.clone(), stopped.clone())),
            tokio::spawn(kommo::resume(self.clone(), stopped.clone())),
            tokio::spawn(uploads::run(self.clone(), stopped.clone())),
            // Subscribed here, not in the task, so no event between now and its first poll is missed.
            tokio::spawn(metrics::listen(self.clone(), self.inner.engine.events(), stopped)),
            tokio::spawn(async move {
                let runner = campaigns.start();
                // Until told to stop, or until `Workers` is dropped.
                let _ = campaigns_stopped.wait_for(|stop| *stop).await;
                campaigns.stop();
                let _ = runner.await;
            }),
        ];
        Workers { stop, tasks }
    }

    /// Tells long-lived answers (event streams) to end, so a graceful shutdown is not held
    /// open by watchers. Call it when the shutdown signal arrives.
    pub fn begin_shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Runs the whole server on `listener` until `shutdown` resolves: starts the
    /// [workers](App::spawn_workers), serves [the router](App::router) over HTTP/1 (a client
    /// has the [header timeout](AppBuilder::header_timeout) to send a request's headers, and an
    /// idle kept-alive connection is closed after as long), then stops in order —
    /// no new requests, event streams ended, the requests in progress given up to `grace` to
    /// finish, no more campaign recipients started, the sends in flight given up to `grace` to
    /// finish ([`Engine::shutdown`]), the workers stopped.
    /// Running cascades and campaigns continue from the store when a server starts again.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
        grace: std::time::Duration,
    ) -> std::io::Result<()> {
        // Stored policies are in force from the first request.
        let _ = self.inner.policies.refresh().await;
        let workers = self.spawn_workers();
        let app = self.clone();
        serve::run(listener, self.router(), self.inner.header_timeout, grace, async move {
            shutdown.await;
            app.begin_shutdown();
        })
        .await;
        tracing::info!(grace = ?grace, "stopping: finishing sends in flight");
        // Campaigns first: no recipient is started while the engine stops.
        self.inner.campaigns.stop();
        self.inner.engine.shutdown(grace).await;
        workers.stop().await;
        Ok(())
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }
}

/// Resolves on Ctrl-C, or on SIGTERM where there is one: the usual `shutdown` for
/// [`App::serve`], and for anything else a binary keeps running until it is told to stop.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutdown signal received");
}

/// The background tasks of an [`App`].
#[derive(Debug)]
pub struct Workers {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workers {
    /// Stops them, letting a callback being delivered finish. (Dropping `Workers` stops them too.)
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

impl AppBuilder {
    /// A named policy requests may refer to (`"policy": "default"`): the configuration's,
    /// which a policy stored under the same name overrides ([`PolicyCatalog`]).
    pub fn policy(mut self, name: impl Into<String>, policy: Policy) -> Self {
        self.policies.insert(name.into(), Arc::new(policy));
        self
    }

    /// The webhook intake of a connection (`POST /webhooks/{connection}`).
    pub fn intake(mut self, connection: impl Into<ConnectionId>, intake: Arc<dyn Intake>) -> Self {
        self.intakes.insert(connection.into(), intake);
        self
    }

    /// An API key.
    pub fn api_key(mut self, key: ApiKey) -> Self {
        self.keys.push(key);
        self
    }

    /// The URL providers and contacts reach this server at (webhook URLs as providers sign
    /// them, file and link URLs). Default `http://127.0.0.1:8080/`.
    pub fn public_url(mut self, url: url::Url) -> Self {
        self.public_url = url;
        self
    }

    /// The secret that signs file links (32 bytes or more; a random one if never set, which
    /// makes links stop working across restarts).
    pub fn secret(mut self, secret: Vec<u8>) -> Self {
        self.secret = secret;
        self
    }

    /// Accepts uploads into `dir`, each up to `max_size` bytes, and never more than the
    /// engine's `max_file_size`: a file the server takes is never then refused for its size.
    pub fn uploads(mut self, dir: impl Into<std::path::PathBuf>, max_size: u64) -> Self {
        self.upload_dir = Some(dir.into());
        self.max_upload = max_size;
        self
    }

    /// Allows callbacks and media URLs on loopback and private networks (demo and tests).
    pub fn allow_internal_urls(mut self, allow: bool) -> Self {
        self.url_policy.allow_internal = allow;
        self
    }

    /// The largest JSON body (default 1 MiB).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// How long a client has to send a request's headers, and how long an idle kept-alive
    /// connection stays open (default 10 s; more than zero). [`App::serve`] applies it; a
    /// service that mounts [`App::router`] in its own server sets its own.
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout;
        self
    }

    /// How long a request's body may take to arrive in full, from the end of its headers
    /// (default 30 s): then the answer is `408` ([`limits`]).
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// The [body timeout](Self::body_timeout) of uploads: `POST /v1/uploads` and the console's
    /// campaign form (default 10 minutes).
    pub fn upload_timeout(mut self, timeout: Duration) -> Self {
        self.upload_timeout = timeout;
        self
    }

    /// How long signed file links stay valid (default 7 days; longer than a cascade lives). An
    /// upload no request has named for this long (and [`uploads::TOUCH_EVERY`]) is deleted by
    /// the [workers](App::spawn_workers).
    pub fn link_ttl(mut self, ttl: Duration) -> Self {
        self.link_ttl = ttl;
        self
    }

    /// Serves Kommo SalesBot's `widget_request` at `POST /kommo/widget_request`.
    pub fn kommo(mut self, kommo: cascade_kommo::Kommo) -> Self {
        self.kommo = Some(Arc::new(kommo));
        self
    }

    /// Callback delivery settings.
    pub fn callbacks(mut self, settings: CallbackSettings) -> Self {
        self.callbacks = settings;
        self
    }

    /// Campaign runner settings (the lease, how often it looks for work, the import batch).
    pub fn campaigns(mut self, config: CampaignsConfig) -> Self {
        self.campaigns = config;
        self
    }

    /// Builds the app. Fails only if the upload directory cannot be created.
    pub fn try_build(self) -> std::io::Result<App> {
        let secret = if self.secret.is_empty() {
            uuid::Uuid::new_v4().as_bytes().iter().chain(uuid::Uuid::new_v4().as_bytes()).copied().collect()
        } else {
            self.secret
        };
        // An upload over the engine's limit could never be sent: refuse it while it arrives.
        let max_upload = self.max_upload.min(self.engine.config().max_file_size);
        let uploads = match self.upload_dir {
            Some(dir) => Some(Uploads::new(dir, max_upload, secret.clone())?),
            None => None,
        };
        let metrics = Metrics::new();
        let activity = activity::Activity::of_engine(&self.engine);
        let campaigns = Campaigns::new(self.engine.clone(), self.campaigns);
        Ok(App {
            inner: Arc::new(Inner {
                policies: PolicyCatalog::new(self.engine.clone(), self.policies),
                engine: self.engine,
                intakes: self.intakes,
                keys: self.keys,
                public_url: self.public_url,
                uploads,
                url_policy: self.url_policy,
                max_body: self.max_body,
                header_timeout: self.header_timeout,
                body_timeout: self.body_timeout,
                upload_timeout: self.upload_timeout,
                link_ttl: self.link_ttl,
                callbacks: self.callbacks,
                metrics,
                activity,
                kommo: self.kommo,
                campaigns,
                secret,
                shutdown: tokio::sync::watch::channel(false).0,
            }),
        })
    }

    /// Builds the app; panics if the upload directory cannot be created (use
    /// [`try_build`](Self::try_build) to handle that).
    pub fn build(self) -> App {
        self.try_build().unwrap_or_else(|e| panic!("cannot create the upload directory: {e}"))
    }
}
