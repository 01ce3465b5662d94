//! Test helpers: a fresh, migrated database per test, the real server on ephemeral ports, and
//! a minimal HTTP/1.1 client over a raw socket (so tests can also send what no client would).
#![allow(dead_code)]

pub mod logs;
pub mod redis;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use clap::Parser;
use shortener::Application;
use shortener::clock::Clock;
use shortener::config::{Cli, Command, ServeConfig};
use shortener::storage::PgTarget;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

pub const PUBLIC_BASE: &str = "http://sho.rt";

/// The server Postgres that tests create their databases in.
pub fn admin_url() -> String {
    std::env::var("SHORTENER_TEST_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The single Redis node tests may use (the machine's, by default).
pub fn redis_single_url() -> String {
    std::env::var("SHORTENER_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Seeds of the Redis Cluster tests may use (the local stack's, by default).
pub fn redis_cluster_nodes() -> String {
    std::env::var("SHORTENER_TEST_REDIS_CLUSTER_NODES")
        .unwrap_or_else(|_| "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003".into())
}

/// A Redis key prefix no other test (or anything else on that Redis) uses.
pub fn unique_redis_prefix() -> String {
    format!("test:{}:{}:", std::process::id(), fastrand::u64(..))
}

/// Creates and migrates a database of its own for one test; answers its URL.
pub async fn fresh_database() -> String {
    let url = empty_database().await;
    shortener::storage::migrate(&target(&url))
        .await
        .expect("migrate the test database");
    url
}

/// Creates an empty database of its own for one test; answers its URL.
pub async fn empty_database() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "shortener_test_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        fastrand::u32(..)
    );
    let admin = connect(&admin_url()).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create the test database");
    drop_at_exit(name.clone());
    let mut url = admin_url();
    let cut = url.rfind('/').expect("admin URL names a database");
    url.truncate(cut + 1);
    url.push_str(&name);
    url
}

/// The databases this test process made, dropped when it exits (a failed test's too), so a run
/// leaves none behind.
static MADE_HERE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn drop_at_exit(name: String) {
    static REGISTER: std::sync::Once = std::sync::Once::new();
    REGISTER.call_once(|| {
        // SAFETY: atexit(3) with a function that takes no arguments and does not unwind.
        unsafe { libc::atexit(drop_databases_made_here) };
    });
    MADE_HERE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(name);
}

/// Runs as the test binary exits: one connection, a `DROP DATABASE … WITH (FORCE)` for each
/// database made here (servers still connected to one are disconnected).
extern "C" fn drop_databases_made_here() {
    let names = std::mem::take(&mut *MADE_HERE.lock().unwrap_or_else(|p| p.into_inner()));
    if names.is_empty() {
        return;
    }
    // On a thread of its own: the test runtimes are gone, and this one must not meet them.
    let dropping = std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async {
            let Ok((client, connection)) = tokio_postgres::connect(&admin_url(), NoTls).await
            else {
                return;
            };
            tokio::spawn(connection);
            for name in names {
                let _ = client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
            }
        });
    });
    let _ = dropping.join();
}

/// How many storage calls of `operation` (`lookup_primary`, …) `metrics` has counted.
pub fn db_operations(metrics: &shortener::telemetry::metrics::Metrics, operation: &str) -> u64 {
    Scrape::parse(metrics.render())
        .value("shortener_db_operations_total", &[("operation", operation)]) as u64
}

/// Metrics of a server with one database and no pools, for tests that build parts by hand.
pub fn metrics() -> std::sync::Arc<shortener::telemetry::metrics::Metrics> {
    use shortener::telemetry::metrics::{Layout, Metrics};
    std::sync::Arc::new(Metrics::new(&Layout {
        databases: vec!["primary".into()],
        pools: vec![],
        cache_capacity: [1, 1],
    }))
}

/// A code as the HTTP layer parses it.
pub fn code(raw: &str) -> shortener::domain::Code {
    shortener::domain::Code::parse(raw).expect("a valid code")
}

/// Makes an API key of `scope` with `shortener apikey create`, as an operator would; answers
/// the key (the first line of its standard output).
pub fn make_key(db_url: &str, name: &str, scope: &str) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_shortener"))
        .env_clear()
        .env("DATABASE_URL", db_url)
        .args(["apikey", "create", "--name", name, "--scope", scope])
        .output()
        .expect("run shortener apikey create");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    stdout.lines().next().expect("the key").to_owned()
}

