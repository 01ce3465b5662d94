//! CORS for browser front ends (`SHORTENER_CORS_ORIGINS`): the API (creates, stats, a key's
//! listing, edits and deletes) may be called from the pages of the listed origins. A preflight (`OPTIONS` with
//! `Access-Control-Request-Method`) is answered 204 here, before any limit; the answers of those
//! routes name the allowed origin and the headers a page may read. Redirects never carry CORS
//! headers: a browser follows them without asking.

use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderValue, StatusCode};

use super::Response;

/// How long a browser may reuse a preflight's answer.
const MAX_AGE_SECONDS: &str = "600";

/// The request's `Origin`, when it is one of `allowed`.
pub fn allowed_origin(allowed: &[HeaderValue], headers: &HeaderMap) -> Option<HeaderValue> {
    let origin = headers.get(ORIGIN)?;
    allowed
        .iter()
        .any(|allowed| allowed == origin)
        .then(|| origin.clone())
}

/// The answer to a preflight: what the page may send, when its origin is allowed; otherwise
/// no CORS header at all (the browser then refuses the request itself).
pub fn preflight(origin: Option<&HeaderValue>) -> Response {
    let mut response = http::Response::new(super::Body::default());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = origin {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        headers.insert(
            ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST, GET, PATCH, DELETE"),
        );
        headers.insert(
            ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Content-Type, Idempotency-Key, Authorization, If-Match"),
        );
        headers.insert(
            ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(MAX_AGE_SECONDS),
        );
    }
    response
}

/// Marks an answer of a CORS route: it varies by origin, and an allowed origin's page may
/// read it and the headers listed.
pub fn decorate(response: &mut Response, origin: Option<&HeaderValue>) {
    let headers = response.headers_mut();
    headers.append(VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = origin {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        headers.insert(
            ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(
                "Location, Idempotent-Replayed, Retry-After, RateLimit, RateLimit-Policy, ETag",
            ),
        );
    }
}
