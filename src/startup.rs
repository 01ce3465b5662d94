//! Build, then run. [`Application::build`] binds both listeners and wires every part from the
//! typed configuration (the admin listener and the background tasks start here, so `/readyz`
//! answers "starting" while the first worker-id lease is sought); [`Application::run_until_stopped`]
//! serves the main listener until a stop is asked for, then drains in stages within
//! `SHORTENER_SHUTDOWN_GRACE`. The one entry point of `shortener serve`, the integration tests
//! and the benchmarks.
//!
//! Shutdown is one tree: a root token with a child token per stage (`Stages`), and every
//! task the service starts (listeners, connections, background loops, Redis fill-backs,
//! slot-map re-reads, signal handling) on one `TaskTracker`. When `run_until_stopped` returns,
//! every one of them has ended (or the grace period ran out, which is logged).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

use crate::clicks::{ClickRecorder, run_flusher};
use crate::clock::Clock;
use crate::config::{KeySource, ServeConfig, ShutdownSettings};
use crate::http::{self, ConnectionLimits, Services, State, handle_admin, handle_public};
use crate::ids::{CodeCodec, IdGenerator};
use crate::lease::LeaseKeeper;
use crate::limits::RouteLimits;
use crate::links::{
    ChangeFeed, CreateWriter, Creator, KeyRing, LinkCache, Manager, Pruner, QrCodes, RemoteCache,
    Resolver, SchemaCheck,
};
use crate::signals::{self, TerminateSignals};
use crate::status::{Probes, Status, Watched, run_prober};
use crate::storage::{self, Db, RedisError, RedisStore, StorageError};
use crate::telemetry::Chain;
use crate::telemetry::metrics::{Layout, Metrics, UPKEEP_EVERY};

/// How long start-up waits for Redis before serving without it (it connects later).
const FIRST_REDIS_WAIT: Duration = Duration::from_secs(1);
/// How long start-up waits for the first worker-id lease before serving without one
/// (creates answer 503 until the background keeper gets it).
const FIRST_LEASE_WAIT: Duration = Duration::from_secs(5);
/// The last 1/N of the shutdown grace period is kept for writing pending clicks.
const FLUSH_SHARE_OF_GRACE: u32 = 5;

