//! **shortener**: a URL shortener built for high redirect volume.
//!
//! Follow one redirect: [`http::serve`] accepts the connection, `http::router` picks the
//! redirect handler, which parses the code ([`domain::Code`]), decodes it to an id
//! ([`ids::CodeCodec`]), looks the link up in Postgres ([`storage::Db::find_link`]), counts
//! the click in memory ([`clicks::ClickRecorder`]) and answers 302.
//!
//! | module | owns | never does |
//! | --- | --- | --- |
//! | [`config`] | flags and environment, validated all at once | read anything after start-up |
//! | [`app`] | shared state and [`run`]: start, serve, drain, stop | speak SQL or HTTP itself |
//! | [`http`] | hyper server, routing, handlers, problem+json | SQL; it is the only module with hyper types |
//! | [`domain`] | validated newtypes (URLs, aliases, codes, keys, client IPs) | I/O |
//! | [`ids`] | Snowflake ids and the keyed code permutation | I/O |
//! | [`storage`] | pools, prepared statements, every SQL statement, migrations | know about HTTP |
//! | [`clicks`] | in-memory click tallies and the batch flusher | write to the database on the redirect path |
//! | [`lease`] | keeping the worker-id lease alive | issue ids itself |
//! | [`shutdown`], [`telemetry`] | signals; logs | |

pub mod app;
pub mod clicks;
pub mod config;
pub mod domain;
pub mod http;
pub mod ids;
pub mod lease;
pub mod shutdown;
pub mod storage;
pub mod telemetry;

pub use app::{App, Listeners, run};
