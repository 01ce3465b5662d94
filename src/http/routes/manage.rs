//! The routes of a link's owner (API key required): `GET /links` (a page of its links),
//! `PATCH /{code}` (an edit) and `DELETE /{code}`. The request and response JSON are here;
//! who may do what is `links::Manager`'s.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, ETAG, IF_MATCH};
use http::{HeaderValue, Method, StatusCode};
use hyper::body::Incoming;
use serde::Serialize;

use super::{entity_tags, json_response, rfc3339};
use crate::domain::{Code, ExpiresAt, TargetUrl};
use crate::http::body::read_limited;
use crate::http::{ApiError, Response, State};
use crate::links::{Caller, Cursor, DEFAULT_PAGE, Edit, MAX_PAGE, ManagedLink};

/// A link as its owner sees it: the 201 body of a create and its state.
#[derive(Serialize)]
pub(super) struct LinkBody<'a> {
    code: &'a str,
    short_url: &'a str,
    url: &'a str,
    created_at: String,
    expires_at: Option<String>,
    clicks: i64,
    disabled: bool,
    max_visits: Option<i64>,
    visits_left: Option<i64>,
    etag: String,
}

impl<'a> LinkBody<'a> {
    pub(super) fn of(managed: &'a ManagedLink) -> Self {
        let link = &managed.link;
        LinkBody {
            code: &link.code,
            short_url: &managed.short_url,
            url: &link.target_url,
            created_at: rfc3339(link.created_at),
            expires_at: link.expires_at.map(rfc3339),
            clicks: managed.clicks,
            disabled: link.disabled_at.is_some(),
            max_visits: link.max_visits,
            visits_left: link.visits_left,
            etag: managed.etag(),
        }
    }
}

#[derive(Serialize)]
struct PageBody<'a> {
    items: Vec<LinkBody<'a>>,
    next_cursor: Option<String>,
}

/// `GET /links?limit=N&cursor=C`.
pub async fn list(state: &State, request: http::Request<Incoming>, caller: Caller) -> Response {
    let Some(holder) = caller.holder() else {
        return ApiError::KeyRequired.into_response();
    };
    let (limit, cursor) = match query(request.uri().query().unwrap_or_default()) {
        Ok(query) => query,
        Err(error) => return error.into_response(),
    };
    match state.manager.list(holder, cursor, limit).await {
        Ok(page) => {
            let body = PageBody {
                items: page.items.iter().map(LinkBody::of).collect(),
                next_cursor: page.next.map(|cursor| cursor.0.to_string()),
            };
            json(StatusCode::OK, &body)
        }
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// `limit` (1–1000, 100 when absent) and `cursor` (a page's `next_cursor`).
fn query(raw: &str) -> Result<(u16, Option<Cursor>), ApiError> {
    let (mut limit, mut cursor) = (DEFAULT_PAGE, None);
    for (name, value) in url::form_urlencoded::parse(raw.as_bytes()) {
        match &*name {
            "limit" => {
                limit = value
                    .parse::<u16>()
                    .ok()
                    .filter(|limit| (1..=MAX_PAGE).contains(limit))
                    .ok_or_else(|| {
                        ApiError::InvalidRequest(format!("limit must be 1 to {MAX_PAGE}"))
                    })?;
            }
            // A link id: the links below it come next. Any decimal of up to 19 digits reads as
            // one (past the largest id, the first page; 0, nothing), as `openapi.json` says.
            "cursor" => {
                let id = Some(value)
                    .filter(|value| (1..=19).contains(&value.len()))
                    .and_then(|value| value.parse::<u64>().ok())
                    .ok_or_else(|| {
                        ApiError::InvalidRequest("cursor must be the next_cursor of a page".into())
                    })?;
                cursor = Some(Cursor(i64::try_from(id).unwrap_or(i64::MAX)));
            }
            // Other parameters are left alone, as a redirect's query is.
            _ => {}
        }
    }
    Ok((limit, cursor))
}

/// `PATCH /{code}` or `DELETE /{code}`.
pub async fn change(
    state: &State,
    code: Code,
    request: http::Request<Incoming>,
    caller: Caller,
) -> Response {
    let Some(holder) = caller.holder() else {
        return ApiError::KeyRequired.into_response();
    };
    let if_match = match entity_tags(request.headers(), &IF_MATCH) {
        Ok(if_match) => if_match,
        Err(error) => return error.into_response(),
    };
    if request.method() == Method::DELETE {
        return match state.manager.delete(holder, &code, if_match).await {
            Ok(()) => {
                let mut response = http::Response::new(crate::http::Body::default());
                *response.status_mut() = StatusCode::NO_CONTENT;
                response
            }
            Err(error) => ApiError::from(error).into_response(),
        };
    }
    let edit = match read_edit(state, request).await {
        Ok(edit) => edit,
        Err(error) => return error.into_response(),
    };
    match state.manager.update(holder, &code, edit, if_match).await {
        Ok(managed) => {
            let mut response = json(StatusCode::OK, &LinkBody::of(&managed));
            if let Ok(etag) = HeaderValue::from_str(&managed.etag()) {
                response.headers_mut().insert(ETAG, etag);
            }
            response
        }
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// The body of a `PATCH`: any of `url`, `expires_at` (RFC 3339 or `null`) and `disabled`.
async fn read_edit(state: &State, request: http::Request<Incoming>) -> Result<Edit, ApiError> {
    let media_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(str::trim);
    if !media_type.is_some_and(|media| {
        media.eq_ignore_ascii_case("application/json")
            || media.eq_ignore_ascii_case("application/merge-patch+json")
    }) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let body: Bytes = read_limited(request, state.settings.body_read_timeout).await?;
    let json: serde_json::Value =
        serde_json::from_slice(&body).map_err(|error| ApiError::InvalidJson(error.to_string()))?;
    let serde_json::Value::Object(fields) = json else {
        return Err(invalid("the body must be a JSON object"));
    };
    if fields.is_empty() {
        return Err(invalid("give at least one of url, expires_at, disabled"));
    }
    let mut edit = Edit::default();
    for (name, value) in fields {
        match (name.as_str(), value) {
            ("url", serde_json::Value::String(url)) => {
                edit.target = Some(TargetUrl::parse(&url)?);
            }
            ("url", _) => return Err(invalid("url must be a string")),
            ("expires_at", serde_json::Value::Null) => edit.expires_at = Some(None),
            ("expires_at", serde_json::Value::String(at)) => {
                edit.expires_at = Some(Some(ExpiresAt::parse(&at)?));
            }
            ("expires_at", _) => return Err(invalid("expires_at must be a string or null")),
            ("disabled", serde_json::Value::Bool(disabled)) => edit.disabled = Some(disabled),
            ("disabled", _) => return Err(invalid("disabled must be true or false")),
            (other, _) => {
                return Err(invalid(&format!(
                    "unknown field `{other}`; expected url, expires_at or disabled"
                )));
            }
        }
    }
    Ok(edit)
}

fn invalid(detail: &str) -> ApiError {
    ApiError::InvalidRequest(format!("invalid request body: {detail}"))
}

fn json(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(json) => json_response(status, json),
        Err(error) => {
            tracing::error!(error = %crate::telemetry::Chain(&error), "answered 500: the body could not be written");
            ApiError::Internal.into_response()
        }
    }
}
