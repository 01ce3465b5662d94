//! Probes that tell the truth when the main runtime cannot run: the admin listener and the
//! readiness prober have a runtime of their own, so `/readyz` and `/metrics` still answer while
//! every thread of the main runtime is held; and `/healthz`, which checks the main runtime's
//! heartbeat, fails then (a liveness probe restarts a wedged instance) and recovers after.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::spawn_app;

/// Worker threads of the test's runtime, which the service runs on as its main runtime.
const WORKERS: usize = 2;

/// A GET on the admin listener with blocking I/O (the test's runtime is what is wedged):
/// the status, or `None` when no answer came within `bound`.
fn blocking_get(admin: SocketAddr, path: &str, bound: Duration) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&admin, bound).ok()?;
    stream.set_read_timeout(Some(bound)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    std::str::from_utf8(answer.get(9..12)?).ok()?.parse().ok()
}

/// Polls `path` (blocking) until it answers `status`, for at most `bound`.
fn wait_for(admin: SocketAddr, path: &str, status: u16, bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if blocking_get(admin, path, Duration::from_secs(2)) == Some(status) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probes_answer_while_the_main_runtime_is_wedged_and_healthz_says_so() {
    let app = spawn_app(&[]).await;
    let admin = app.admin;
    let bound = Duration::from_secs(5);
    assert!(wait_for(admin, "/readyz", 200, Duration::from_secs(10)));
    assert_eq!(blocking_get(admin, "/healthz", bound), Some(200));

    // Every worker of the main runtime held by a task that never yields.
    let release = Arc::new(AtomicBool::new(false));
    let holding = Arc::new(AtomicUsize::new(0));
    for _ in 0..WORKERS {
        let (release, holding) = (Arc::clone(&release), Arc::clone(&holding));
        tokio::spawn(async move {
            holding.fetch_add(1, Ordering::AcqRel);
            while !release.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(10));
            }
        });
    }
    let deadline = Instant::now() + bound;
    while holding.load(Ordering::Acquire) < WORKERS && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        holding.load(Ordering::Acquire),
        WORKERS,
        "the workers were not all held"
    );
    // The main runtime is wedged: its own listener does not answer...
    assert_eq!(
        blocking_get(app.addr, "/anything", Duration::from_millis(500)),
        None,
        "the main listener answered: the runtime is not wedged"
    );
    // ...while the admin listener does, from its own runtime: readiness from the prober's
    // cached results, the metrics, and liveness turning 503 once the heartbeat is stale.
    assert_eq!(blocking_get(admin, "/readyz", bound), Some(200));
    assert_eq!(blocking_get(admin, "/metrics", bound), Some(200));
    assert!(
        wait_for(admin, "/healthz", 503, Duration::from_secs(15)),
        "healthz did not notice the wedged runtime"
    );

    release.store(true, Ordering::Release);
    assert!(
        wait_for(admin, "/healthz", 200, Duration::from_secs(10)),
        "healthz did not recover"
    );
    assert!(wait_for(app.addr, "/unknown-code-xyz", 404, bound));
    app.shutdown().await;
}
