//! What the fault tests under load share: the rate and durations of this run (`make fault` or
//! `make soak`), links made as another instance made them, the service's peak memory, and a
//! Postgres proxy that can slow, stall or redirect its connections.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shortener::ids::{CodeCodec, CodeKey, EPOCH_UNIX_MS, compose_id};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::{connect, eventually, send};
use crate::load::Record;
use crate::processes::OwnPostgres;
use crate::service::Service;

/// The full rate of the rows that name one (F1: 5,000 requests a second).
pub const FULL_RATE: f64 = 5_000.0;
/// The memory a fault may add to the service's resident set before it counts as unbounded.
pub const RSS_BOUND: u64 = 64 << 20;
/// The code key of the test configuration (tests/support/service.rs).
pub const TEST_CODE_KEY: &[u8] = b"integration-test-code-key";

/// The share of the full rate this run sends: 0.1 in `make fault`, 1 in `make soak`.
pub fn scale() -> f64 {
    std::env::var("SHORTENER_LOAD_SCALE")
        .ok()
        .and_then(|scale| scale.parse().ok())
        .unwrap_or(0.1)
}

/// Whether this is the soak: the full rate and durations, latency bounds asserted.
pub fn soak() -> bool {
    scale() >= 1.0
}

/// A length of time: `full` seconds in the soak, `short` in `make fault`.
pub fn secs(full: u64, short: u64) -> Duration {
    Duration::from_secs(if soak() { full } else { short })
}

/// Keep-alive connections enough for the rate with every request waiting 50 ms.
pub fn connections(rate: f64) -> usize {
    ((rate / 20.0) as usize).clamp(32, 512)
}

/// A failed request: one answered with none of `fine` (0 is no answer at all).
pub fn failures(record: &Record, fine: &[u16]) -> usize {
    record.other_than(fine)
}

/// `count` links made straight in Postgres as another instance made them an hour ago, with
/// generated codes (older than any replica-lag bound, so a replica may answer them): their codes.
pub async fn old_links(db_url: &str, label: &str, count: usize) -> Vec<String> {
    let codec = CodeCodec::new(&CodeKey::derive(TEST_CODE_KEY));
    let hour_ago = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        - 3_600_000;
    assert!(hour_ago > EPOCH_UNIX_MS);
    let (mut ids, mut codes, mut targets) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..count {
        let id = compose_id(hour_ago - (i / 4096) as u64, 1000, (i % 4096) as u16);
        ids.push(id);
        codes.push(String::from_utf8(codec.encode(id).to_vec()).unwrap());
        targets.push(format!("https://example.com/{label}/{i}"));
    }
    connect(db_url)
        .await
        .execute(
            "INSERT INTO links (id, code, target_url, created_at) \
             SELECT * , now() - interval '1 hour' FROM unnest($1::bigint[], $2::text[], $3::text[])",
            &[&ids, &codes, &targets],
        )
        .await
        .unwrap();
    codes
}

/// Reads each code once with HEAD (no click), so that the service holds it in memory.
pub async fn warm(service: &Service, codes: &[String]) {
    for code in codes {
        let response = send(service.addr, "HEAD", &format!("/{code}"), &[], b"").await;
        assert_eq!(response.status, 302, "{code}: {}", response.text());
    }
}

/// The largest resident set seen while it runs, sampled every 50 ms.
pub struct PeakRss {
    peak: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
}

