//! Method and path to handler. Every route of both listeners is listed here.
//!
//! Main listener: `POST /shorten`, `GET|HEAD /openapi.json`, `GET|HEAD /{code}` (a trailing
//! slash and any query are ignored), `GET|HEAD /{code}/stats`.
//! Admin listener: `GET /healthz`, `GET /readyz`, `GET /metrics` (Prometheus text format).

use std::net::SocketAddr;
use std::sync::Arc;

use http::Method;
use hyper::body::Incoming;

use http::HeaderValue;

use super::State;
use super::client::client_ip;
use super::cors;
use super::routes::{admin, openapi, redirect, shorten, stats};
use super::{ApiError, HttpSettings, Response};
use crate::domain::{ClientIp, Code};
use crate::limits::{Decision, LimitedRoute, RateSpec};
use crate::links::Visit;
use crate::telemetry::metrics::{HttpMethod, HttpRoute};
use crate::telemetry::{AccessLog, RequestId, request_span, with_request_id};
use std::time::Instant;
use tracing::Instrument;

const GET_HEAD: &str = "GET, HEAD";

/// What a public request asks for, taken out of the request before any `.await`.
enum Route {
    /// The request is no longer needed: the code was copied out of it, so the connection's
    /// read buffer is free for the next request while the lookup runs (see [`Code`]).
    Redirect {
        code: Code,
        visit: Visit,
    },
    Stats {
        code: Code,
    },
    /// Boxed, so the common redirect's future does not carry a whole request's room.
    Shorten {
        request: Box<http::Request<Incoming>>,
        client: ClientIp,
    },
    OpenApi,
    /// A CORS preflight of creates or stats: answered before any limit.
    Preflight(HttpRoute),
    /// A read of a path that can name no link: 404, counted as a redirect (scanners pay).
    Unknown,
    Refused(HttpRoute, ApiError),
}

impl Route {
    /// The limit this request counts toward, if any.
    fn limit(&self) -> Option<LimitedRoute> {
        match self {
            Route::Redirect { .. } | Route::Unknown => Some(LimitedRoute::Redirect),
            Route::Stats { .. } => Some(LimitedRoute::Stats),
            Route::Shorten { .. } => Some(LimitedRoute::Create),
            Route::OpenApi | Route::Preflight(_) | Route::Refused(..) => None,
        }
    }

    /// The `http_route` label: the route's template, never the path.
    fn label(&self) -> HttpRoute {
        match self {
            Route::Redirect { .. } => HttpRoute::Redirect,
            Route::Stats { .. } => HttpRoute::Stats,
            Route::Shorten { .. } => HttpRoute::Shorten,
            Route::OpenApi => HttpRoute::OpenApi,
            Route::Preflight(route) | Route::Refused(route, _) => *route,
            Route::Unknown => HttpRoute::Other,
        }
    }
}

/// The `http_request_method` label.
fn method_label(method: &Method) -> HttpMethod {
    match *method {
        Method::GET => HttpMethod::Get,
        Method::HEAD => HttpMethod::Head,
        Method::POST => HttpMethod::Post,
        Method::OPTIONS => HttpMethod::Options,
        _ => HttpMethod::Other,
    }
}

/// Routes a request of the main listener. The routing runs now; the returned future does
/// the rest.
pub fn handle_public(
    state: Arc<State>,
    request: http::Request<Incoming>,
    peer: SocketAddr,
) -> impl Future<Output = Response> + Send + 'static {
    // The clock is read only when something will use it.
    let settings = &state.settings;
    let started =
        (state.metrics.is_on() || settings.access_log != AccessLog::Off).then(Instant::now);
    let method = method_label(request.method());
    let request_id = request_id(settings, peer, request.headers());
    let client = client_ip(&settings.trusted_proxies, peer, request.headers());
    let cors = !settings.cors_origins.is_empty();
    let origin = cors
        .then(|| cors::allowed_origin(&settings.cors_origins, request.headers()))
        .flatten();
    let route = route(request, client, cors);
    let label = route.label();
    let cors_route = cors
        && matches!(
            route,
            Route::Shorten { .. } | Route::Stats { .. } | Route::Preflight(_)
        );
    // Redirects and stats are decided here, in memory; a create's decision may ask Redis.
    let decided = route.limit().and_then(|limit| {
        state
            .limits
            .check(limit, client.get())
            .map(|(spec, decision)| (limit, spec, decision))
    });
    let request = Request {
        state,
        route,
        decided,
        client,
        cors_route,
        origin,
        id: request_id.clone(),
        started,
        label,
        method,
    };
    // The future is built here, not inside an `async move` around it: an async block keeps
    // room for what it captured even after moving it into the future it awaits, and this
    // future is moved in memory on every request.
    with_request_id(request_id, answer(request))
}