/// Why the service could not be built.
#[derive(Debug, Error)]
pub enum BuildError {
    /// A listener could not be bound (the address is in use, or not one of this host's).
    #[error("cannot listen on {address}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The Redis client could not be built from its settings.
    #[error("cannot set up the Redis client")]
    Redis(#[source] RedisError),
    /// A signal handler could not be registered.
    #[error("cannot register a signal handler")]
    Signal(#[source] std::io::Error),
    /// The admin listener's runtime or its thread could not be started.
    #[error("cannot start the admin runtime")]
    AdminRuntime(#[source] std::io::Error),
}

/// The runtime of the admin listener and the readiness prober: one thread of its own, so that
/// `/healthz`, `/readyz` and `/metrics` answer, and the prober probes, while the main runtime is
/// saturated by requests or wedged by a task that holds its threads. Its I/O (the admin
/// listener, the prober's connections) is registered with this runtime's own driver. The
/// thread ends when `end` is cancelled (the shutdown tree's root).
struct AdminRuntime {
    handle: tokio::runtime::Handle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AdminRuntime {
    fn start(end: CancellationToken) -> std::io::Result<AdminRuntime> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let thread = std::thread::Builder::new()
            .name("shortener-admin".to_owned())
            .spawn(move || runtime.block_on(end.cancelled()))?;
        Ok(AdminRuntime {
            handle,
            thread: Some(thread),
        })
    }

    /// Waits for the thread to end (after the root was cancelled), off the async runtime.
    async fn join(mut self, tasks: &TaskTracker) {
        if let Some(thread) = self.thread.take() {
            let _ = tasks.spawn_blocking(move || thread.join()).await;
        }
    }
}

/// The shutdown tree: cancelled one stage at a time by [`Application::run_until_stopped`], all
/// at once when the root is (the application dropped before it ran, or at the very end).
struct Stages {
    /// Cancels every stage when dropped.
    _root: DropGuard,
    /// A stop was asked for (SIGTERM, a test): readiness answers 503 from then on.
    stop: CancellationToken,
    /// The main listener stops accepting; in-flight requests finish.
    accept: CancellationToken,
    /// The background tasks stop: queued creates and pending clicks are written, the lease
    /// released.
    background: CancellationToken,
    /// The admin listener stops.
    admin: CancellationToken,
    /// Every task waits on this for the end (signal handlers): a clone of the root.
    end: CancellationToken,
}

impl Stages {
    fn new() -> Self {
        let root = CancellationToken::new();
        Stages {
            stop: root.child_token(),
            accept: root.child_token(),
            background: root.child_token(),
            admin: root.child_token(),
            end: root.clone(),
            _root: root.drop_guard(),
        }
    }
}

/// The service, built and ready to serve.
pub struct Application {
    main: TcpListener,
    main_address: SocketAddr,
    admin_address: SocketAddr,
    main_limits: ConnectionLimits,
    shutdown: ShutdownSettings,
    state: Arc<State>,
    status: Arc<Status>,
    cache: Arc<LinkCache>,
    redis: Option<RedisStore>,
    tasks: TaskTracker,
    stages: Stages,
    /// The admin listener's task (on `admin_runtime`).
    admin: JoinHandle<()>,
    admin_runtime: AdminRuntime,
    /// The tasks that stop with [`Stages::background`], waited for in that stage.
    background: Vec<JoinHandle<()>>,
}

impl Application {
    /// Binds both listeners (before anything else: a port in use fails start-up at once),
    /// connects what answers at start-up, starts the admin listener and the background tasks,
    /// and waits (bounded) for Redis and the first worker-id lease.
    pub async fn build(config: ServeConfig) -> Result<Application, BuildError> {
        Self::build_with_clock(config, Clock::system()).await
    }

    /// As [`Application::build`], the use cases reading `clock` (tests move it).
    pub async fn build_with_clock(
        config: ServeConfig,
        clock: Clock,
    ) -> Result<Application, BuildError> {
        let server = &config.server;
        let bind = |address| {
            http::bind(address, server.backlog)
                .and_then(|listener| Ok((listener.local_addr()?, listener)))
                .map_err(|source| BuildError::Listen { address, source })
        };
        let stages = Stages::new();
        let admin_runtime =
            AdminRuntime::start(stages.end.clone()).map_err(BuildError::AdminRuntime)?;
        let (main_address, main) = bind(server.listen)?;
        // Registered with the admin runtime's driver, which polls it whatever the main one does.
        let (admin_address, admin) = {
            let _admin_context = admin_runtime.handle.enter();
            bind(server.admin_listen)?
        };
        if config.creates.key_source == KeySource::Development {
            tracing::warn!("SHORTENER_CODE_KEY is not set: using the public development key");
        }
        let tasks = TaskTracker::new();

        let mut db = Db::connect_lazy(
            &config.database.primary,
            &config.database.replicas,
            &config.database.pools,
        );
        let cache = Arc::new(LinkCache::new(config.cache));
        let metrics = Arc::new(Metrics::recording(
            &Layout {
                databases: db.database_names(),
                pools: db.pool_layout(),
                cache_capacity: LinkCache::capacities(config.cache),
            },
            config.telemetry.metrics,
        ));
        db.count_in(metrics.db.clone());
        let redis = match &config.redis {
            None => None,
            Some(redis) => {
                let store = RedisStore::connect(&redis.settings, tasks.clone())
                    .map_err(BuildError::Redis)?
                    .with_metrics(metrics.redis.clone());
                if !store.wait_connected(FIRST_REDIS_WAIT).await {
                    tracing::warn!("redis is not reachable yet; serving without it until it is");
                }
                Some(store)
            }
        };
        let remote = redis
            .clone()
            .zip(config.redis.as_ref())
            .map(|(store, redis)| Arc::new(RemoteCache::new(store, redis.ttl, tasks.clone())));

        let mut background = Vec::new();
        let (writer, write_creates) = CreateWriter::with_metrics(
            db.clone(),
            config.creates.writer,
            stages.background.clone(),
            tasks.clone(),
            metrics.creates.clone(),
        );
        background.push(tasks.spawn(write_creates));
        let writer = Arc::new(writer);
        let ids = Arc::new(IdGenerator::new());
        let codec = CodeCodec::new(&config.creates.code_key);
        let clicks = Arc::new(ClickRecorder::new());
        let resolver = Resolver::new(
            Arc::clone(&cache),
            db.clone(),
            codec.clone(),
            Arc::clone(&clicks),
            config.database.replica_lag_bound,
        )
        .with_remote(remote.clone())
        .with_metrics(metrics.resolve.clone())
        .with_clock(clock.clone());
        let mut policy = config.creates.policy.clone();
        // A target may not point back at where this instance really listens.
        policy.listen = main_address;
        // The schema, checked before the first create (and by every probe from then on).
        let schema = Arc::new(SchemaCheck::new(storage::embedded_migrations()));
        // On the admin runtime: the prober's connection, made here, is then driven there.
        let first_read = tasks.spawn_on(
            {
                let db = db.clone();
                async move { db.applied_migrations(FIRST_REDIS_WAIT).await }
            },
            &admin_runtime.handle,
        );
        if let Ok(Some(applied)) = first_read.await {
            schema.check(&applied);
        }
        let creator = Creator::new(
            db.clone(),
            Arc::clone(&writer),
            Arc::clone(&ids),
            codec,
            Arc::clone(&cache),
            policy,
            config.creates.public_base_url.clone(),
        )
        .with_remote(remote.clone())
        .with_clock(clock.clone())
        .with_schema_check(Arc::clone(&schema));
        let limits = Arc::new(
            RouteLimits::new(config.limits, redis.clone()).with_metrics(metrics.limits.clone()),
        );
        let keys = Arc::new(KeyRing::new(db.clone(), clock.clone()));
        if let Err(error) = timeout(FIRST_REDIS_WAIT, keys.refresh())
            .await
            .unwrap_or(Err(StorageError::TimedOut(
                "the first read of the API keys took too long",
            )))
        {
            tracing::warn!(error = %Chain(&error), "API keys not read yet: keyed requests answer 503 until they are");
        }
        let feed = Arc::new(ChangeFeed::new(
            db.clone(),
            Arc::clone(&cache),
            remote.clone(),
            redis.clone(),
        ));
        if let Err(error) = timeout(FIRST_REDIS_WAIT, feed.start_at_the_end())
            .await
            .unwrap_or(Err(StorageError::TimedOut(
                "the change feed did not answer",
            )))
        {
            tracing::warn!(error = %Chain(&error), "the change feed is not read yet; it is from the start when it can be");
        }
        let subscriber = match &redis {
            Some(redis) => Some(redis.change_subscriber().map_err(BuildError::Redis)?),
            None => None,
        };
        let manager = Manager::new(
            db.clone(),
            Arc::clone(&feed),
            {
                let mut policy = config.creates.policy.clone();
                policy.listen = main_address;
                policy
            },
            config.creates.public_base_url.clone(),
            clock.clone(),
        );
        let probes = Arc::new(Probes::new(
            db.replica_count(),
            config.database.replica_lag_bound,
            schema,
        ));
        let status = Arc::new(Status::new(
            Watched {
                probes: Arc::clone(&probes),
                db: db.clone(),
                cache: Arc::clone(&cache),
                remote: remote.clone(),
                writer,
                ids: Arc::clone(&ids),
                limits: Arc::clone(&limits),
                keys: Arc::clone(&keys),
                metrics: Arc::clone(&metrics),
            },
            stages.stop.clone(),
        ));
        let resolver = Arc::new(resolver);
        let qr = QrCodes::new(
            Arc::clone(&resolver),
            config.creates.public_base_url.clone(),
            tasks.clone(),
        );
        let state = Arc::new(State::new(
            Services {
                resolver,
                qr,
                creator,
                manager,
                keys: Arc::clone(&keys),
                limits,
                status: Arc::clone(&status),
                metrics: Arc::clone(&metrics),
            },
            server.http.clone(),
        ));

        let stop_background = &stages.background;
        background.push(tasks.spawn_on(
            run_prober(
                probes,
                db.clone(),
                Arc::clone(&cache),
                stop_background.clone(),
            ),
            &admin_runtime.handle,
        ));
        if let Some(remote) = remote {
            background.push(tasks.spawn(remote.run_probe(stop_background.clone())));
        }
        background.push(tasks.spawn(run_flusher(
            clicks,
            db.clone(),
            config.clicks,
            metrics.clicks.clone(),
            stop_background.clone(),
        )));
        if metrics.is_on() {
            background.push(
                tasks.spawn(Arc::clone(&metrics).keep_up(UPKEEP_EVERY, stop_background.clone())),
            );
        }
        let pruner = Pruner::new(db.clone(), clock, config.retention, metrics.prune.clone());
        background.push(tasks.spawn(pruner.run(stop_background.clone())));
        background.push(tasks.spawn(keys.keep_fresh(stop_background.clone())));
        background.push(tasks.spawn(feed.run(subscriber, stop_background.clone())));
        if let Some(path) = &config.creates.blocklist_file {
            metrics
                .blocklist
                .entries
                .set(config.creates.policy.blocklist.len() as f64);
            background.push(tasks.spawn(signals::reload_blocklist(
                signals::hangup().map_err(BuildError::Signal)?,
                path.clone(),
                config.creates.policy.blocklist.clone(),
                config.creates.blocklist_watch,
                metrics.blocklist.clone(),
                stop_background.clone(),
            )));
        }

        let admin_limits = ConnectionLimits {
            per_peer: None,
            ..server.connections.clone()
        };
        let admin = tasks.spawn_on(
            http::serve(
                admin,
                admin_limits,
                {
                    let state = Arc::clone(&state);
                    move |request, peer| handle_admin(Arc::clone(&state), request, peer)
                },
                stages.admin.clone(),
                tasks.clone(),
            ),
            &admin_runtime.handle,
        );
        // The main runtime's heartbeat, which `/healthz` checks from the admin runtime.
        status.beat();
        tasks.spawn(Arc::clone(&status).keep_beating(stages.admin.clone()));

        let mut lease =
            LeaseKeeper::new(db, ids, &config.lease).with_metrics(metrics.lease.clone());
        let _ = timeout(FIRST_LEASE_WAIT, lease.step()).await;
        background.push(tasks.spawn(lease.run(stop_background.clone())));

        Ok(Application {
            main,
            main_address,
            admin_address,
            main_limits: server.connections.clone(),
            shutdown: server.shutdown,
            state,
            status,
            cache,
            redis,
            tasks,
            stages,
            admin,
            admin_runtime,
            background,
        })
    }

    /// Where the main listener listens (the port the system gave, for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.main_address
    }

    /// Where the admin listener listens.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_address
    }

    /// What the handlers share, to drive them in memory (benchmarks).
    pub fn state(&self) -> Arc<State> {
        Arc::clone(&self.state)
    }

    /// The in-process cache of links, to warm it (benchmarks).
    pub fn link_cache(&self) -> Arc<LinkCache> {
        Arc::clone(&self.cache)
    }

    /// The token that asks the service to stop, as SIGTERM does.
    pub fn stop_token(&self) -> CancellationToken {
        self.stages.stop.clone()
    }

    /// SIGTERM and SIGINT ask the service to stop from now on.
    pub fn stop_on_signals(&self) -> Result<(), BuildError> {
        let signals = TerminateSignals::register().map_err(BuildError::Signal)?;
        self.tasks
            .spawn(signals.stop_on_first(self.stages.stop.clone(), self.stages.end.clone()));
        Ok(())
    }

    /// Serves until a stop is asked for, then drains within the shutdown grace: readiness
    /// turns 503 at once, the main listener keeps serving for `SHORTENER_SHUTDOWN_DELAY`, then
    /// stops accepting and finishes in-flight requests (until 4/5 of the grace period), pending
    /// creates and clicks are written and the worker-id lease is released, the admin listener
    /// stops, Redis is closed, and every task has ended.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application {
            main,
            main_address,
            admin_address,
            main_limits,
            shutdown,
            state,
            status,
            cache: _,
            redis,
            tasks,
            stages,
            admin,
            admin_runtime,
            background,
        } = self;
        let serving = tasks.spawn(http::serve(
            main,
            main_limits,
            move |request, peer| handle_public(Arc::clone(&state), request, peer),
            stages.accept.clone(),
            tasks.clone(),
        ));
        status.mark_started();
        tracing::info!(listen = %main_address, admin = %admin_address, "serving");