/// `Authorization: Bearer <key>`.
pub fn bearer(key: &str) -> (&'static str, String) {
    ("Authorization", format!("Bearer {key}"))
}

/// The typed target of a Postgres URL.
pub fn target(url: &str) -> PgTarget {
    PgTarget::parse(url).expect("a usable Postgres URL")
}

/// The one bigint a query answers.
pub async fn scalar(db: &tokio_postgres::Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).await.unwrap().get(0)
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to the test Postgres (is it running? `make services`)");
    tokio::spawn(connection);
    client
}

/// The test configuration: `extra` flags override the defaults below.
pub fn config(database_url: &str, extra: &[&str]) -> ServeConfig {
    let defaults = [
        ("--database-url", database_url),
        // Ports the system picks: tests run side by side.
        ("--listen", "127.0.0.1:0"),
        ("--admin-listen", "127.0.0.1:0"),
        ("--public-base-url", PUBLIC_BASE),
        ("--stats-flush-interval", "100ms"),
        ("--shutdown-grace", "5s"),
        ("--code-key", "integration-test-code-key"),
        // Tests run debug builds side by side on two cores: shedding load after the
        // production default of 250 ms would make semantic tests flaky. Tests of shedding
        // set it themselves.
        ("--db-acquire-timeout", "2s"),
        // Every test client is 127.0.0.1: tests of the limits set them themselves.
        ("--max-connections-per-peer", "100000"),
        ("--rate-limit-create", "off"),
        ("--rate-limit-redirect", "off"),
        ("--rate-limit-stats", "off"),
    ];
    let mut argv = vec!["shortener", "serve"];
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            argv.extend([flag, value]);
        }
    }
    argv.extend_from_slice(extra);
    match Cli::try_parse_from(argv).expect("valid flags").command {
        Command::Serve(args) => args.parse().expect("valid test configuration"),
        _ => unreachable!(),
    }
}

/// A running server.
pub struct TestApp {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub db_url: String,
    pub stop: CancellationToken,
    pub handle: JoinHandle<anyhow::Result<()>>,
}

/// The server on a fresh database.
pub async fn spawn_app(extra: &[&str]) -> TestApp {
    let db_url = fresh_database().await;
    spawn_app_on(&db_url, extra).await
}

/// The server on an existing database.
pub async fn spawn_app_on(db_url: &str, extra: &[&str]) -> TestApp {
    spawn_with(config(db_url, extra), db_url).await
}

pub async fn spawn_with(config: ServeConfig, db_url: &str) -> TestApp {
    spawn_with_clock(config, db_url, Clock::system()).await
}

/// The server on a fresh database, its use cases reading `clock`: a test moves time with
/// [`Clock::advance`] instead of sleeping until it has passed.
pub async fn spawn_app_with_clock(extra: &[&str], clock: Clock) -> TestApp {
    let db_url = fresh_database().await;
    spawn_with_clock(config(&db_url, extra), &db_url, clock).await
}

pub async fn spawn_with_clock(config: ServeConfig, db_url: &str, clock: Clock) -> TestApp {
    let application = Application::build_with_clock(config, clock)
        .await
        .expect("the service builds");
    let (addr, admin) = (application.local_addr(), application.admin_addr());
    let stop = application.stop_token();
    let handle = tokio::spawn(application.run_until_stopped());
    TestApp {
        addr,
        admin,
        db_url: db_url.to_owned(),
        stop,
        handle,
    }
}

impl TestApp {
    pub async fn get(&self, path: &str) -> TestResponse {
        send(self.addr, "GET", path, &[], b"").await
    }

    /// Sends `method path` with `key` (and a JSON `body` when there is one).
    pub async fn keyed(&self, method: &str, path: &str, key: &str, body: &str) -> TestResponse {
        self.keyed_with(method, path, key, body, &[]).await
    }

