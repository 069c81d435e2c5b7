//! API keys: stored as SHA-256 hashes, compared in constant time, each with scopes, an optional
//! request rate, and the secret that signs its cascades' callbacks.
//!
//! A request names its key in `Authorization: Bearer <key>` (or `X-Api-Key: <key>`). No key or
//! an unknown key is a 401; a key without the endpoint's scope a 403; a key over its rate a 429.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::http::HeaderMap;
use cascade_channel_kit::Secret;
use cascade_channel_kit::webhook::constant_time_eq;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::problem::{Problem, ProblemKind};

/// What a key may do.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Start and cancel cascades, upload files.
    Send,
    /// Read cascades and their events.
    Read,
    /// Everything, including dead callbacks and operations.
    Admin,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::Send => "send",
            Scope::Read => "read",
            Scope::Admin => "admin",
        })
    }
}

/// The hash a key is stored as: `sha256:` and 64 hex digits.
///
/// ```
/// let h = cascade_http::auth::hash_key("ck_live_123");
/// assert!(h.starts_with("sha256:") && h.len() == 7 + 64);
/// ```
pub fn hash_key(key: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes())))
}

/// One configured API key.
pub struct ApiKey {
    name: String,
    hash: [u8; 32],
    scopes: Vec<Scope>,
    callback_secret: Option<Secret>,
    limiter: Option<DefaultDirectRateLimiter>,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("callback_secret", &self.callback_secret.as_ref().map(|_| "<redacted>"))
            .field("rate_limited", &self.limiter.is_some())
            .finish()
    }
}

/// A key hash that is not `sha256:` and 64 hex digits.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("expected \"sha256:\" and 64 hex digits (see `cascade-server --hash-key`)")]
pub struct BadHash;

impl ApiKey {
    /// A key known by its hash ([`hash_key`]).
    pub fn from_hash(name: impl Into<String>, hash: &str, scopes: impl Into<Vec<Scope>>) -> Result<Self, BadHash> {
        let hex_part = hash.strip_prefix("sha256:").ok_or(BadHash)?;
        let bytes = hex::decode(hex_part).map_err(|_| BadHash)?;
        let hash: [u8; 32] = bytes.try_into().map_err(|_| BadHash)?;
        Ok(Self { name: name.into(), hash, scopes: scopes.into(), callback_secret: None, limiter: None })
    }

    /// A key given in plain text (it is hashed at once and the text dropped).
    pub fn from_plain(name: impl Into<String>, key: &str, scopes: impl Into<Vec<Scope>>) -> Self {
        Self::from_hash(name, &hash_key(key), scopes).unwrap_or_else(|_| unreachable!("hash_key makes valid hashes"))
    }

    /// Signs the callbacks of cascades started with this key.
    pub fn callback_secret(mut self, secret: impl Into<Secret>) -> Self {
        self.callback_secret = Some(secret.into());
        self
    }

    /// At most `per_second` requests a second, bursts up to the same number.
    pub fn rate_limit(mut self, per_second: NonZeroU32) -> Self {
        self.limiter = Some(RateLimiter::direct(Quota::per_second(per_second)));
        self
    }

    /// The key's name (its cascades' owner is `key:<name>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the key has `scope` (`admin` has every scope).
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&Scope::Admin) || self.scopes.contains(&scope)
    }

    /// The owner recorded with the cascades this key starts: `key:<name>` ([`Owner::Key`]).
    pub fn owner(&self) -> String {
        Owner::Key(&self.name).to_string()
    }

    /// Whether the key sees every cascade (it has `admin`), not only the ones it started.
    pub fn sees_all(&self) -> bool {
        self.scopes.contains(&Scope::Admin)
    }

    /// Whether the key may read, watch or cancel a cascade recorded with `owner`: an `admin`
    /// key any, another key only its own (`key:<name>`; not Kommo's, not ownerless ones).
    pub fn may_see(&self, owner: Option<&str>) -> bool {
        self.sees_all() || owner.and_then(Owner::parse) == Some(Owner::Key(&self.name))
    }

    /// The SHA-256 of the key (what the console derives its form tokens from).
    pub(crate) fn digest(&self) -> &[u8; 32] {
        &self.hash
    }

    /// The secret its callbacks are signed with.
    pub fn secret(&self) -> Option<&Secret> {
        self.callback_secret.as_ref()
    }
}

