//! Method and path to handler. Every route of both listeners is listed here.
//!
//! Main listener: `POST /shorten`, `GET /links` (API key), `GET|HEAD /openapi.json`,
//! `GET|HEAD /{code}` (a trailing slash and any query are ignored), `PATCH|DELETE /{code}` (API
//! key), `GET|HEAD /{code}/stats`.
//! Admin listener: `GET /healthz`, `GET /readyz`, `GET /metrics` (Prometheus text format).
//!
//! A request is routed without any `.await`; then, for the routes that take an API key, the key
//! is checked (from memory); then its rate limit is decided (per key when it sent one, else per
//! client address); then its handler runs.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::future::Either;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Method};
use hyper::body::Incoming;

use super::client::client_ip;
use super::cors;
use super::routes::{admin, batch, manage, openapi, qr, redirect, shorten, stats};
use super::{ApiError, HttpSettings, Response, State};
use crate::domain::{ApiKey, ClientIp, Code};
use crate::limits::{Decision, LimitKey, LimitedRoute, RateSpec};
use crate::links::{AuthError, Caller, Visit};
use crate::telemetry::metrics::{HttpMethod, HttpRoute};
use crate::telemetry::{AccessLog, Chain, RequestId, request_span, with_request_id};
use std::num::NonZeroU32;
use std::time::Instant;
use tracing::Instrument;

const GET_HEAD: &str = "GET, HEAD";
const CODE_METHODS: &str = "GET, HEAD, PATCH, DELETE";

/// What a public request asks for, taken out of the request before any `.await`.
enum Route {
    /// The request is no longer needed: the code was copied out of it, so the connection's
    /// read buffer is free for the next request while the lookup runs (see [`Code`]).
    Redirect {
        code: Code,
        visit: Visit,
    },
    /// The key sent, if any: the target of a link with a visit limit is its owner's to see.
    Stats {
        code: Code,
        authorization: Option<Box<HeaderValue>>,
    },
    /// A link's QR code: the request kept for its query and `If-None-Match`.
    Qr {
        code: Code,
        request: Box<http::Request<Incoming>>,
    },
    /// Boxed, so the common redirect's future does not carry a whole request's room.
    Shorten(Box<http::Request<Incoming>>),
    /// Limited in its handler: its cost (one token per item) is known once its body is read.
    ShortenBatch(Box<http::Request<Incoming>>),
    Links(Box<http::Request<Incoming>>),
    /// `PATCH` or `DELETE` of a link.
    Change {
        code: Code,
        request: Box<http::Request<Incoming>>,
    },
    OpenApi,
    /// A CORS preflight of an API route: answered before any limit.
    Preflight(HttpRoute),
    /// A read of a path that can name no link: 404, counted as a redirect (scanners pay).
    Unknown,
    Refused(HttpRoute, ApiError),
}

/// Whether a route takes an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keys {
    /// Never looked at.
    None,
    /// Optional: used when sent.
    Optional,
    /// Required: a request without one is 401.
    Required,
}

impl Route {
    /// The limit this request counts toward, if any.
    fn limit(&self) -> Option<LimitedRoute> {
        match self {
            Route::Redirect { .. } | Route::Unknown => Some(LimitedRoute::Redirect),
            Route::Stats { .. } | Route::Links(_) | Route::Qr { .. } => Some(LimitedRoute::Stats),
            Route::Shorten(_) | Route::Change { .. } => Some(LimitedRoute::Create),
            Route::ShortenBatch(_) | Route::OpenApi | Route::Preflight(_) | Route::Refused(..) => {
                None
            }
        }
    }