    pub async fn keyed_with(
        &self,
        method: &str,
        path: &str,
        key: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> TestResponse {
        let (name, value) = bearer(key);
        let mut all = vec![(name, value.as_str())];
        if !body.is_empty() {
            all.push(("Content-Type", "application/json"));
        }
        all.extend_from_slice(headers);
        send(self.addr, method, path, &all, body.as_bytes()).await
    }

    pub async fn shorten(&self, body: &str) -> TestResponse {
        self.shorten_with(body, &[]).await
    }

    pub async fn shorten_with(&self, body: &str, headers: &[(&str, &str)]) -> TestResponse {
        let mut all = vec![("Content-Type", "application/json")];
        all.extend_from_slice(headers);
        send(self.addr, "POST", "/shorten", &all, body.as_bytes()).await
    }

    /// Creates a link to `url` and answers its code.
    /// The status of a create of `url`.
    pub async fn create_status(&self, url: &str) -> u16 {
        self.shorten(&serde_json::json!({ "url": url }).to_string())
            .await
            .status
    }

    pub async fn create(&self, url: &str) -> String {
        let response = self
            .shorten(&serde_json::json!({ "url": url }).to_string())
            .await;
        assert_eq!(response.status, 201, "{}", response.text());
        response.json()["code"].as_str().unwrap().to_owned()
    }

    pub async fn db(&self) -> tokio_postgres::Client {
        connect(&self.db_url).await
    }

    /// `count` links made straight in Postgres (`{prefix}-1` …), as another instance would:
    /// redirecting one needs a lookup below this instance's memory.
    pub async fn links_in_postgres(&self, prefix: &str, count: i64) -> Vec<String> {
        self.db()
            .await
            .execute(
                "INSERT INTO links (id, code, target_url, created_at) \
                 SELECT g, $1 || '-' || g, 'https://example.com/' || g, now() \
                 FROM generate_series(1, $2::bigint) AS g",
                &[&prefix, &count],
            )
            .await
            .unwrap();
        (1..=count).map(|i| format!("{prefix}-{i}")).collect()
    }

    pub async fn count(&self, table: &str) -> i64 {
        scalar(&self.db().await, &format!("SELECT count(*) FROM {table}")).await
    }

    /// Stops the server as SIGTERM would and waits for it to stop.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.wait_stopped().await;
    }

    /// Waits for the server to stop cleanly (after `stop` was cancelled).
    pub async fn wait_stopped(self) {
        tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .expect("run returns within the grace period")
            .expect("run does not panic")
            .expect("run ends cleanly");
    }
}

#[derive(Debug)]
pub struct TestResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl TestResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// Asserts an RFC 9457 problem with `status`, and answers its body.
    pub fn assert_problem(&self, status: u16) -> serde_json::Value {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        let body = self.json();
        assert_eq!(body["status"], status);
        for field in ["type", "title", "detail"] {
            assert!(body[field].is_string(), "problem without {field}: {body}");
        }
        body
    }
}

/// Sends one request on a new connection (`Connection: close`) and reads the whole answer.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> TestResponse {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    send_raw(addr, &bytes).await
}

/// Writes `raw` and parses whatever comes back until the server closes the connection.
pub async fn send_raw(addr: SocketAddr, raw: &[u8]) -> TestResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(raw).await.expect("write request");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the server answers within 10 s")
        .expect("read answer");
    parse_response(&answer)
}

pub fn parse_response(answer: &[u8]) -> TestResponse {
    let split = answer
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "no complete response: {:?}",
                String::from_utf8_lossy(answer)
            )
        });
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    TestResponse {
        status,
        headers,
        body: answer[split + 4..].to_vec(),
    }
}

/// Polls `check` until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many statements on `db`'s database matching `pattern` (SQL `LIKE`) wait on a lock now:
/// proof that a request has reached Postgres and is held there, not merely slow.
pub async fn waiting_on_a_lock(db: &tokio_postgres::Client, pattern: &str) -> i64 {
    db.query_one(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE $1",
        &[&pattern],
    )
    .await
    .unwrap()
    .get(0)
}

/// The server side of a TCP listener as the kernel sees it (`/proc/net/tcp`): whether it
/// listens, what waits in its accept queue, and the connections made to it. The server of a
/// test may be this process or a child, paused or not: the kernel answers for both.
#[derive(Debug)]
pub struct ListenerSockets {
    /// A socket listens on the address.
    pub listening: bool,
    /// Connections the kernel completed that the server has not accepted yet.
    pub accept_queue: u64,
    /// Established connections to the address, accepted or still in the accept queue.
    pub established: Vec<ServerSide>,
}

