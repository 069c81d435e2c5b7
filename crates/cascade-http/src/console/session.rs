//! Logging in and out, and what every console request checks.
//!
//! The login form takes an API key (scope `read` at least), checks it like the API does, and
//! keeps it in the `cascade_console` cookie: `HttpOnly` (no script reads it), `SameSite=Strict`
//! (no other site's page sends it), `Secure` when the public URL is `https`, `Path=/console`.
//! Forms that change something carry a token, an HMAC of the key's hash under the server's
//! secret, and a post whose `Sec-Fetch-Site` or `Origin` says it came from another site is
//! refused before the token is even looked at.

use std::sync::Arc;

use axum::Form;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use minijinja::{Value, context};
use serde::Deserialize;
use sha2::Sha256;

use super::{PageError, render};
use crate::App;
use crate::auth::{ApiKey, Scope};

/// The cookie that holds the key.
const COOKIE: &str = "cascade_console";
/// How long a login lasts: 12 hours.
const MAX_AGE_SECS: u64 = 12 * 3600;

/// A logged-in operator: the key from the cookie, checked on every request.
#[derive(Debug, Clone)]
pub struct Session {
    key: Arc<ApiKey>,
    csrf: String,
}

impl Session {
    /// The key the operator logged in with.
    pub fn key(&self) -> &ApiKey {
        &self.key
    }

    /// The token forms must carry.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// A 403 page unless the key has `scope`.
    pub(crate) fn require(&self, scope: Scope) -> Result<(), PageError> {
        if self.key.allows(scope) {
            Ok(())
        } else {
            Err(PageError::new(
                StatusCode::FORBIDDEN,
                format!("the key {:?} lacks the `{scope}` scope this needs", self.key.name()),
            ))
        }
    }

    /// Checks a form that changes something: sent from this site, with this session's token.
    pub(crate) fn check_form(&self, headers: &HeaderMap, token: &str) -> Result<(), PageError> {
        if !same_site(headers) {
            return Err(PageError::new(StatusCode::FORBIDDEN, "a form from another site was refused"));
        }
        if !cascade_channel_kit::webhook::constant_time_eq(token.as_bytes(), self.csrf.as_bytes()) {
            return Err(PageError::new(
                StatusCode::FORBIDDEN,
                "the form's token does not match this login (the page may be older than the login): reload it and try again",
            ));
        }
        Ok(())
    }

    /// What every page's layout needs: who is logged in, what they may do, the form token and
    /// the page's place in the menu.
    pub(crate) fn page(&self, nav: &str, title: &str) -> Value {
        context! {
            user => self.key.name(),
            csrf => self.csrf,
            can_send => self.key.allows(Scope::Send),
            can_admin => self.key.allows(Scope::Admin),
            nav => nav,
            title => title,
        }
    }
}

impl FromRequestParts<App> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let presented = cookie(&parts.headers, COOKIE).and_then(decode_key);
        let Some(presented) = presented else {
            return Err(to_login(parts));
        };
        // The key's API rate limit is not spent on pages: a console left open must not make an
        // integration using the same key run into 429s.
        match app.inner().keys.identify(&presented).filter(|k| k.allows(Scope::Read)) {
            Some(key) => {
                let csrf = token(&app.inner().secret, &key);
                Ok(Session { key, csrf })
            }
            // A key that was removed or lost its scope: log in again.
            None => Err(to_login(parts)),
        }
    }
}

/// Where a request without a login goes: the login form, back here afterwards (for a page);
/// a 401 page for anything else.
fn to_login(parts: &Parts) -> Response {
    if parts.method == Method::GET {
        let next = parts.uri.path_and_query().map_or("/console", |p| p.as_str());
        let q = url::form_urlencoded::Serializer::new(String::new()).append_pair("next", next).finish();
        Redirect::to(&format!("/console/login?{q}")).into_response()
    } else {
        PageError::new(StatusCode::UNAUTHORIZED, "log in first").into_response()
    }
}

/// The form token of a key: HMAC-SHA256 of the key's hash under the server's secret.
fn token(secret: &[u8], key: &ApiKey) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("any key length"));
    mac.update(b"cascade-console-csrf:");
    mac.update(key.digest());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// Whether a post comes from this site, as far as the browser tells: `Sec-Fetch-Site`
/// (every current browser sends it) or else `Origin` against `Host`. A client that sends
/// neither is not a browser acting for another site.
fn same_site(headers: &HeaderMap) -> bool {
    let get = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    if let Some(site) = get(header::HeaderName::from_static("sec-fetch-site")) {
        return matches!(site, "same-origin" | "none");
    }
    match (get(header::ORIGIN), get(header::HOST)) {
        (Some(origin), Some(host)) => url::Url::parse(origin).is_ok_and(|u| {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            u.host_str().is_some_and(|h| format!("{h}{port}") == host)
        }),
        (Some(_), None) => false,
        _ => true,
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(k, v)| (k == name).then_some(v))
}

