//! `GET|HEAD /{code}`: the redirect.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, LOCATION, USER_AGENT};
use http::{HeaderValue, Method};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::clicks::click_kind;
use crate::domain::Code;
use crate::http::{ApiError, Response, State};
use crate::links::Visit;

pub async fn handle(state: &State, code: &Code, visit: Visit) -> Response {
    match state.resolver.redirect(code, visit).await {
        Ok(link) => {
            let mut response = http::Response::new(Full::new(Bytes::new()));
            *response.status_mut() = state.settings.redirect_status;
            let headers = response.headers_mut();
            headers.insert(LOCATION, link.location.clone());
            headers.insert(CACHE_CONTROL, state.settings.redirect_cache_control.clone());
            response
        }
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// A `GET` counts as a click (a person's or a bot's, by User-Agent); a `HEAD` does not.
pub fn visit(request: &http::Request<Incoming>) -> Visit {
    if request.method() != Method::GET {
        return Visit::Uncounted;
    }
    let agent = request
        .headers()
        .get(USER_AGENT)
        .map_or(&b""[..], HeaderValue::as_bytes);
    Visit::Counted(click_kind(agent))
}