/// The server's end of one established connection.
#[derive(Debug)]
pub struct ServerSide {
    /// The server has accepted it (the socket has a file descriptor: an inode).
    pub accepted: bool,
    /// Bytes the client sent that the server has not read yet.
    pub unread: u64,
}

impl ListenerSockets {
    /// The sockets of the IPv4 listener at `addr` now.
    pub fn of(addr: SocketAddr) -> ListenerSockets {
        let std::net::IpAddr::V4(ip) = addr.ip() else {
            panic!("{addr}: only IPv4 listeners are read");
        };
        let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
        let mut sockets = ListenerSockets {
            listening: false,
            accept_queue: 0,
            established: Vec::new(),
        };
        for line in table.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [_, local, _, state, queues, _, _, _, _, inode, ..] = fields[..] else {
                continue;
            };
            if parse_proc_address(local) != (ip, addr.port()) {
                continue;
            }
            let (_, rx) = queues.split_once(':').expect("tx_queue:rx_queue");
            let rx = u64::from_str_radix(rx, 16).expect("a hex queue length");
            match state {
                // LISTEN: its rx_queue is the number of connections waiting to be accepted.
                "0A" => {
                    sockets.listening = true;
                    sockets.accept_queue = rx;
                }
                // ESTABLISHED: its rx_queue is the bytes received and not read.
                "01" => sockets.established.push(ServerSide {
                    accepted: inode != "0",
                    unread: rx,
                }),
                _ => {}
            }
        }
        sockets
    }

    /// Connections the server has accepted and holds open.
    pub fn accepted(&self) -> usize {
        self.established.iter().filter(|side| side.accepted).count()
    }
}

/// `0100007F:1F90` (the address in the kernel's byte order, the port in hex) as an address.
fn parse_proc_address(field: &str) -> (std::net::Ipv4Addr, u16) {
    let (ip, port) = field.split_once(':').expect("address:port");
    let ip = u32::from_str_radix(ip, 16).expect("a hex IPv4 address");
    let port = u16::from_str_radix(port, 16).expect("a hex port");
    (std::net::Ipv4Addr::from(ip.to_ne_bytes()), port)
}

/// Waits until the replica at `replica_url` has replayed everything the primary at
/// `primary_url` has written so far (at most 20 s).
pub async fn wait_for_replay(primary_url: &str, replica_url: &str) {
    let lsn: String = connect(primary_url)
        .await
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let replica = connect(replica_url).await;
    let caught_up = eventually(Duration::from_secs(20), || async {
        replica
            .query_one(
                "SELECT coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false)",
                &[&lsn],
            )
            .await
            .unwrap()
            .get::<_, bool>(0)
    })
    .await;
    assert!(caught_up, "the replica did not catch up (is it running?)");
}

/// A TCP proxy in front of the test Postgres that a test can cut and restore: it takes the
/// database away from one service (refused sessions, broken connections) without touching the
/// machine's Postgres, which other tests share.
pub struct DbProxy {
    /// `db_url` with the proxy's address in place of Postgres'.
    pub url: String,
    state: std::sync::Arc<ProxyState>,
}

struct ProxyState {
    down: std::sync::atomic::AtomicBool,
    /// Cancelled on `cut`: ends every connection proxied so far.
    sessions: std::sync::Mutex<CancellationToken>,
}

impl DbProxy {
    pub async fn start(db_url: &str) -> DbProxy {
        let upstream = "127.0.0.1:5432";
        assert!(db_url.contains(upstream), "the proxy expects {upstream}");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = db_url.replace(upstream, &listener.local_addr().unwrap().to_string());
        let state = std::sync::Arc::new(ProxyState {
            down: Default::default(),
            sessions: std::sync::Mutex::new(CancellationToken::new()),
        });
        let shared = std::sync::Arc::clone(&state);
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if shared.down.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is closed at once
                }
                let session = shared.sessions.lock().unwrap().clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = session.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                });
            }
        });
        DbProxy { url, state }
    }

    /// Closes every proxied connection and refuses new ones until [`DbProxy::restore`].
    pub fn cut(&self) {
        self.state.down.store(true, Ordering::SeqCst);
        let mut sessions = self.state.sessions.lock().unwrap();
        sessions.cancel();
        *sessions = CancellationToken::new();
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.state.down.store(false, Ordering::SeqCst);
    }
}