fn decode_key(value: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(value).ok()?;
    String::from_utf8(bytes).ok()
}

fn set_cookie(app: &App, value: &str, max_age: u64) -> HeaderValue {
    let secure = if app.inner().public_url.scheme() == "https" { "; Secure" } else { "" };
    let c = format!("{COOKIE}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static("cascade_console=; Max-Age=0"))
}

/// Only pages of the console are places to come back to after logging in.
fn safe_next(next: Option<&str>) -> &str {
    next.filter(|n| {
        n.starts_with("/console")
            && !n.starts_with("/console//")
            && !n.contains('\\')
            && !n.chars().any(char::is_control)
    })
    .unwrap_or("/console/cascades")
}

/// The query of the login form.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
}

/// `GET /console/login`.
pub(crate) async fn login_form(Query(q): Query<LoginQuery>) -> Result<Response, PageError> {
    render("login.html", context! { title => "Log in", next => safe_next(q.next.as_deref()), error => () })
}

/// The login form.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    key: String,
    #[serde(default)]
    next: Option<String>,
}

/// `POST /console/login`: checks the key and sets the cookie.
pub(crate) async fn login(
    State(app): State<App>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, PageError> {
    let next = safe_next(form.next.as_deref()).to_owned();
    if !same_site(&headers) {
        return Err(PageError::new(StatusCode::FORBIDDEN, "a login from another site was refused"));
    }
    let key = form.key.trim();
    // As for pages, logging in does not spend the key's API rate.
    let error = match app.inner().keys.identify(key) {
        Some(k) if k.allows(Scope::Read) => None,
        Some(_) => Some("This key may not read cascades (it needs the read or admin scope)."),
        None => Some("No API key matches. Check it and try again."),
    };
    if let Some(error) = error {
        let mut page = render("login.html", context! { title => "Log in", next => next, error => error })?;
        *page.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(page);
    }
    let value = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.as_bytes());
    let mut response = Redirect::to(&next).into_response();
    response.headers_mut().insert(header::SET_COOKIE, set_cookie(&app, &value, MAX_AGE_SECS));
    Ok(response)
}

/// A form that carries only the token.
#[derive(Debug, Deserialize)]
pub(crate) struct TokenForm {
    pub(crate) csrf: String,
}

/// `POST /console/logout`: forgets the cookie.
pub(crate) async fn logout(
    State(app): State<App>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Result<Response, PageError> {
    session.check_form(&headers, &form.csrf)?;
    let mut response = Redirect::to("/console/login").into_response();
    response.headers_mut().insert(header::SET_COOKIE, set_cookie(&app, "", 0));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().expect("header"));
        }
        h
    }

    #[test]
    fn posts_from_other_sites_are_refused() {
        assert!(same_site(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(!same_site(&headers(&[("sec-fetch-site", "cross-site"), ("origin", "http://a:1"), ("host", "a:1")])));
        assert!(!same_site(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(same_site(&headers(&[("origin", "http://127.0.0.1:8080"), ("host", "127.0.0.1:8080")])));
        assert!(!same_site(&headers(&[("origin", "http://evil.example"), ("host", "127.0.0.1:8080")])));
        assert!(!same_site(&headers(&[("origin", "null"), ("host", "127.0.0.1:8080")])));
        assert!(same_site(&HeaderMap::new()), "a client that is not a browser");
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; cascade_console=abc; b=2")]);
        assert_eq!(cookie(&h, COOKIE), Some("abc"));
        assert_eq!(cookie(&headers(&[("cookie", "a=1"), ("cookie", "cascade_console=x")]), COOKIE), Some("x"));
        assert_eq!(cookie(&headers(&[("cookie", "xcascade_console=1")]), COOKIE), None);
        let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("ck live;key");
        assert_eq!(decode_key(&enc).as_deref(), Some("ck live;key"));
        assert_eq!(decode_key("%%%"), None);
    }

    #[test]
    fn only_console_pages_are_places_to_return_to() {
        assert_eq!(safe_next(Some("/console/campaigns?x=1")), "/console/campaigns?x=1");
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/console//evil.example",
            "/v1/cascades",
            "/console\\x",
            "/console\n",
        ] {
            assert_eq!(safe_next(Some(bad)), "/console/cascades", "{bad}");
        }
        assert_eq!(safe_next(None), "/console/cascades");
    }

    #[test]
    fn tokens_depend_on_key_and_secret() {
        let a = ApiKey::from_plain("a", "key-a", [Scope::Read]);
        let b = ApiKey::from_plain("b", "key-b", [Scope::Read]);
        assert_eq!(token(b"s1", &a), token(b"s1", &a));
        assert_ne!(token(b"s1", &a), token(b"s1", &b));
        assert_ne!(token(b"s1", &a), token(b"s2", &a));
        assert_eq!(token(b"s1", &a).len(), 32);
    }
}
