//! Tracked links: `GET /l/{token}` records `clicked` on the attempt that carried the link,
//! then redirects (302) to the original URL from the cascade's stored plan, never from the
//! request, so this is no open redirect. `HEAD` requests and link-preview fetchers (the
//! messengers fetch a link to draw its preview card) are redirected without recording a
//! click, so a preview never ends a step that waits for `clicked`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::App;
use crate::problem::Problem;

/// User-Agent fragments of link-preview fetchers.
const PREVIEWERS: [&str; 14] = [
    "facebookexternalhit",
    "facebookcatalog",
    "whatsapp",
    "telegrambot",
    "viber",
    "twitterbot",
    "slackbot",
    "discordbot",
    "linkedinbot",
    "skypeuripreview",
    "vkshare",
    "googlebot",
    "bingbot",
    "applebot",
];

fn is_preview(headers: &HeaderMap) -> bool {
    let ua = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    PREVIEWERS.iter().any(|p| ua.contains(p))
}

/// `GET /l/{token}` (and `HEAD`).
pub async fn follow(
    State(app): State<App>,
    method: Method,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Result<Response, Problem> {
    let engine = &app.inner().engine;
    let target = if method == Method::HEAD || is_preview(&headers) {
        engine.link_target(&token).await?
    } else {
        engine.follow_link(&token).await?
    };
    let target = target.ok_or_else(|| Problem::not_found("this link is unknown or has expired"))?;
    let location = HeaderValue::from_str(&target).map_err(|_| Problem::not_found("this link is unknown"))?;
    let mut response = StatusCode::FOUND.into_response();
    response.headers_mut().insert(header::LOCATION, location);
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    Ok(response)
}
