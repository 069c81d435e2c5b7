//! The operator console: server-rendered pages under `/console` where people watch cascades
//! on a timeline, edit policies, run campaigns and see how connections share the load.
//!
//! Pages are [minijinja] templates compiled into the binary (`console/templates/`), with one
//! stylesheet and one small script (`console/assets/`); nothing is built with Node. The
//! console uses the API keys: a login form checks a key and keeps it in a cookie marked
//! `HttpOnly`, `SameSite=Strict` and, behind TLS, `Secure`; every form that changes something
//! carries a token derived from the key and the server's secret, and cross-site posts are
//! refused (`session`).

mod campaigns;
mod cascades;
mod connections;
mod policies;
mod session;
pub(crate) mod timeline;

use std::sync::LazyLock;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use minijinja::{Environment, Value};

use crate::App;
use crate::problem::Problem;

pub use session::Session;

/// The console's routes, all under `/console`.
pub(crate) fn router() -> Router<App> {
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/cascades") }))
        .route("/console/login", get(session::login_form).post(session::login))
        .route("/console/logout", post(session::logout))
        .route("/console/assets/{file}", get(asset))
        .route("/console/campaigns", get(campaigns::list))
        .route("/console/campaigns/new", campaigns::form_routes())
        .route("/console/campaigns/{id}", get(campaigns::show))
        .route("/console/campaigns/{id}/progress", get(campaigns::progress))
        .route("/console/campaigns/{id}/live", get(campaigns::live))
        .route("/console/campaigns/{id}/{action}", post(campaigns::control))
        .route("/console/campaigns/{id}/export", get(campaigns::export))
        .route("/console/cascades", get(cascades::list).post(cascades::start))
        .route("/console/cascades/{id}", get(cascades::show))
        .route("/console/cascades/{id}/timeline", get(cascades::timeline))
        .route("/console/cascades/{id}/live", get(cascades::live))
        .route("/console/cascades/{id}/cancel", post(cascades::cancel))
        .route("/console/connections", get(connections::page))
        .route("/console/connections/pools", get(connections::pools))
        .route("/console/policies", get(policies::list).post(policies::save))
        .route("/console/policies/new", get(policies::new))
        .route("/console/policies/{name}", get(policies::show).post(policies::save))
        .route("/console/policies/{name}/delete", post(policies::delete))
}

/// The templates, compiled once.
static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    for (name, source) in [
        ("base.html", include_str!("../../console/templates/base.html")),
        ("macros.html", include_str!("../../console/templates/macros.html")),
        ("login.html", include_str!("../../console/templates/login.html")),
        ("error.html", include_str!("../../console/templates/error.html")),
        ("campaigns.html", include_str!("../../console/templates/campaigns.html")),
        ("campaign_new.html", include_str!("../../console/templates/campaign_new.html")),
        ("campaign.html", include_str!("../../console/templates/campaign.html")),
        ("campaign_progress.html", include_str!("../../console/templates/campaign_progress.html")),
        ("cascades.html", include_str!("../../console/templates/cascades.html")),
        ("cascade.html", include_str!("../../console/templates/cascade.html")),
        ("timeline.html", include_str!("../../console/templates/timeline.html")),
        ("connections.html", include_str!("../../console/templates/connections.html")),
        ("pools.html", include_str!("../../console/templates/pools.html")),
        ("policies.html", include_str!("../../console/templates/policies.html")),
        ("policy.html", include_str!("../../console/templates/policy.html")),
    ] {
        env.add_template(name, source).unwrap_or_else(|e| panic!("console template {name}: {e:#}"));
    }
    env
});

/// Renders a template into an HTML answer.
pub(crate) fn render(template: &str, ctx: Value) -> Result<Response, PageError> {
    let tpl = TEMPLATES.get_template(template).map_err(|e| PageError::internal(format!("{template}: {e:#}")))?;
    let html = tpl.render(ctx).map_err(|e| PageError::internal(format!("{template}: {e:#}")))?;
    let mut response = Html(html).into_response();
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    Ok(response)
}

/// A page that could not be shown: rendered as the error page with its status.
#[derive(Debug)]
pub(crate) struct PageError {
    status: StatusCode,
    message: String,
}

impl PageError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, what)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        let message = message.into();
        tracing::error!(error = %message, "console page failed");
        eprintln!("{message}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered; the server log says why")
    }
}

impl From<Problem> for PageError {
    fn from(p: Problem) -> Self {
        let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut message = p.detail.clone();
        for e in &p.errors {
            message.push_str(&format!("\n{}: {}", e.field, e.message));
        }
        Self::new(status, message)
    }
}

impl From<cascade_engine::StoreError> for PageError {
    fn from(e: cascade_engine::StoreError) -> Self {
        Problem::from(e).into()
    }
}

impl From<cascade_engine::EngineError> for PageError {
    fn from(e: cascade_engine::EngineError) -> Self {
        Problem::from(e).into()
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let ctx = minijinja::context! {
            title => self.status.canonical_reason().unwrap_or("Error"),
            status => self.status.as_u16(),
            message => self.message,
        };
        let page = TEMPLATES.get_template("error.html").and_then(|t| t.render(ctx));
        match page {
            Ok(html) => (self.status, Html(html)).into_response(),
            Err(_) => (self.status, self.message).into_response(),
        }
    }
}

/// The stylesheet and the script (revalidated on each use, so an upgraded server's script
/// is never run against an older page or the other way round).
async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "console.css" => (include_str!("../../console/assets/console.css"), "text/css; charset=utf-8"),
        "console.js" => (include_str!("../../console/assets/console.js"), "text/javascript; charset=utf-8"),
        _ => return PageError::not_found(format!("no asset {file:?}")).into_response(),
    };
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}