    /// The `http_route` label: the route's template, never the path.
    fn label(&self) -> HttpRoute {
        match self {
            Route::Redirect { .. } | Route::Change { .. } => HttpRoute::Redirect,
            Route::Stats { .. } => HttpRoute::Stats,
            Route::Qr { .. } => HttpRoute::Qr,
            Route::Shorten(_) => HttpRoute::Shorten,
            Route::ShortenBatch(_) => HttpRoute::ShortenBatch,
            Route::Links(_) => HttpRoute::Links,
            Route::OpenApi => HttpRoute::OpenApi,
            Route::Preflight(route) | Route::Refused(route, _) => *route,
            Route::Unknown => HttpRoute::Other,
        }
    }

    /// Whether it takes a key, and which `Authorization` it sent.
    fn authorization(&self) -> (Keys, Option<&HeaderValue>) {
        fn header(request: &http::Request<Incoming>) -> Option<&HeaderValue> {
            request.headers().get(AUTHORIZATION)
        }
        match self {
            Route::Stats { authorization, .. } => (Keys::Optional, authorization.as_deref()),
            Route::Shorten(request) | Route::ShortenBatch(request) => {
                (Keys::Optional, header(request))
            }
            Route::Links(request) | Route::Change { request, .. } => {
                (Keys::Required, header(request))
            }
            _ => (Keys::None, None),
        }
    }

    /// A CORS route: an API route a browser page may call (redirects never are), its
    /// refusals included (a page reads why it was refused), and the OpenAPI document.
    fn is_cors(&self) -> bool {
        matches!(
            self,
            Route::Shorten(_)
                | Route::ShortenBatch(_)
                | Route::Stats { .. }
                | Route::Links(_)
                | Route::Change { .. }
                | Route::Preflight(_)
                | Route::OpenApi
                // A code's refusals are of methods other than GET and HEAD: API calls.
                | Route::Refused(
                    HttpRoute::Shorten
                        | HttpRoute::ShortenBatch
                        | HttpRoute::Links
                        | HttpRoute::Stats
                        | HttpRoute::Redirect
                        | HttpRoute::OpenApi,
                    _
                )
        )
    }
}