        stages.stop.cancelled().await;
        // Readiness answers 503 from here on. Keep serving for the delay, so load balancers stop
        // sending first; then stop accepting and let in-flight requests finish, keeping the last
        // part of the grace period for writing pending clicks.
        let stopping_since = Instant::now();
        let deadline = stopping_since + shutdown.grace;
        let drain_deadline = deadline - (shutdown.grace / FLUSH_SHARE_OF_GRACE);
        tracing::info!(grace = ?shutdown.grace, delay = ?shutdown.delay, "shutting down");
        tokio::time::sleep_until(stopping_since + shutdown.delay).await;
        stages.accept.cancel();
        if timeout_at(drain_deadline.max(Instant::now()), serving)
            .await
            .is_err()
        {
            tracing::error!("requests still in flight when the drain deadline passed");
        }
        stages.background.cancel();
        for task in background {
            if timeout_at(deadline, task).await.is_err() {
                tracing::error!(
                    "background tasks did not finish within the grace period; unwritten clicks are lost"
                );
                break;
            }
        }
        stages.admin.cancel();
        let _ = timeout_at(deadline, admin).await;
        if let Some(redis) = redis {
            redis.quit().await;
        }
        // The end of every task that waits for it (signal handlers), and of the admin runtime.
        drop(stages);
        admin_runtime.join(&tasks).await;
        tasks.close();
        if timeout_at(deadline.max(Instant::now()), tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                left = tasks.len(),
                "tasks still running when the grace period ended; they end with the process"
            );
        }
        tracing::info!("stopped");
        Ok(())
    }
}
