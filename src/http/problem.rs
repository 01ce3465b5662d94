//! Every error answer: RFC 9457 problem details (`application/problem+json`).
//!
//! Details describe what the client did or can do; they never carry SQL, backend host names
//! or stack traces. Server-side causes are logged where they happen, not sent.

use bytes::Bytes;
use http::header::{ALLOW, CONNECTION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};
use http_body_util::Full;
use serde::Serialize;
use thiserror::Error;

use super::Response;
use crate::domain::{AliasError, ExpiryError, IdempotencyKeyError, UrlError};
use crate::links::{CreateError, ManageError, QrError, ResolveError};
use crate::telemetry::Chain;

/// Seconds a client should wait before retrying a 503.
pub(crate) const RETRY_AFTER_SECONDS: &str = "1";

#[derive(Debug, Error)]
pub enum ApiError {
    #[error("the request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error(transparent)]
    InvalidUrl(#[from] UrlError),
    #[error(transparent)]
    InvalidAlias(#[from] AliasError),
    #[error(transparent)]
    InvalidExpiry(#[from] ExpiryError),
    #[error(transparent)]
    InvalidIdempotencyKey(#[from] IdempotencyKeyError),
    #[error("no link has this code")]
    NotFound,
    #[error("this path does not support the method; allowed: {0}")]
    MethodNotAllowed(&'static str),
    #[error("the alias '{0}' is already taken")]
    AliasTaken(String),
    #[error("a request with this Idempotency-Key is still being processed; retry later")]
    IdempotencyKeyInUse,
    #[error("this link has expired or was disabled")]
    Gone,
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("the request body did not arrive within {} s", .0.as_secs_f64())]
    RequestTimeout(std::time::Duration),
    #[error("the request body must be sent as Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("this Idempotency-Key was already used with a different request body")]
    IdempotencyKeyReused,
    #[error("the service cannot reach its database right now; retry shortly")]
    Unavailable,
    #[error("this instance holds no worker id, so it cannot issue ids right now; retry shortly")]
    NoWorkerId,
    #[error(
        "the database schema does not match this version of the service, so it cannot create links right now; retry shortly"
    )]
    SchemaMismatch,
    #[error("too many creates are waiting to be written; retry shortly")]
    Overloaded,
    #[error("too many QR codes are being made right now; retry shortly")]
    QrBusy,
    #[error("too many requests from this client; retry in {0} s")]
    RateLimited(u64),
    #[error("an HTTP/1.1 request must carry exactly one Host header")]
    BadHost,
    #[error("this request needs an API key: Authorization: Bearer <key>")]
    KeyRequired,
    #[error("the API key is malformed, unknown or revoked")]
    KeyInvalid,
    #[error("API keys cannot be checked on this instance right now; retry shortly")]
    KeysUnavailable,
    #[error("this API key may not do this to this link")]
    Forbidden,
    #[error("the link's ETag does not match If-Match: it changed since it was read")]
    PreconditionFailed,
    #[error("the server failed to handle this request")]
    Internal,
}

impl From<ResolveError> for ApiError {
    /// Failures were logged where they happened, once per lookup.
    fn from(error: ResolveError) -> Self {
        match error {
            ResolveError::NotFound => ApiError::NotFound,
            ResolveError::Gone => ApiError::Gone,
            ResolveError::Unavailable(_) => ApiError::Unavailable,
            ResolveError::Internal(_) => ApiError::Internal,
        }
    }
}

impl From<QrError> for ApiError {
    fn from(error: QrError) -> Self {
        match error {
            QrError::Link(error) => error.into(),
            QrError::Busy => ApiError::QrBusy,
            QrError::Failed(_) => {
                tracing::error!(error = %Chain(&error), "QR code answered 500");
                ApiError::Internal
            }
        }
    }
}

impl From<CreateError> for ApiError {
    fn from(error: CreateError) -> Self {
        match &error {
            // Logged once by the lease keeper (the schema check), and named in `/readyz`, not
            // once per create.
            CreateError::NoWorkerId | CreateError::SchemaMismatch => {}
            CreateError::Unavailable(_) => {
                crate::throttled!(warn, error = %Chain(&error), "create answered 503: the database is unavailable");
            }
            CreateError::Failed(_) => {
                tracing::error!(error = %Chain(&error), "create answered 500");
            }
            _ => {}
        }
        ApiError::of_item(&error)
    }
}

impl From<ManageError> for ApiError {
    fn from(error: ManageError) -> Self {
        match error {
            ManageError::NotFound => ApiError::NotFound,
            ManageError::Gone => ApiError::Gone,
            ManageError::Forbidden => ApiError::Forbidden,
            ManageError::PreconditionFailed => ApiError::PreconditionFailed,
            ManageError::Url(error) => ApiError::InvalidUrl(error),
            ManageError::Expiry(error) => ApiError::InvalidExpiry(error),
            ManageError::Unavailable(_) => {
                crate::throttled!(warn, error = %Chain(&error), "link change answered 503: the database is unavailable");
                ApiError::Unavailable
            }
            ManageError::Failed(_) => {
                tracing::error!(error = %Chain(&error), "link change answered 500");
                ApiError::Internal
            }
        }
    }
}

#[derive(Serialize)]
pub(crate) struct ProblemBody<'a> {
    r#type: String,
    title: &'a str,
    pub(crate) status: u16,
    detail: String,
    /// The request's id (also in `X-Request-Id` and its log lines), as a URN.
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<String>,
}

impl ApiError {
    /// Status, problem type slug and title.
    fn kind(&self) -> (StatusCode, &'static str, &'static str) {
        use ApiError::*;
        match self {
            InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid-json", "Malformed JSON"),
            InvalidRequest(_) => (
                StatusCode::BAD_REQUEST,
                "invalid-request",
                "Invalid request",
            ),
            InvalidUrl(_) => (StatusCode::BAD_REQUEST, "invalid-url", "URL refused"),
            InvalidAlias(_) => (StatusCode::BAD_REQUEST, "invalid-alias", "Alias refused"),
            InvalidExpiry(_) => (
                StatusCode::BAD_REQUEST,
                "invalid-expires-at",
                "Invalid expires_at",
            ),
            InvalidIdempotencyKey(_) => (
                StatusCode::BAD_REQUEST,
                "invalid-idempotency-key",
                "Invalid Idempotency-Key",
            ),
            NotFound => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            MethodNotAllowed(_) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            AliasTaken(_) => (StatusCode::CONFLICT, "alias-taken", "Alias taken"),
            IdempotencyKeyInUse => (
                StatusCode::CONFLICT,
                "idempotency-key-in-use",
                "Request in progress",
            ),
            Gone => (StatusCode::GONE, "gone", "Link gone"),
            PayloadTooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Body too large",
            ),
            RequestTimeout(_) => (
                StatusCode::REQUEST_TIMEOUT,
                "request-timeout",
                "Body too slow",
            ),
            UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            IdempotencyKeyReused => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency-Key reused",
            ),
            Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
            ),
            NoWorkerId => (
                StatusCode::SERVICE_UNAVAILABLE,
                "no-worker-id",
                "No worker id",
            ),
            SchemaMismatch => (
                StatusCode::SERVICE_UNAVAILABLE,
                "schema-mismatch",
                "Database schema mismatch",
            ),
            Overloaded => (
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "Too many creates waiting",
            ),
            QrBusy => (
                StatusCode::SERVICE_UNAVAILABLE,
                "qr-busy",
                "Too many QR codes being made",
            ),
            RateLimited(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
            ),
            BadHost => (
                StatusCode::BAD_REQUEST,
                "bad-host",
                "Missing or repeated Host",
            ),
            KeyRequired => (StatusCode::UNAUTHORIZED, "key-required", "API key required"),
            KeyInvalid => (StatusCode::UNAUTHORIZED, "key-invalid", "API key not valid"),
            KeysUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "keys-unavailable",
                "API keys cannot be checked",
            ),
            Forbidden => (StatusCode::FORBIDDEN, "forbidden", "Not allowed"),
            PreconditionFailed => (
                StatusCode::PRECONDITION_FAILED,
                "precondition-failed",
                "ETag does not match",
            ),
            Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
        }
    }

    /// The problem object of this error; `instance` names the request it answers.
    pub(crate) fn problem(&self, instance: Option<String>) -> ProblemBody<'static> {
        let (status, slug, title) = self.kind();
        ProblemBody {
            r#type: format!("urn:shortener:problem:{slug}"),
            title,
            status: status.as_u16(),
            detail: self.to_string(),
            instance,
        }
    }

    /// What a create that was not made answers (an item of a batch, or a whole create).
    pub(crate) fn of_item(error: &CreateError) -> ApiError {
        match error {
            CreateError::Url(error) => ApiError::InvalidUrl(error.clone()),
            CreateError::Expiry(error) => ApiError::InvalidExpiry(error.clone()),
            CreateError::AliasTaken(alias) => ApiError::AliasTaken(alias.as_str().to_owned()),
            CreateError::KeyInUse => ApiError::IdempotencyKeyInUse,
            CreateError::KeyReused => ApiError::IdempotencyKeyReused,
            CreateError::NoWorkerId => ApiError::NoWorkerId,
            CreateError::SchemaMismatch => ApiError::SchemaMismatch,
            CreateError::Busy => ApiError::Overloaded,
            CreateError::Unavailable(_) => ApiError::Unavailable,
            CreateError::Failed(_) => ApiError::Internal,
        }
    }

    pub fn into_response(self) -> Response {
        let (status, _, _) = self.kind();
        let body = self.problem(
            crate::telemetry::current_request_id().map(|id| format!("urn:shortener:request:{id}")),
        );
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = http::Response::new(Full::new(Bytes::from(json)));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match self {
            ApiError::Unavailable
            | ApiError::NoWorkerId
            | ApiError::SchemaMismatch
            | ApiError::Overloaded
            | ApiError::QrBusy
            | ApiError::KeysUnavailable
            | ApiError::IdempotencyKeyInUse => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
            }
            ApiError::MethodNotAllowed(allow) => {
                headers.insert(ALLOW, HeaderValue::from_static(allow));
            }
            ApiError::RateLimited(seconds) => {
                headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
            }
            ApiError::KeyRequired | ApiError::KeyInvalid => {
                headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            // The rest of the body may still be on its way: the connection cannot be reused.
            ApiError::RequestTimeout(_) | ApiError::BadHost => {
                headers.insert(CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}
