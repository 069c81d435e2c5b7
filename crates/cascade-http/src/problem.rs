//! Errors as `application/problem+json` (RFC 9457).
//!
//! Every error the API returns is a [`Problem`]: an HTTP status, a machine-readable `type`
//! (`urn:cascade:problem:<kind>`), a title, a detail in words and, where one field is at fault,
//! its JSON path in `field`. Validation errors list every problem found in `errors`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cascade_engine::{EngineError, StoreError, SubmitError, ValidationError};
use serde::Serialize;

/// The media type of problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The kinds of problem, each with its status and `type` URI.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// The body is not well-formed (JSON syntax, a broken multipart stream): 400.
    MalformedBody,
    /// The request is well-formed but wrong: a field of the wrong type, an unknown field, an
    /// invalid phone, an unknown policy or template variable: 422.
    InvalidRequest,
    /// No API key, or an unknown one: 401.
    Unauthorized,
    /// The key lacks the scope the endpoint needs, or a signed link is invalid or expired: 403.
    Forbidden,
    /// No such resource: 404.
    NotFound,
    /// The endpoint exists, but not for this method (its `Allow` header lists those it takes): 405.
    MethodNotAllowed,
    /// The idempotency key was used for a different request: 409.
    IdempotencyConflict,
    /// The resource's state does not allow the operation (pausing a campaign that is not
    /// running): 409.
    Conflict,
    /// An `If-Match` precondition does not hold: the resource changed since its `ETag` was
    /// read: 412.
    PreconditionFailed,
    /// The body did not arrive in time (`server.body_timeout`, `server.upload_timeout`): 408.
    RequestTimeout,
    /// The body is larger than allowed: 413.
    PayloadTooLarge,
    /// The body's media type is not one the endpoint takes: 415.
    UnsupportedMediaType,
    /// The key's request rate is exceeded: 429.
    RateLimited,
    /// A webhook whose signature does not verify: 401.
    BadSignature,
    /// The store cannot persist right now, or the server is stopping: 503.
    Unavailable,
    /// A bug on our side: 500.
    Internal,
}

impl ProblemKind {
    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            Self::MalformedBody => StatusCode::BAD_REQUEST,
            Self::InvalidRequest => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized | Self::BadSignature => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::IdempotencyConflict | Self::Conflict => StatusCode::CONFLICT,
            Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The kebab-case name used in the `type` URI.
    pub fn name(self) -> &'static str {
        match self {
            Self::MalformedBody => "malformed-body",
            Self::InvalidRequest => "invalid-request",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::IdempotencyConflict => "idempotency-conflict",
            Self::Conflict => "conflict",
            Self::PreconditionFailed => "precondition-failed",
            Self::RequestTimeout => "request-timeout",
            Self::PayloadTooLarge => "payload-too-large",
            Self::UnsupportedMediaType => "unsupported-media-type",
            Self::RateLimited => "rate-limited",
            Self::BadSignature => "bad-signature",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::MalformedBody => "The request body is malformed",
            Self::InvalidRequest => "The request is invalid",
            Self::Unauthorized => "An API key is required",
            Self::Forbidden => "Not allowed",
            Self::NotFound => "Not found",
            Self::MethodNotAllowed => "Method not allowed",
            Self::IdempotencyConflict => "The idempotency key belongs to a different request",
            Self::Conflict => "The resource's state does not allow this",
            Self::PreconditionFailed => "The resource changed since it was read",
            Self::RequestTimeout => "The request body did not arrive in time",
            Self::PayloadTooLarge => "The request body is too large",
            Self::UnsupportedMediaType => "Unsupported media type",
            Self::RateLimited => "Too many requests",
            Self::BadSignature => "The webhook signature does not verify",
            Self::Unavailable => "The service is unavailable; retry later",
            Self::Internal => "Internal error",
        }
    }
}

/// An error answer: a boxed [`ProblemDetails`] (small to return, the details on the heap).
#[derive(Clone, PartialEq, Debug)]
pub struct Problem(Box<ProblemDetails>);

impl std::ops::Deref for Problem {
    type Target = ProblemDetails;
    fn deref(&self) -> &ProblemDetails {
        &self.0
    }
}

impl std::ops::DerefMut for Problem {
    fn deref_mut(&mut self) -> &mut ProblemDetails {
        &mut self.0
    }
}