const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// The `X-Request-Id` a trusted proxy sent, when it is usable; otherwise a new one. (The
/// peer is checked first: looking a header up hashes its name, on every request.)
fn request_id(settings: &HttpSettings, peer: SocketAddr, headers: &http::HeaderMap) -> RequestId {
    Some(peer)
        .filter(|peer| settings.trusted_proxies.contains(peer.ip()))
        .and_then(|_| headers.get(X_REQUEST_ID))
        .and_then(|given| RequestId::given(given.as_bytes()))
        .unwrap_or_else(RequestId::make)
}

/// What the routing found out about a request of the main listener.
struct Request {
    state: Arc<State>,
    route: Route,
    /// The limit decided in memory (redirects, stats).
    decided: Option<(LimitedRoute, RateSpec, Decision)>,
    client: ClientIp,
    cors_route: bool,
    origin: Option<HeaderValue>,
    id: RequestId,
    started: Option<Instant>,
    label: HttpRoute,
    method: HttpMethod,
}

/// The answer to a routed request: its limit, its handler, the headers every answer of its
/// route carries; then its metrics, its access-log line and its `X-Request-Id`.
async fn answer(request: Request) -> Response {
    let mut response = 'answer: {
        let limited = match &request.route {
            // Boxed: the Redis call's future would otherwise enlarge every redirect's.
            Route::Shorten { .. } => {
                Box::pin(request.state.limits.check_create(request.client.get()))
                    .await
                    .map(|(spec, decision)| (LimitedRoute::Create, spec, decision))
            }
            _ => request.decided,
        };
        if let Some((limit, spec, decision)) = limited
            && !decision.allowed
        {
            let mut response = ApiError::RateLimited(decision.retry_after_seconds).into_response();
            add_rate_limit_fields(&mut response, limit, spec, decision);
            if request.cors_route {
                // A page must be able to read why it was refused.
                cors::decorate(&mut response, request.origin.as_ref());
            }
            break 'answer response;
        }
        let mut response = match request.route {
            Route::Redirect { code, visit } => redirect::handle(&request.state, &code, visit).await,
            // Boxed: these futures are large, and every request's future is as large as its
            // largest branch, moved in memory as a whole on every redirect.
            Route::Stats { code } => {
                Box::pin(stats::handle(&request.state, &code).instrument(request_span())).await
            }
            Route::Shorten {
                request: create,
                client,
            } => {
                Box::pin(
                    shorten::handle(&request.state, *create, client).instrument(request_span()),
                )
                .await
            }
            Route::OpenApi => openapi::handle(),
            Route::Preflight(_) => break 'answer cors::preflight(request.origin.as_ref()),
            Route::Unknown => ApiError::NotFound.into_response(),
            Route::Refused(_, error) => error.into_response(),
        };
        // Redirects never carry the fields (the draft advises against them on 3xx).
        if let Some((limit, spec, decision)) = limited
            && !response.status().is_redirection()
        {
            add_rate_limit_fields(&mut response, limit, spec, decision);
        }
        if request.cors_route {
            cors::decorate(&mut response, request.origin.as_ref());
        }
        if request.state.draining() {
            response
                .headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    };
    let status = response.status().as_u16();
    let elapsed = request
        .started
        .map(|started| started.elapsed())
        .unwrap_or_default();
    request
        .state
        .metrics
        .http
        .observe(request.label, request.method, status, elapsed);
    let settings = &request.state.settings;
    if settings.access_log.logs(status, settings.access_log_sample) {
        tracing::info!(
            target: "access",
            request_id = %request.id,
            method = request.method.label(),
            route = request.label.label(),
            status,
            duration_us = elapsed.as_micros() as u64,
            client = %request.client.get(),
            "request"
        );
    }
    if let Ok(value) = request.id.with_text(HeaderValue::from_str) {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    response
}

/// Creates and stats: the routes a browser page may call.
fn is_cors_path(path: &str) -> bool {
    path == "/shorten"
        || path
            .trim_end_matches('/')
            .strip_suffix("/stats")
            .is_some_and(|code| code.len() > 1 && !code[1..].contains('/'))
}

/// `RateLimit-Policy: "create";q=40;w=2` and `RateLimit: "create";r=12;t=1` (the IETF draft's
/// structured-field syntax; the mapping of `N/s,burst=M` is in `limits`).
fn add_rate_limit_fields(
    response: &mut Response,
    limit: LimitedRoute,
    spec: RateSpec,
    decision: Decision,
) {
    let name = limit.name();
    let policy = format!("\"{name}\";q={};w={}", spec.burst, spec.window_seconds());
    let state = format!(
        "\"{name}\";r={};t={}",
        decision.remaining, decision.reset_seconds
    );
    let headers = response.headers_mut();
    if let (Ok(policy), Ok(state)) = (HeaderValue::try_from(policy), HeaderValue::try_from(state)) {
        headers.insert("ratelimit-policy", policy);
        headers.insert("ratelimit", state);
    }
}

/// What a request of the main listener asks for, taken out of it without any `.await`.
fn route(request: http::Request<Incoming>, client: ClientIp, cors: bool) -> Route {
    // RFC 9112 §3.2: an HTTP/1.1 request carries exactly one Host (HTTP/1.0 may have none).
    if request.version() == http::Version::HTTP_11
        && request.headers().get_all(http::header::HOST).iter().count() != 1
    {
        return Route::Refused(HttpRoute::Other, ApiError::BadHost);
    }
    let method = request.method();
    let is_read = method == Method::GET || method == Method::HEAD;
    if cors && method == Method::OPTIONS && is_cors_path(request.uri().path()) {
        return Route::Preflight(if request.uri().path() == "/shorten" {
            HttpRoute::Shorten
        } else {
            HttpRoute::Stats
        });
    }
    match request.uri().path() {
        "/shorten" if method == Method::POST => Route::Shorten {
            request: Box::new(request),
            client,
        },
        "/shorten" => Route::Refused(HttpRoute::Shorten, ApiError::MethodNotAllowed("POST")),
        "/openapi.json" if is_read => Route::OpenApi,
        "/openapi.json" => Route::Refused(HttpRoute::OpenApi, ApiError::MethodNotAllowed(GET_HEAD)),
        path => {
            let rest = path.strip_prefix('/').unwrap_or(path);
            let rest = rest.strip_suffix('/').unwrap_or(rest);
            let (segment, stats) = match rest.split_once('/') {
                None => (rest, false),
                Some((code, "stats")) => (code, true),
                Some(_) if is_read => return Route::Unknown,
                Some(_) => return Route::Refused(HttpRoute::Other, ApiError::NotFound),
            };
            if !is_read {
                let route = if stats {
                    HttpRoute::Stats
                } else {
                    HttpRoute::Redirect
                };
                return Route::Refused(route, ApiError::MethodNotAllowed(GET_HEAD));
            }
            // A segment that can never name a link is 404 without a lookup.
            let Some(code) = Code::parse(segment) else {
                return Route::Unknown;
            };
            if stats {
                Route::Stats { code }
            } else {
                Route::Redirect {
                    code,
                    visit: redirect::visit(&request),
                }
            }
        }
    }
}

pub async fn handle_admin(
    state: Arc<State>,
    request: http::Request<Incoming>,
    _peer: SocketAddr,
) -> Response {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return ApiError::MethodNotAllowed(GET_HEAD).into_response();
    }
    match request.uri().path() {
        "/healthz" => admin::healthz(),
        "/readyz" => admin::readyz(&state),
        "/metrics" if state.metrics.is_on() => admin::metrics(&state),
        _ => ApiError::NotFound.into_response(),
    }
}

#[cfg(test)]
mod tests {
    /// Most bytes the future of one public request may take. hyper moves each request's
    /// future in memory as a whole, so its size is paid on every redirect; before the large
    /// branches (creates, stats, cache misses) were boxed it was 8.4 KiB, and memmove was 6 %
    /// of the service's CPU time in a profile of cached redirects (docs/benchmarks.md).
    const MAX_REQUEST_FUTURE_BYTES: usize = 2048;

    fn future_size<A, B, C, F>(_: impl Fn(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn the_redirect_path_future_stays_small() {
        let size = future_size(super::handle_public);
        assert!(
            size <= MAX_REQUEST_FUTURE_BYTES,
            "handle_public's future is {size} bytes; box the large branch that grew it"
        );
    }
}
