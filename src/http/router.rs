//! Method and path to handler. Every route of both listeners is listed here.
//!
//! Main listener: `POST /shorten`, `GET|HEAD /openapi.json`, `GET|HEAD /{code}` (a trailing
//! slash and any query are ignored), `GET|HEAD /{code}/stats`.
//! Admin listener: `GET /healthz`, `GET /readyz`, `GET /metrics` (reserved).

use std::net::SocketAddr;
use std::sync::Arc;

use http::Method;
use hyper::body::Incoming;

use super::routes::{admin, openapi, redirect, shorten, stats};
use super::{ApiError, Response};
use crate::app::App;

const GET_HEAD: &str = "GET, HEAD";

pub async fn handle_public(
    app: Arc<App>,
    request: http::Request<Incoming>,
    peer: SocketAddr,
) -> Response {
    let method = request.method();
    let is_read = method == Method::GET || method == Method::HEAD;
    match request.uri().path() {
        "/shorten" if method == Method::POST => shorten::handle(&app, request, peer).await,
        "/shorten" => ApiError::MethodNotAllowed("POST").into_response(),
        "/openapi.json" if is_read => openapi::handle(),
        "/openapi.json" => ApiError::MethodNotAllowed(GET_HEAD).into_response(),
        path => {
            let rest = path.strip_prefix('/').unwrap_or(path);
            let rest = rest.strip_suffix('/').unwrap_or(rest);
            match rest.split_once('/') {
                None if is_read => redirect::handle(&app, &request, rest).await,
                Some((code, "stats")) if is_read => stats::handle(&app, code).await,
                None | Some((_, "stats")) => ApiError::MethodNotAllowed(GET_HEAD).into_response(),
                Some(_) => ApiError::NotFound.into_response(),
            }
        }
    }
}

pub async fn handle_admin(
    app: Arc<App>,
    request: http::Request<Incoming>,
    _peer: SocketAddr,
) -> Response {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return ApiError::MethodNotAllowed(GET_HEAD).into_response();
    }
    match request.uri().path() {
        "/healthz" => admin::healthz(),
        "/readyz" => admin::readyz(&app),
        "/metrics" => ApiError::NotImplemented.into_response(),
        _ => ApiError::NotFound.into_response(),
    }
}
