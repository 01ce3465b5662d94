//! Fault injection (RELIABILITY F1, F2): the Redis tier while its Redis is killed or paused.
//! Each test starts a Redis of its own on a port of its own and faults only that one; the
//! machine's services are never touched. Run one at a time by `make fault` (these tests are
//! `#[ignore]`d so that `make test` stays quick).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestApp, eventually, send, spawn_app_on};

/// The command timeout the tests configure, and the margin a loaded test machine gets.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(50);
const MARGIN: Duration = Duration::from_millis(250);

/// A redis-server of the test's own, killed when dropped.
struct OwnRedis {
    child: Child,
    port: u16,
}

impl OwnRedis {
    fn start_on(port: u16) -> OwnRedis {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--port", &port.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (make services installs it)");
        let own = OwnRedis { child, port };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return own;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {port}");
    }

    fn start() -> OwnRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        OwnRedis::start_on(port)
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let result = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(result, 0, "kill({signal})");
    }

    fn kill(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.signal_quietly(libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl OwnRedis {
    fn signal_quietly(&self, signal: i32) {
        // SAFETY: as in `signal`.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }
}

async fn redis_state(app: &TestApp) -> String {
    let body = send(app.admin, "GET", "/readyz", &[], b"").await.json();
    body["tiers"]["redis"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Redirects `codes` one by one (HEAD: no clicks), each within the command timeout plus the
/// margin of a loaded machine; answers the slowest.
async fn redirect_all_quickly(app: &TestApp, codes: &[String]) -> Duration {
    let mut slowest = Duration::ZERO;
    for code in codes {
        let started = Instant::now();
        let response = send(app.addr, "HEAD", &format!("/{code}"), &[], b"").await;
        let took = started.elapsed();
        assert_eq!(response.status, 302, "{code}");
        assert!(took <= COMMAND_TIMEOUT + MARGIN, "{code} took {took:?}");
        slowest = slowest.max(took);
    }
    slowest
}

async fn spawn_on_redis(redis_url: &str) -> TestApp {
    let db_url = common::fresh_database().await;
    spawn_app_on(
        &db_url,
        &[
            "--redis-url",
            redis_url,
            "--redis-command-timeout",
            "50ms",
            "--db-acquire-timeout",
            "2s",
        ],
    )
    .await
}

#[tokio::test]
#[ignore = "fault injection: run by `make fault`"]
async fn f2_a_paused_redis_costs_each_redirect_at_most_one_command_timeout() {
    let redis = OwnRedis::start();
    let app = spawn_on_redis(&redis.url()).await;
    let codes = app.links_in_postgres("fault", 40).await;
    redirect_all_quickly(&app, &codes[..10]).await;
    assert_eq!(redis_state(&app).await, "up");

    redis.signal(libc::SIGSTOP);
    redirect_all_quickly(&app, &codes[10..30]).await;
    let opened = eventually(Duration::from_secs(5), || async {
        redis_state(&app).await == "down"
    })
    .await;
    assert!(opened, "the breaker did not open while Redis was paused");

    redis.signal(libc::SIGCONT);
    let closed = eventually(Duration::from_secs(5), || async {
        redis_state(&app).await == "up"
    })
    .await;
    assert!(
        closed,
        "the breaker did not close once Redis answered again"
    );
    redirect_all_quickly(&app, &codes[30..]).await;
    app.shutdown().await;
}

#[tokio::test]
#[ignore = "fault injection: run by `make fault`"]
async fn f1_a_killed_redis_costs_redirects_nothing_and_is_used_again_once_back() {
    let redis = OwnRedis::start();
    let app = spawn_on_redis(&redis.url()).await;
    let codes = app.links_in_postgres("fault", 40).await;
    redirect_all_quickly(&app, &codes[..10]).await;

    let port = redis.kill();
    redirect_all_quickly(&app, &codes[10..30]).await;
    let opened = eventually(Duration::from_secs(5), || async {
        redis_state(&app).await == "down"
    })
    .await;
    assert!(opened, "the breaker did not open with Redis gone");

    let _back = OwnRedis::start_on(port);
    let closed = eventually(Duration::from_secs(10), || async {
        redis_state(&app).await == "up"
    })
    .await;
    assert!(closed, "the service did not return to Redis");
    redirect_all_quickly(&app, &codes[30..]).await;
    // Filled into the Redis that came back.
    let url = format!("redis://127.0.0.1:{port}");
    let filled = eventually(Duration::from_secs(5), || async {
        let output = Command::new("redis-cli")
            .args(["-u", &url, "--raw", "EXISTS", "shortener:link:fault-40"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).trim() == "1"
    })
    .await;
    assert!(filled, "nothing was filled into the Redis that came back");
    app.shutdown().await;
}