/// One problem document, as serialized.
#[derive(Clone, PartialEq, Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Problem)]
pub struct ProblemDetails {
    /// `urn:cascade:problem:<kind>`.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// A short summary of the kind.
    pub title: String,
    /// The HTTP status, repeated.
    pub status: u16,
    /// What went wrong, in words.
    pub detail: String,
    /// The JSON path of the offending field, where one is at fault (`contact.phone`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every problem found, for validation errors.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub errors: Vec<ValidationError>,
    /// For a campaign refused because its list has no valid recipient: the list's report
    /// (counts and the errors by line).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub report: Option<serde_json::Value>,
    /// Seconds to wait before retrying (429, 503).
    #[serde(skip)]
    pub retry_after: Option<u64>,
    #[serde(skip)]
    kind: ProblemKind,
}

impl Problem {
    /// A problem of `kind` with a detail.
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self(Box::new(ProblemDetails {
            type_uri: format!("urn:cascade:problem:{}", kind.name()),
            title: kind.title().to_owned(),
            status: kind.status().as_u16(),
            detail: detail.into(),
            field: None,
            errors: Vec::new(),
            report: None,
            retry_after: None,
            kind,
        }))
    }

    /// Names the offending field.
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// The kind.
    pub fn kind(&self) -> ProblemKind {
        self.kind
    }

    /// A validation failure listing every problem; `field` is the first one's.
    pub fn invalid(errors: Vec<ValidationError>) -> Self {
        let detail = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        let mut p = Self::new(ProblemKind::InvalidRequest, detail);
        p.field = errors.first().map(|e| e.field.clone());
        p.errors = errors;
        p
    }

    /// A 422 about one field.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::invalid(vec![ValidationError::new(field, message)])
    }

    /// A 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::NotFound, detail)
    }

    /// A 503 asking to retry after `seconds`.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        let mut p = Self::new(ProblemKind::Unavailable, detail);
        p.retry_after = Some(1);
        p
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.kind.status();
        let retry_after = self.retry_after;
        let body = serde_json::to_vec(&*self.0).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(s) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(id) => Problem::not_found(format!("no cascade {id}")),
            StoreError::PolicyConflict { name, current } => Problem::new(
                ProblemKind::PreconditionFailed,
                if current == 0 {
                    format!("policy {name:?} is not stored (any more); read it again and retry")
                } else {
                    format!("policy {name:?} is at version {current} (ETag \"{current}\") now; read it again and retry")
                },
            )
            .field("If-Match"),
            e => {
                tracing::warn!(error = %e, "store error answered with 503");
                Problem::unavailable(format!("the store cannot be used right now: {e}"))
            }
        }
    }
}

impl From<EngineError> for Problem {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NotFound(id) => Problem::not_found(format!("no cascade {id}")),
            EngineError::Store(e) => e.into(),
            e => Problem::unavailable(e.to_string()),
        }
    }
}

impl From<SubmitError> for Problem {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Invalid(errors) => Problem::invalid(errors),
            SubmitError::IdempotencyConflict { key, existing } => Problem::new(
                ProblemKind::IdempotencyConflict,
                format!("Idempotency-Key {key:?} was used for a different request (cascade {existing})"),
            )
            .field("Idempotency-Key"),
            SubmitError::Store(e) => e.into(),
            e => Problem::unavailable(e.to_string()),
        }
    }
}

/// Reads a JSON value as a `T`; a mismatch names its field under `field`
/// (`policy.steps[0].until`).
pub fn from_value_at<T: serde::de::DeserializeOwned>(
    field: &str,
    value: serde_json::Value,
) -> Result<T, ValidationError> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." { field.to_owned() } else { format!("{field}.{path}") };
        ValidationError::new(at, e.into_inner().to_string())
    })
}