/// One scrape of a server's `/metrics`: every sample, by series.
pub struct Scrape {
    pub text: String,
    /// `name{label="value",...}` (labels sorted) → value.
    pub samples: std::collections::BTreeMap<String, f64>,
}

impl Scrape {
    pub fn parse(text: String) -> Scrape {
        let mut samples = std::collections::BTreeMap::new();
        for line in text.lines() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("a sample line has a value");
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                value => value.parse().expect("a numeric sample"),
            };
            samples.insert(normalise_series(series), value);
        }
        Scrape { text, samples }
    }

    /// The value of one series; panics if the server does not export it.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let key = series_key(name, labels);
        *self
            .samples
            .get(&key)
            .unwrap_or_else(|| panic!("{key} is not exported:\n{}", self.text))
    }

    /// The sum of every series of metric `name` (all its label sets).
    pub fn total(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|(key, _)| key.split('{').next() == Some(name))
            .map(|(_, value)| value)
            .sum()
    }

    /// The number of samples of metric `name` (any labels).
    pub fn count_of(&self, name: &str) -> usize {
        self.samples
            .keys()
            .filter(|key| key.split('{').next() == Some(name))
            .count()
    }
}

fn series_key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut labels: Vec<String> = labels
        .iter()
        .map(|(key, value)| format!("{key}=\"{value}\""))
        .collect();
    labels.sort();
    if labels.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{}}}", labels.join(","))
    }
}

fn normalise_series(series: &str) -> String {
    let Some((name, rest)) = series.split_once('{') else {
        return series.to_owned();
    };
    let body = rest.strip_suffix('}').expect("labels end with }");
    let pairs: Vec<(String, String)> = body
        .split("\",")
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').expect("label=value");
            (key.to_owned(), value.trim_matches('"').to_owned())
        })
        .collect();
    let borrowed: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    series_key(name, &borrowed)
}

impl TestApp {
    /// Scrapes this server's `/metrics`.
    pub async fn scrape(&self) -> Scrape {
        let response = send(self.admin, "GET", "/metrics", &[], b"").await;
        assert_eq!(response.status, 200, "{}", response.text());
        Scrape::parse(response.text())
    }
}

/// A blocklist file of this test process holding `hosts`.
pub fn blocklist_file(hosts: &str) -> std::path::PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "blocklist-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, hosts).unwrap();
    path
}

/// B1: the hostile URL corpus, each refused (400 with a detail, or 413 for the one too long
/// for the body limit), and nothing stored. `app` blocks `blocked.example` and serves `sho.rt`.
pub async fn assert_hostile_urls_refused(app: &TestApp) {
    let long = format!("https://example.com/{}", "a".repeat(10 * 1024));
    let hostile = [
        "JaVaScRiPt:alert(1)",
        "javascript:alert(1)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "java\nscript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "DATA:text/html;base64,PHNjcmlwdD4=",
        "file:///etc/passwd",
        "ftp://example.com/file",
        "vbscript:msgbox(1)",
        "https://user:pw@host.example/",
        "https://bank.com@evil.example/",
        "http://[::1]:99999/",
        "https://example.com/\r\nSet-Cookie: a=b",
        "https://exa\rmple.com/",
        long.as_str(),
        "https://pаypal.com/",
        "https://аррӏе.com/",
        "http://sho.rt/abc",
        "https://SHO.RT:443/loop",
        "https://blocked.example/x",
        "https://www.blocked.example/x",
        "/relative/path",
        "//example.com/protocol-relative",
        "example.com",
        "",
    ];
    for url in hostile {
        let body = serde_json::json!({ "url": url }).to_string();
        if body.len() > 8 * 1024 {
            // Too long for the body limit: refused before the URL is even parsed.
            app.shorten(&body).await.assert_problem(413);
            continue;
        }
        let problem = app.shorten(&body).await.assert_problem(400);
        assert!(!problem["detail"].as_str().unwrap().is_empty(), "{url:?}");
    }
    // A long URL under the body limit but over 2048 bytes.
    let over = serde_json::json!({ "url": format!("https://example.com/{}", "a".repeat(3000)) })
        .to_string();
    app.shorten(&over).await.assert_problem(400);
    assert_eq!(app.count("links").await, 0);
}