impl PeakRss {
    pub fn watch(service: &Service) -> PeakRss {
        let (peak, done) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let path = format!("/proc/{}/status", service.pid());
        let (seen, stop) = (Arc::clone(&peak), Arc::clone(&done));
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(status) = std::fs::read_to_string(&path) {
                    let rss = status
                        .lines()
                        .find_map(|line| line.strip_prefix("VmRSS:"))
                        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                        .unwrap_or(0)
                        * 1024;
                    seen.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        PeakRss { peak, done }
    }

    pub fn stop(self) -> u64 {
        self.done.store(true, Ordering::Relaxed);
        self.peak.load(Ordering::Relaxed)
    }
}

/// Polls `/readyz` until `field` says `value`: how long that took from `since`.
pub async fn readiness_says(
    service: &Service,
    pointer: &str,
    value: &str,
    since: Instant,
    within: Duration,
) -> Option<Duration> {
    let seen = eventually(within, || async {
        matches!(service.readiness().await, Some((_, body)) if body.pointer(pointer).and_then(|v| v.as_str()) == Some(value))
    })
    .await;
    seen.then(|| since.elapsed())
}

/// The p99 latency bound of a soak: no worse than `before` by more than 10 %, or than 1 ms (the
/// generator's timer wakes once a millisecond, so smaller differences are its own).
pub fn p99_bound(before: Duration) -> Duration {
    (before.mul_f64(1.1)).max(before + Duration::from_millis(1))
}

/// A Postgres primary of the test's own with a streaming replica of it, and the URL of a
/// migrated database `shortener` on the primary.
pub async fn primary_with_replica() -> (OwnPostgres, OwnPostgres, String) {
    let primary = OwnPostgres::start();
    let replica = OwnPostgres::replica_of(&primary);
    let db_url = database_on(&primary).await;
    (primary, replica, db_url)
}

/// A database `shortener` on `server`, migrated: its URL.
pub async fn database_on(server: &OwnPostgres) -> String {
    connect(&server.url("postgres"))
        .await
        .batch_execute("CREATE DATABASE shortener")
        .await
        .unwrap();
    let url = server.url("shortener");
    shortener::storage::migrate(&crate::common::target(&url))
        .await
        .unwrap();
    url
}

/// A TCP proxy in front of a Postgres that the test can slow (each chunk Postgres sends held for
/// a delay: every query takes a round trip of that much more), silence (nothing forwarded either
/// way and nothing closed, for ever: a server that stops answering without a reset, whose kernel
/// still acknowledges what it is sent), and point at another server (as a virtual IP moves to a
/// promoted replica) for the connections made from then on.
pub struct PgProxy {
    /// The database URL through the proxy.
    pub url: String,
    state: Arc<ProxyState>,
}

struct ProxyState {
    upstream: std::sync::Mutex<SocketAddr>,
    delay_ms: AtomicU64,
    /// Servers that answer nothing any more.
    silent: std::sync::Mutex<Vec<SocketAddr>>,
    /// Connections proxied so far (server connections made).
    connections: AtomicU64,
}

impl PgProxy {
    /// A proxy to the server `db_url` names (a `postgres://…@host:port/db` URL).
    pub async fn start(db_url: &str) -> PgProxy {
        let upstream = url_address(db_url);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = db_url.replace(
            &upstream.to_string(),
            &listener.local_addr().unwrap().to_string(),
        );
        let state = Arc::new(ProxyState {
            upstream: std::sync::Mutex::new(upstream),
            delay_ms: AtomicU64::new(0),
            silent: std::sync::Mutex::new(Vec::new()),
            connections: AtomicU64::new(0),
        });
        let shared = Arc::clone(&state);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    // A silent server starts no session either: the client's connect completes
                    // (the kernel's backlog) and then nothing comes, until the proxy points
                    // elsewhere.
                    let upstream = loop {
                        let upstream = *state.upstream.lock().unwrap();
                        if !state.is_silent(upstream) {
                            break upstream;
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    };
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    state.connections.fetch_add(1, Ordering::Relaxed);
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::spawn(pump(
                        client_read,
                        server_write,
                        Arc::clone(&state),
                        upstream,
                        false,
                    ));
                    pump(server_read, client_write, state, upstream, true).await;
                });
            }
        });
        PgProxy { url, state }
    }

    /// Holds each chunk Postgres sends for `delay` (zero: none).
    pub fn slow(&self, delay: Duration) {
        self.state
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// The server it points at now answers nothing from now on, on any connection, and closes
    /// none.
    pub fn silence(&self) {
        let upstream = *self.state.upstream.lock().unwrap();
        self.state.silent.lock().unwrap().push(upstream);
    }

    /// Connections made from now on go to `db_url`'s server.
    pub fn point_at(&self, db_url: &str) {
        *self.state.upstream.lock().unwrap() = url_address(db_url);
    }

    /// Server connections made through it so far.
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::Relaxed)
    }
}

impl ProxyState {
    fn is_silent(&self, server: SocketAddr) -> bool {
        self.silent.lock().unwrap().contains(&server)
    }
}

/// Forwards one direction of a connection to `server`, chunk by chunk, holding each for the
/// delay (from the server), and nothing at all once the server is silent.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    state: Arc<ProxyState>,
    server: SocketAddr,
    from_server: bool,
) {
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let Ok(read) = from.read(&mut chunk).await else {
            return;
        };
        if read == 0 {
            return;
        }
        let ms = state.delay_ms.load(Ordering::Relaxed);
        if from_server && ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if state.is_silent(server) {
            // Held for ever: the connection stays open and says nothing.
            std::future::pending::<()>().await;
        }
        if to.write_all(&chunk[..read]).await.is_err() {
            return;
        }
    }
}

/// The `host:port` of a `postgres://user@host:port/db` URL.
fn url_address(db_url: &str) -> SocketAddr {
    let rest = db_url.split_once('@').expect("user@host:port").1;
    let hostport = rest.split(['/', '?']).next().unwrap();
    hostport.parse().expect("an IP address and a port")
}