/// Reads a JSON body into `T`, naming the field at fault: a syntax error, or nesting deeper
/// than [`MAX_JSON_DEPTH`](crate::limits::MAX_JSON_DEPTH), is a 400 (`malformed-body`), a wrong
/// type, a missing or an unknown field a 422 with its path.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    crate::limits::check_json_depth(body)?;
    // Most bodies are valid: read them without tracking the path (which keeps each key it
    // passes), and read a refused one again with tracking, to name the field at fault.
    let refused = match serde_json::from_slice::<T>(body) {
        Ok(value) => return Ok(value),
        Err(e) => e,
    };
    let de = &mut serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, T>(de) {
        // Read whole, yet refused above: only what follows the value can be at fault
        // (trailing characters, a second document), and the first reading said so.
        Ok(_) => Err(Problem::new(ProblemKind::MalformedBody, format!("the body is not valid JSON: {refused}"))),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let message = strip_position(&inner.to_string());
            match inner.classify() {
                serde_json::error::Category::Syntax
                | serde_json::error::Category::Eof
                | serde_json::error::Category::Io => {
                    Err(Problem::new(ProblemKind::MalformedBody, format!("the body is not valid JSON: {inner}")))
                }
                // The path of an unknown field `""` at the top is empty.
                serde_json::error::Category::Data if path == "." || path.is_empty() => {
                    // The body as a whole is at fault (`null`, a list, a required field
                    // missing): no field to name, so the message keeps its position.
                    let message = inner.to_string();
                    let mut p = Problem::new(ProblemKind::InvalidRequest, message.clone());
                    p.errors = vec![ValidationError::new("", message)];
                    Err(p)
                }
                serde_json::error::Category::Data => Err(Problem::invalid_field(path, message)),
            }
        }
    }
}

/// serde_json appends " at line L column C"; the field path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        contact: Inner,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        phone: String,
    }

    #[test]
    fn json_errors_name_the_field() {
        let body = parse_json::<Body>(br#"{"contact": {"phone": "+1"}}"#).expect("a valid body");
        assert_eq!(body.contact.phone, "+1");

        let p = parse_json::<Body>(br#"{"contact": {"phone": 5}}"#).expect_err("wrong type");
        assert_eq!(p.status, 422);
        assert_eq!(p.field.as_deref(), Some("contact.phone"));
        assert!(p.detail.contains("expected a string"), "{}", p.detail);
        assert!(!p.detail.contains("line"), "{}", p.detail);

        let p = parse_json::<Body>(br#"{"contact": {"phone": "+1", "fax": 1}}"#).expect_err("unknown field");
        assert_eq!(p.field.as_deref(), Some("contact.fax"));

        let p = parse_json::<Body>(br#"{"contact": {"phone": "+1"}} {"contact": {"phone": "+2"}}"#)
            .expect_err("a second document after the first");
        assert_eq!((p.status, p.type_uri.as_str()), (400, "urn:cascade:problem:malformed-body"), "{}", p.detail);
        assert!(p.detail.contains("trailing characters"), "{}", p.detail);

        let p = parse_json::<Body>(br#"{"contact": "#).expect_err("syntax");
        assert_eq!(p.status, 400);
        assert_eq!(p.type_uri, "urn:cascade:problem:malformed-body");

        let deep = format!("{{\"contact\": {}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        let p = parse_json::<Body>(deep.as_bytes()).expect_err("too deep");
        assert_eq!(p.status, 400);
        assert!(p.detail.contains("more than 64 levels deep"), "{}", p.detail);
    }

    /// A body wrong as a whole has no field to name: its detail says where, and does not
    /// start with the empty field's `": "`.
    #[test]
    fn json_errors_of_the_whole_body_say_where() {
        let p = parse_json::<Body>(b"null").expect_err("not an object");
        assert_eq!((p.status, p.field.as_deref()), (422, None));
        assert_eq!(p.detail, "invalid type: null, expected struct Body at line 1 column 4");
        assert_eq!(p.errors, vec![ValidationError::new("", p.detail.clone())]);
        let p = parse_json::<Body>(b"{}").expect_err("a field missing");
        assert_eq!(p.detail, "missing field `contact` at line 1 column 2");
        // An unknown field named "" was refused as `field: ""`, detail `": unknown field ``…"`.
        let p = parse_json::<Body>(br#"{"": 1}"#).expect_err("an unknown field");
        assert_eq!(
            (p.field.as_deref(), p.detail.as_str()),
            (None, "unknown field ``, expected `contact` at line 1 column 3")
        );
    }

    #[test]
    fn validation_lists_every_error() {
        let p =
            Problem::invalid(vec![ValidationError::new("contact.phone", "bad"), ValidationError::new("policy", "x")]);
        let json = serde_json::to_value(&*p).expect("json");
        assert_eq!(json["field"], "contact.phone");
        assert_eq!(json["errors"].as_array().map(Vec::len), Some(2));
        assert_eq!(json["type"], "urn:cascade:problem:invalid-request");
    }
}