/// Who started a cascade, as its recorded owner names it: an API key (`key:<name>`, see
/// [`ApiKey::owner`]) or a Kommo account (`kommo:<account>`, see `Kommo::owner`).
///
/// ```
/// use cascade_http::auth::Owner;
/// assert_eq!(Owner::parse("key:crm"), Some(Owner::Key("crm")));
/// assert_eq!(Owner::parse("kommo:acme"), Some(Owner::Kommo("acme")));
/// assert_eq!(Owner::parse("crm"), None);
/// assert_eq!(Owner::Key("crm").to_string(), "key:crm");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner<'a> {
    /// Started through the API with the key of this name.
    Key(&'a str),
    /// Started by a SalesBot of this Kommo account.
    Kommo(&'a str),
}

impl<'a> Owner<'a> {
    /// Reads a recorded owner; `None` for one of neither form.
    pub fn parse(owner: &'a str) -> Option<Self> {
        if let Some(name) = owner.strip_prefix("key:") {
            Some(Owner::Key(name))
        } else {
            owner.strip_prefix("kommo:").map(Owner::Kommo)
        }
    }
}

impl fmt::Display for Owner<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Key(name) => write!(f, "key:{name}"),
            Owner::Kommo(account) => write!(f, "kommo:{account}"),
        }
    }
}

/// The configured keys.
#[derive(Debug, Default, Clone)]
pub struct ApiKeys {
    keys: Vec<Arc<ApiKey>>,
}

impl ApiKeys {
    /// Adds a key.
    pub fn push(&mut self, key: ApiKey) {
        self.keys.push(Arc::new(key));
    }

    /// The key named `name`.
    pub fn by_name(&self, name: &str) -> Option<&Arc<ApiKey>> {
        self.keys.iter().find(|k| k.name == name)
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Finds the request's key and checks its scope and rate.
    pub fn authorize(&self, headers: &HeaderMap, scope: Scope) -> Result<Arc<ApiKey>, Problem> {
        let presented = presented_key(headers).ok_or_else(|| {
            Problem::new(ProblemKind::Unauthorized, "send the API key as `Authorization: Bearer <key>`")
                .field("Authorization")
        })?;
        let key = self.identify(presented).ok_or_else(|| {
            Problem::new(ProblemKind::Unauthorized, "the API key is not known").field("Authorization")
        })?;
        if !key.allows(scope) {
            return Err(Problem::new(
                ProblemKind::Forbidden,
                format!("API key {:?} lacks the `{scope}` scope this endpoint needs", key.name),
            ));
        }
        if let Some(l) = &key.limiter
            && l.check().is_err()
        {
            let mut p =
                Problem::new(ProblemKind::RateLimited, format!("API key {:?} is over its rate limit", key.name));
            p.retry_after = Some(1);
            return Err(p);
        }
        Ok(key)
    }

    /// The key given in plain text, without checking a scope or spending its rate (the
    /// console's pages, whose traffic is not the API's).
    pub fn identify(&self, presented: &str) -> Option<Arc<ApiKey>> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        // Every key is compared, so the time taken does not tell which one nearly matched.
        let mut found = None;
        for k in &self.keys {
            if constant_time_eq(&k.hash, &digest) {
                found = Some(k.clone());
            }
        }
        found
    }
}

fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, token) = v.trim().split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then_some(token.trim()).filter(|t| !t.is_empty());
    }
    headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", auth.parse().expect("header"));
        h
    }

    #[test]
    fn keys_scopes_and_rates() {
        let mut keys = ApiKeys::default();
        keys.push(ApiKey::from_plain("reader", "r-key", [Scope::Read]));
        keys.push(ApiKey::from_hash("ops", &hash_key("a-key"), [Scope::Admin]).expect("hash"));
        keys.push(ApiKey::from_plain("slow", "s-key", [Scope::Send]).rate_limit(NonZeroU32::MIN));

        assert_eq!(keys.authorize(&HeaderMap::new(), Scope::Read).expect_err("none").status, 401);
        assert_eq!(keys.authorize(&headers("Bearer nope"), Scope::Read).expect_err("unknown").status, 401);
        assert_eq!(keys.authorize(&headers("Bearer r-key"), Scope::Read).expect("reader").name(), "reader");
        assert_eq!(keys.authorize(&headers("Bearer r-key"), Scope::Send).expect_err("scope").status, 403);
        assert_eq!(keys.authorize(&headers("bearer a-key"), Scope::Send).expect("admin").name(), "ops");
        assert!(keys.authorize(&headers("Bearer s-key"), Scope::Send).is_ok());
        let p = keys.authorize(&headers("Bearer s-key"), Scope::Send).expect_err("rate");
        assert_eq!((p.status, p.retry_after), (429, Some(1)));

        let mut h = HeaderMap::new();
        h.insert("x-api-key", "r-key".parse().expect("header"));
        assert!(keys.authorize(&h, Scope::Read).is_ok());

        let reader = keys.by_name("reader").expect("reader");
        assert_eq!(reader.owner(), "key:reader");
        assert!(reader.may_see(Some("key:reader")));
        for other in [Some("key:ops"), Some("key:reader2"), Some("kommo:reader"), Some("reader"), None] {
            assert!(!reader.may_see(other), "{other:?}");
        }
        let ops = keys.by_name("ops").expect("ops");
        assert!(
            ops.sees_all() && ops.may_see(Some("key:reader")) && ops.may_see(Some("kommo:acme")) && ops.may_see(None)
        );
        assert_eq!(ApiKey::from_hash("x", "md5:00", [Scope::Read]).expect_err("bad"), BadHash);
    }
}
