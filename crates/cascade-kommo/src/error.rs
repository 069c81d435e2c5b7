//! Why a `widget_request` is refused, in terms the server can answer with.

/// Why the request's `token` (or its `return_url`) is not trusted. The server answers 401 and
/// starts nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The token is not a compact JWS (`header.payload.signature`, base64url JSON).
    #[error("not a signed JWT: {0}")]
    Malformed(String),
    /// The header names an algorithm other than HMAC-SHA2 (`none`, RS256, …).
    #[error("algorithm {0:?} is not accepted (HS512, HS384 or HS256 only)")]
    Algorithm(String),
    /// The signature is not the integration's client secret's HMAC of the token.
    #[error("the signature does not match the integration's client secret")]
    BadSignature,
    /// `exp` (plus the leeway) is in the past.
    #[error("the token expired at {exp} (now {now}, leeway {leeway_secs}s)")]
    Expired {
        /// The `exp` claim, as sent.
        exp: String,
        /// Our clock, unix seconds.
        now: i64,
        /// The configured leeway.
        leeway_secs: u64,
    },
    /// `nbf` or `iat` (minus the leeway) is in the future.
    #[error("the token is not valid yet: {claim} is {value} (now {now})")]
    NotYetValid {
        /// `nbf` or `iat`.
        claim: &'static str,
        /// The claim, as sent.
        value: String,
        /// Our clock, unix seconds.
        now: i64,
    },
    /// A claim is missing or of the wrong type.
    #[error("claim {claim}: {message}")]
    Claim {
        /// The claim's name.
        claim: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// `client_uuid` names another integration.
    #[error("the token is for integration {found:?}, not the configured integration_id")]
    WrongIntegration {
        /// The claim's value.
        found: String,
    },
    /// `aud` is not this server's scheme and host.
    #[error("the token's audience {found:?} is not {expected:?}")]
    WrongAudience {
        /// The claim's values.
        found: Vec<String>,
        /// The audience the caller expects (our scheme and host).
        expected: String,
    },
    /// The token's account (`iss`) has no `[kommo.accounts.<subdomain>]` entry.
    #[error("account {0:?} is not configured")]
    UnknownAccount(String),
    /// `return_url` points outside the token's account: we would send the account's access
    /// token there.
    #[error("return_url host {host:?} does not belong to account {account:?}")]
    ForeignReturnUrl {
        /// The URL's host (and port, when not the default).
        host: String,
        /// The token's account.
        account: String,
    },
}

impl AuthError {
    /// The request field at fault: `return_url` for [`ForeignReturnUrl`](Self::ForeignReturnUrl),
    /// `token` for the rest.
    pub fn field(&self) -> &'static str {
        match self {
            AuthError::ForeignReturnUrl { .. } => "return_url",
            _ => "token",
        }
    }
}

/// Why a `widget_request` (or a continue report) is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KommoError {
    /// The body cannot be read: not JSON / form, a required field absent, a malformed key.
    /// The server answers 400.
    #[error("{field}: {message}")]
    Malformed {
        /// The field at fault (`token`, `return_url`, `data`, `data[deal][name]`, …).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The token or the return URL is not trusted (401).
    #[error("{field}: {0}", field = .0.field())]
    Unauthorized(#[from] AuthError),
    /// The request is well-formed but cannot become a cascade: no text, no phone or email,
    /// an id that is not a number (422).
    #[error("{field}: {message}")]
    Invalid {
        /// The field at fault, dotted (`data.text`, `data.phone`, `data.lead_id`).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// Kommo's API failed while fetching the contact's phone or email (502): our access
    /// token was refused, Kommo is down, or it answered something unreadable.
    #[error("Kommo API: {0}")]
    Upstream(String),
}

impl KommoError {
    pub(crate) fn malformed(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Malformed { field: field.into(), message: message.into() }
    }

    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), message: message.into() }
    }

    /// Whether the request is refused for authenticity (answer 401) rather than for its form
    /// or content.
    pub fn is_auth(&self) -> bool {
        matches!(self, Self::Unauthorized(_))
    }

    /// The HTTP status to answer with: 400 malformed, 401 unauthorized, 422 invalid, 502 when
    /// Kommo's API failed.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::Malformed { .. } => 400,
            Self::Unauthorized(_) => 401,
            Self::Invalid { .. } => 422,
            Self::Upstream(_) => 502,
        }
    }

    /// The request field at fault, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Malformed { field, .. } | Self::Invalid { field, .. } => Some(field),
            Self::Unauthorized(e) => Some(e.field()),
            Self::Upstream(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_fields() {
        let auth = KommoError::from(AuthError::BadSignature);
        assert!(auth.is_auth());
        assert_eq!((auth.http_status(), auth.field()), (401, Some("token")));
        assert_eq!(auth.to_string(), "token: the signature does not match the integration's client secret");
        let foreign =
            KommoError::from(AuthError::ForeignReturnUrl { host: "evil.test".into(), account: "acme".into() });
        assert_eq!(foreign.field(), Some("return_url"));
        let bad = KommoError::malformed("data[deal", "unclosed bracket");
        assert_eq!((bad.http_status(), bad.is_auth()), (400, false));
        assert_eq!(KommoError::invalid("data.text", "missing").http_status(), 422);
        assert_eq!(KommoError::Upstream("down".into()).http_status(), 502);
    }
}
