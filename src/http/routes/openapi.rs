//! `GET /openapi.json`: the OpenAPI 3.1 document, compiled into the binary.

use http::StatusCode;

use super::json_response;
use crate::http::Response;

pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

pub fn handle() -> Response {
    json_response(StatusCode::OK, OPENAPI_JSON)
}
