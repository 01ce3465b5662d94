//! `POST /shorten`: parse the request, hand it to [`Creator::create`], render the answer.
//!
//! [`Creator::create`]: crate::links::Creator::create

use http::header::{CONTENT_TYPE, LOCATION};
use http::{HeaderMap, HeaderValue};
use hyper::body::Incoming;

use super::json_response;
use crate::domain::{ClientIp, IdempotencyKey};
use crate::http::body::read_limited;
use crate::http::{ApiError, Response, State};
use crate::links::{CreateRequest, Created, Replay};

pub async fn handle(state: &State, request: http::Request<Incoming>, client: ClientIp) -> Response {
    match create(state, request, client).await {
        Ok(created) => render(created),
        Err(error) => error.into_response(),
    }
}

async fn create(
    state: &State,
    request: http::Request<Incoming>,
    client: ClientIp,
) -> Result<Created, ApiError> {
    require_json(request.headers())?;
    let key = idempotency_key(request.headers())?;
    let scope = client.get().to_string();
    let body = read_limited(request, state.settings.body_read_timeout).await?;
    let json =
        serde_json::from_slice(&body).map_err(|error| ApiError::InvalidJson(error.to_string()))?;
    let request = CreateRequest {
        scope: &scope,
        key,
        json,
    };
    Ok(state.creator.create(request).await?)
}

fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let media_type = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(str::trim);
    match media_type {
        Some(media_type) if media_type.eq_ignore_ascii_case("application/json") => Ok(()),
        _ => Err(ApiError::UnsupportedMediaType),
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    let mut values = headers.get_all("idempotency-key").iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::InvalidRequest(
            "send one Idempotency-Key header, not several".into(),
        ));
    }
    Ok(Some(IdempotencyKey::parse(value.as_bytes())?))
}

/// A 201 (or the stored status of a replay) with `Location: <short_url>`.
fn render(created: Created) -> Response {
    let mut response = json_response(created.status, created.body);
    if let Ok(location) = HeaderValue::from_str(&created.short_url) {
        response.headers_mut().insert(LOCATION, location);
    }
    if created.replay == Replay::Replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}