/// The `http_request_method` label.
fn method_label(method: &Method) -> HttpMethod {
    match *method {
        Method::GET => HttpMethod::Get,
        Method::HEAD => HttpMethod::Head,
        Method::POST => HttpMethod::Post,
        Method::PATCH => HttpMethod::Patch,
        Method::DELETE => HttpMethod::Delete,
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
    let route = route(request, cors);
    let label = route.label();
    let cors_route = cors && route.is_cors();
    // Decided here, in memory, for requests that send no key: redirects (which never take
    // one) and anonymous stats. The others are decided once their key is checked.
    let decided = match route.authorization() {
        (Keys::None, _) | (Keys::Optional, None) => route.limit().and_then(|limit| {
            state
                .limits
                .check(limit, LimitKey::of(client.get()))
                .map(|(spec, decision)| (limit, spec, decision))
        }),
        _ => None,
    };
    let request = Request {
        state,
        decided,
        client,
        cors_route,
        origin,
        id: request_id.clone(),
        started,
        label,
        method,
    };
    // The futures are built here, not inside an `async move` around them: an async block
    // keeps room for what it captured even after moving it into the future it awaits, and
    // this future is moved in memory on every request. A redirect, the request this service
    // exists for, takes a path of its own that holds only what it needs; the other routes
    // are boxed, so their room is not carried by every redirect's future.
    match route {
        Route::Redirect { code, visit } => Either::Left(with_request_id(
            request_id,
            answer_redirect(request, code, visit),
        )),
        route => Either::Right(Box::pin(with_request_id(
            request_id,
            answer(request, route),
        ))),
    }
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

/// What the routing found out about a request of the main listener, besides its route.
struct Request {
    state: Arc<State>,
    /// The limit decided in memory (redirects, anonymous stats).
    decided: Option<(LimitedRoute, RateSpec, Decision)>,
    client: ClientIp,
    cors_route: bool,
    origin: Option<HeaderValue>,
    id: RequestId,
    started: Option<Instant>,
    label: HttpRoute,
    method: HttpMethod,
}

/// The answer to a redirect: its limit (decided in memory), the lookup, `Connection: close`
/// while draining; then what every answer gets ([`Request::record`]). A redirect takes no
/// key and is no CORS route.
async fn answer_redirect(request: Request, code: Code, visit: Visit) -> Response {
    let state = &request.state;
    let mut response = match request.decided {
        Some((limit, spec, decision)) if !decision.allowed => {
            let mut response = ApiError::RateLimited(decision.retry_after_seconds).into_response();
            add_rate_limit_fields(&mut response, limit, spec, decision);
            response
        }
        decided => {
            let mut response = redirect::handle(state, &code, visit).await;
            // Redirects never carry the fields (the draft advises against them on 3xx).
            if let Some((limit, spec, decision)) = decided
                && !response.status().is_redirection()
            {
                add_rate_limit_fields(&mut response, limit, spec, decision);
            }
            response
        }
    };
    if state.draining() {
        response
            .headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    request.record(response)
}

impl Request {
    /// What every answer of the main listener gets: its metrics, its access-log line and its
    /// `X-Request-Id`.
    fn record(self, mut response: Response) -> Response {
        let status = response.status().as_u16();
        let elapsed = self
            .started
            .map(|started| started.elapsed())
            .unwrap_or_default();
        let state = &self.state;
        state
            .metrics
            .http
            .observe(self.label, self.method, status, elapsed);
        let settings = &state.settings;
        if settings.access_log.logs(status, settings.access_log_sample) {
            tracing::info!(
                target: "access",
                request_id = %self.id,
                method = self.method.label(),
                route = self.label.label(),
                status,
                duration_us = elapsed.as_micros() as u64,
                client = %self.client.get(),
                "request"
            );
        }
        if let Ok(value) = self.id.with_text(HeaderValue::from_str) {
            response.headers_mut().insert(X_REQUEST_ID, value);
        }
        response
    }
}

/// The answer to a routed request other than a redirect: its key, its limit, its handler,
/// the headers every answer of its route carries; then [`Request::record`].
async fn answer(request: Request, route: Route) -> Response {
    let state = &*request.state;
    let (decided, client, cors_route) = (request.decided, request.client, request.cors_route);
    let origin = request.origin.as_ref();
    // What every answer of the route carries: CORS for the API routes (a page must be able
    // to read why it was refused, too), and `Connection: close` while draining.
    let finish = |mut response: Response| {
        if cors_route {
            cors::decorate(&mut response, origin);
        }
        if state.draining() {
            response
                .headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    };
    let response = 'answer: {
        let caller = match route.authorization() {
            (Keys::None, _) | (Keys::Optional, None) => Caller::Anonymous(client),
            (Keys::Required, None) => break 'answer finish(ApiError::KeyRequired.into_response()),
            (_, Some(authorization)) => match authenticate(state, authorization, client).await {
                Ok(caller) => caller,
                Err(error) => break 'answer finish(error.into_response()),
            },
        };
        if let Route::Shorten(_) | Route::ShortenBatch(_) = route
            && state.settings.require_key_for_create
            && caller.holder().is_none()
        {
            break 'answer finish(ApiError::KeyRequired.into_response());
        }
        let mut limited = match &route {
            Route::Shorten(_) | Route::Change { .. } => state
                .limits
                .check_create(caller.limit_key(), NonZeroU32::MIN)
                .await
                .map(|(spec, decision)| (LimitedRoute::Create, spec, decision)),
            Route::Links(_) | Route::Stats { .. } if caller.holder().is_some() => state
                .limits
                .check(LimitedRoute::Stats, caller.limit_key())
                .map(|(spec, decision)| (LimitedRoute::Stats, spec, decision)),
            _ => decided,
        };
        if let Some((limit, spec, decision)) = limited
            && !decision.allowed
        {
            let mut response = ApiError::RateLimited(decision.retry_after_seconds).into_response();
            add_rate_limit_fields(&mut response, limit, spec, decision);
            break 'answer finish(response);
        }
        let mut response = match route {
            // Taken by `answer_redirect`; answered here the same way all the same.
            Route::Redirect { code, visit } => redirect::handle(state, &code, visit).await,
            Route::Stats { code, .. } => {
                stats::handle(state, &code, caller)
                    .instrument(request_span())
                    .await
            }
            Route::Qr { code, request } => {
                let (query, headers) = (request.uri().query(), request.headers());
                qr::handle(state, code, query, headers)
                    .instrument(request_span())
                    .await
            }
            Route::Shorten(create) => {
                shorten::handle(state, *create, caller)
                    .instrument(request_span())
                    .await
            }
            Route::ShortenBatch(create) => {
                let (response, decided) = batch::handle(state, *create, caller)
                    .instrument(request_span())
                    .await;
                // Its limit was decided in the handler: the fields are added below.
                limited = decided.map(|(spec, decision)| (LimitedRoute::Create, spec, decision));
                response
            }
            Route::Links(list) => {
                manage::list(state, *list, caller)
                    .instrument(request_span())
                    .await
            }
            Route::Change {
                code,
                request: change,
            } => {
                manage::change(state, code, *change, caller)
                    .instrument(request_span())
                    .await
            }
            Route::OpenApi => openapi::handle(),
            Route::Preflight(_) => break 'answer cors::preflight(origin),
            Route::Unknown => ApiError::NotFound.into_response(),
            Route::Refused(_, error) => error.into_response(),
        };
        // Redirects never carry the fields (the draft advises against them on 3xx).
        if let Some((limit, spec, decision)) = limited
            && !response.status().is_redirection()
        {
            add_rate_limit_fields(&mut response, limit, spec, decision);
        }
        finish(response)
    };
    request.record(response)
}

/// The caller an `Authorization: Bearer <key>` names.
async fn authenticate(
    state: &State,
    authorization: &HeaderValue,
    client: ClientIp,
) -> Result<Caller, ApiError> {
    let key = authorization
        .as_bytes()
        .strip_prefix(b"Bearer ")
        .or_else(|| authorization.as_bytes().strip_prefix(b"bearer "))
        .and_then(|key| ApiKey::parse(key.trim_ascii()).ok())
        .ok_or(ApiError::KeyInvalid)?;
    match state.keys.authenticate(&key, client.get()).await {
        Ok(holder) => Ok(Caller::Key { holder, client }),
        Err(AuthError::Invalid) => Err(ApiError::KeyInvalid),
        Err(error @ (AuthError::Stale { .. } | AuthError::Unavailable(_))) => {
            crate::throttled!(warn, error = %Chain(&error), "keyed request answered 503: its key could not be checked");
            Err(ApiError::KeysUnavailable)
        }
    }
}

/// The API routes a browser page may call: creates, listing, a link's changes and stats.
fn is_cors_path(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    if matches!(path, "/shorten" | "/shorten/batch" | "/links") {
        return true;
    }
    let rest = path.strip_prefix('/').unwrap_or(path);
    let code = rest.strip_suffix("/stats").unwrap_or(rest);
    !code.is_empty() && !code.contains('/')
}

/// The route label of a preflight's path.
fn preflight_label(path: &str) -> HttpRoute {
    match path.trim_end_matches('/') {
        "/shorten" => HttpRoute::Shorten,
        "/shorten/batch" => HttpRoute::ShortenBatch,
        "/links" => HttpRoute::Links,
        path if path.ends_with("/stats") => HttpRoute::Stats,
        _ => HttpRoute::Redirect,
    }
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

/// `/{code}/qr`: GET or HEAD of a code that can name a link.
fn qr_route(code: Option<Code>, request: http::Request<Incoming>) -> Route {
    let method = request.method();
    if method != Method::GET && method != Method::HEAD {
        return Route::Refused(HttpRoute::Qr, ApiError::MethodNotAllowed(GET_HEAD));
    }
    match code {
        Some(code) => Route::Qr {
            code,
            request: Box::new(request),
        },
        None => Route::Refused(HttpRoute::Qr, ApiError::NotFound),
    }
}

/// What a request of the main listener asks for, taken out of it without any `.await`.
fn route(request: http::Request<Incoming>, cors: bool) -> Route {
    // RFC 9112 §3.2: an HTTP/1.1 request carries exactly one Host (HTTP/1.0 may have none).
    if request.version() == http::Version::HTTP_11
        && request.headers().get_all(http::header::HOST).iter().count() != 1
    {
        return Route::Refused(HttpRoute::Other, ApiError::BadHost);
    }
    let method = request.method();
    let is_read = method == Method::GET || method == Method::HEAD;
    if cors && method == Method::OPTIONS && is_cors_path(request.uri().path()) {
        return Route::Preflight(preflight_label(request.uri().path()));
    }
    match request.uri().path() {
        "/shorten" if method == Method::POST => Route::Shorten(Box::new(request)),
        "/shorten" => Route::Refused(HttpRoute::Shorten, ApiError::MethodNotAllowed("POST")),
        "/shorten/batch" if method == Method::POST => Route::ShortenBatch(Box::new(request)),
        "/shorten/batch" => {
            Route::Refused(HttpRoute::ShortenBatch, ApiError::MethodNotAllowed("POST"))
        }
        "/links" | "/links/" if method == Method::GET => Route::Links(Box::new(request)),
        "/links" | "/links/" => Route::Refused(HttpRoute::Links, ApiError::MethodNotAllowed("GET")),
        "/openapi.json" if is_read => Route::OpenApi,
        "/openapi.json" => Route::Refused(HttpRoute::OpenApi, ApiError::MethodNotAllowed(GET_HEAD)),
        path => {
            let rest = path.strip_prefix('/').unwrap_or(path);
            let rest = rest.strip_suffix('/').unwrap_or(rest);
            let (segment, stats) = match rest.split_once('/') {
                None => (rest, false),
                Some((code, "stats")) => (code, true),
                Some((code, "qr")) => {
                    let code = Code::parse(code);
                    return qr_route(code, request);
                }
                Some(_) if is_read => return Route::Unknown,
                Some(_) => return Route::Refused(HttpRoute::Other, ApiError::NotFound),
            };
            let changes = !stats && (method == Method::PATCH || method == Method::DELETE);
            if !is_read && !changes {
                return if stats {
                    Route::Refused(HttpRoute::Stats, ApiError::MethodNotAllowed(GET_HEAD))
                } else {
                    Route::Refused(
                        HttpRoute::Redirect,
                        ApiError::MethodNotAllowed(CODE_METHODS),
                    )
                };
            }
            // A segment that can never name a link is 404 without a lookup.
            let Some(code) = Code::parse(segment) else {
                return if changes {
                    Route::Refused(HttpRoute::Redirect, ApiError::NotFound)
                } else {
                    Route::Unknown
                };
            };
            if changes {
                Route::Change {
                    code,
                    request: Box::new(request),
                }
            } else if stats {
                Route::Stats {
                    code,
                    authorization: request
                        .headers()
                        .get(AUTHORIZATION)
                        .map(|value| Box::new(value.clone())),
                }
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
        "/healthz" => admin::healthz(&state),
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

    #[test]
    fn api_paths_take_preflights_and_redirects_do_not_carry_cors() {
        for path in ["/shorten", "/links", "/abc", "/abc/", "/abc/stats"] {
            assert!(super::is_cors_path(path), "{path}");
        }
        for path in ["/", "/abc/def", "/abc/def/stats"] {
            assert!(!super::is_cors_path(path), "{path}");
        }
    }
}
