//! **shortener**: a URL shortener built for high redirect volume.
//!
//! Follow one redirect: [`http::serve`] accepts the connection, `http::router` picks the
//! redirect handler, which calls [`links::Resolver::redirect`]: the code ([`domain::Code`])
//! is looked up in moka ([`links::LinkCache`]); on a miss, once for every concurrent request,
//! in Postgres ([`storage::Db::find_link_on_replica`], then the primary; the generated code decoded to its id by
//! [`ids::CodeCodec`]); the click is counted in memory ([`clicks::ClickRecorder`]); the
//! handler answers 302 with the `Location` value cached with the link.
//!
//! | module | owns | never does |
//! | --- | --- | --- |
//! | [`config`] | flags and environment, validated all at once | read anything after start-up |
//! | [`app`] | shared state and [`run`]: start, serve, drain, stop | speak SQL or HTTP itself |
//! | [`http`] | hyper server, routing, parsing requests, rendering answers, problem+json | SQL, tier order; it is the only module with hyper types |
//! | [`links`] | the use cases: [`links::Resolver`] (moka → Redis → replica → primary, single-flight, negative entries, the Redis breaker) and [`links::Creator`] (ids, codes, idempotency) | hyper types, SQL text |
//! | [`domain`] | validated newtypes (URLs, aliases, codes, keys, client IPs) | I/O |
//! | [`ids`] | Snowflake ids and the keyed code permutation | I/O |
//! | [`storage`] | pools by role, prepared statements, every SQL statement, migrations, the Redis client and its commands | business rules, HTTP |
//! | [`clicks`] | in-memory click tallies and the batch flusher | write to the database on the redirect path |
//! | [`lease`] | keeping the worker-id lease alive | issue ids itself |
//! | [`limits`] | per-client rate limits: `N/s,burst=M`, the client key (/64 for IPv6), the in-process GCRA limiter | I/O |
//! | [`readiness`] | probing the databases on connections of their own for `/readyz` | borrow request connections |
//! | [`seed`] | `shortener seed`: links for load tests, written with COPY under a leased worker id | run inside the service |
//! | [`shutdown`], [`telemetry`] | signals; logs | |

pub mod app;
pub mod clicks;
pub mod config;
pub mod domain;
pub mod http;
pub mod ids;
pub mod lease;
pub mod limits;
pub mod links;
pub mod readiness;
pub mod seed;
pub mod shutdown;
pub mod storage;
pub mod telemetry;

pub use app::{App, Listeners, run};
