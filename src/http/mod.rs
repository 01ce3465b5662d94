//! HTTP: the only module that knows hyper types.
//!
//! `server` accepts connections and enforces connection-level limits; `router` maps a method
//! and path to one handler in `routes`; a handler parses the request, calls one use case of
//! `links` and renders its answer, with `problem` for every error. No SQL, no tier order.

mod body;
mod client;
mod cors;
mod problem;
mod router;
mod routes;
mod server;
mod state;

use bytes::Bytes;
use http_body_util::Full;

pub use problem::ApiError;
pub use router::{handle_admin, handle_public};
pub use server::{ConnectionLimits, PerPeerCap, bind, serve};
pub use state::{HttpSettings, Services, State};

/// Every response body is complete before it is sent.
pub type Body = Full<Bytes>;
pub type Response = http::Response<Body>;
