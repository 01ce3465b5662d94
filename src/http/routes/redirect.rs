//! `GET|HEAD /{code}`: the redirect.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, LOCATION, USER_AGENT};
use http::{HeaderValue, Method};
use http_body_util::Full;
use hyper::body::Incoming;

use super::find_link;
use crate::app::App;
use crate::clicks::is_bot;
use crate::domain::TargetUrl;
use crate::http::{ApiError, Response};

pub async fn handle(app: &App, request: &http::Request<Incoming>, code: &str) -> Response {
    match redirect(app, request, code).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn redirect(
    app: &App,
    request: &http::Request<Incoming>,
    code: &str,
) -> Result<Response, ApiError> {
    let link = find_link(app, code).await?;
    if link.is_gone() {
        return Err(ApiError::Gone);
    }
    if !TargetUrl::is_redirectable(&link.target_url) {
        tracing::error!(
            link_id = link.id,
            "stored target is not http(s); refusing to redirect"
        );
        return Err(ApiError::NotFound);
    }
    let location = HeaderValue::from_maybe_shared(Bytes::from(link.target_url))
        .map_err(|_| ApiError::Internal)?;
    if request.method() == Method::GET {
        let agent = request
            .headers()
            .get(USER_AGENT)
            .map_or(&b""[..], HeaderValue::as_bytes);
        app.clicks.record(link.id, is_bot(agent));
    }
    let mut response = http::Response::new(Full::new(Bytes::new()));
    *response.status_mut() = app.redirect_status;
    response.headers_mut().insert(LOCATION, location);
    response
        .headers_mut()
        .insert(CACHE_CONTROL, app.redirect_cache_control.clone());
    Ok(response)
}
