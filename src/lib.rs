//! **shortener**: a URL shortener built for high redirect volume.
//!
//! Follow one redirect: [`http::serve`] accepts the connection, `http::router` picks the
//! redirect handler, which calls [`links::Resolver::redirect`] with the parsed
//! [`domain::Code`]: the code is looked up in moka ([`links::LinkCache`]); on a miss, once for
//! every concurrent request, in Redis and then Postgres ([`storage::Db::find_link_on_replica`],
//! then the primary; the generated code decoded to its id by [`ids::CodeCodec`]); the click is
//! counted in memory ([`clicks::ClickRecorder`]); the handler answers 302 with the `Location`
//! value cached with the link.
//!
//! Layers, top to bottom; a module imports only modules on its own row or below (the full
//! table, checked by `tests/architecture.rs`, is in ARCHITECTURE.md):
//!
//! | module | owns | never does |
//! | --- | --- | --- |
//! | [`cli`] | the subcommands: `serve`, `migrate`, `disable`, `enable`, `seed` | serve requests itself |
//! | [`startup`] | [`startup::Application`]: build everything from the configuration, run, drain in stages | speak SQL or HTTP itself |
//! | [`config`] | flags and environment, parsed into typed sections, every problem reported together | read anything after start-up |
//! | [`signals`] | SIGTERM/SIGINT to a stop, SIGHUP to a blocklist reload | |
//! | [`http`] | hyper server, routing, parsing requests into domain types, rendering answers and problem+json; [`http::State`] | SQL, Redis, tier order; it is the only module with hyper types |
//! | [`status`] | what `/readyz` and the sampled metrics report, and the prober behind them | change what it reports on |
//! | [`links`] | the use cases: [`links::Resolver`] (moka → Redis → replica → primary, single-flight, negative entries, the Redis breaker) and [`links::Creator`] (ids, codes, idempotency, group commit) | hyper types, SQL text |
//! | [`limits`] | per-client rate limits: `N/s,burst=M`, the client key (/64 for IPv6), the in-process GCRA limiter, the create limit shared through Redis | I/O, but for the shared create limit's one Redis call |
//! | [`clicks`] | in-memory click tallies and the batch flusher | write to the database on the redirect path |
//! | [`lease`] | keeping the worker-id lease alive | issue ids itself |
//! | [`storage`] | pools by role, prepared statements, every SQL statement, migrations, the Redis client and its commands | business rules, HTTP |
//! | [`telemetry`] | logs, metrics, request ids | I/O beyond writing logs |
//! | [`domain`], [`ids`], [`clock`] | validated newtypes (URLs, aliases, codes, keys, client IPs); Snowflake ids and the keyed code permutation; the wall clock the use cases read, which tests move | I/O |

pub mod cli;
pub mod clicks;
pub mod clock;
pub mod config;
pub mod domain;
pub mod http;
pub mod ids;
pub mod lease;
pub mod limits;
pub mod links;
pub mod signals;
pub mod startup;
pub mod status;
pub mod storage;
pub mod telemetry;

pub use startup::Application;
