//! F9 for real: `shortener serve` as a child process, under a load of redirects on keep-alive
//! connections, sent SIGTERM. Readiness is 503 from the moment it says it received the signal;
//! every request sent on an open connection is answered (no reset, no 5xx: the answers during
//! the drain say `Connection: close`, and the load, like a load balancer that saw readiness
//! fail, opens no new connection after it); the clicks it counted but had not written are
//! written before it exits; and it exits 0 within its grace period.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{connect, eventually, fresh_database, scalar, send};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn free_address() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// One keep-alive client: GETs `path` until `stop`, reconnecting when an answer closes the
/// connection unless `no_new` is set. Counts answers by kind.
async fn client(
    addr: SocketAddr,
    path: String,
    stop: Arc<AtomicBool>,
    no_new: Arc<AtomicBool>,
    counts: Arc<Counts>,
) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: sho.rt\r\nUser-Agent: f9\r\n\r\n");
    'connections: while !stop.load(Ordering::Acquire) && !no_new.load(Ordering::Acquire) {
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            counts.refused.fetch_add(1, Ordering::Relaxed);
            return;
        };
        loop {
            if stop.load(Ordering::Acquire) {
                return;
            }
            if stream.write_all(request.as_bytes()).await.is_err() {
                counts.resets.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let mut answer = Vec::new();
            let mut chunk = [0u8; 1024];
            let head_end = loop {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => {
                        // A request sent and never answered: what F9 must never see.
                        counts.resets.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Ok(n) => answer.extend_from_slice(&chunk[..n]),
                }
                if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
                    break end;
                }
            };
            let head = String::from_utf8_lossy(&answer[..head_end]).to_ascii_lowercase();
            match &head[9..12] {
                "302" => counts.redirected.fetch_add(1, Ordering::Relaxed),
                _ => counts.other.fetch_add(1, Ordering::Relaxed),
            };
            // Redirects have no body.
            if head.contains("connection: close") {
                continue 'connections;
            }
        }
    }
}

#[derive(Default)]
struct Counts {
    redirected: AtomicU64,
    other: AtomicU64,
    resets: AtomicU64,
    refused: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_resets_nothing_writes_the_clicks_and_exits_0() {
    let db_url = fresh_database().await;
    let (listen, admin) = (free_address(), free_address());
    let mut child = Command::new(env!("CARGO_BIN_EXE_shortener"))
        .env_clear()
        .arg("serve")
        .env("DATABASE_URL", &db_url)
        .env("SHORTENER_LISTEN", listen.to_string())
        .env("SHORTENER_ADMIN_LISTEN", admin.to_string())
        .env("SHORTENER_PUBLIC_BASE_URL", "http://sho.rt")
        .env("SHORTENER_RATE_LIMIT_REDIRECT", "off")
        .env("SHORTENER_RATE_LIMIT_CREATE", "off")
        .env("SHORTENER_MAX_CONNECTIONS_PER_PEER", "100000")
        // Clicks stay in memory until the shutdown writes them.
        .env("SHORTENER_STATS_FLUSH_INTERVAL", "1h")
        .env("SHORTENER_SHUTDOWN_DELAY", "1s")
        .env("SHORTENER_SHUTDOWN_GRACE", "10s")
        .env("SHORTENER_LOG_FORMAT", "text")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The child's log, line by line, for the moment it says it received the signal.
    let (lines, log) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    assert!(
        eventually(Duration::from_secs(20), || async {
            // Not listening yet while the child starts.
            TcpStream::connect(admin).await.is_ok()
                && send(admin, "GET", "/readyz", &[], b"").await.status == 200
        })
        .await,
        "the child never became ready"
    );
    let created = send(
        listen,
        "POST",
        "/shorten",
        &[("Content-Type", "application/json")],
        br#"{"url": "https://example.com/f9"}"#,
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let code = created.json()["code"].as_str().unwrap().to_owned();

    let (stop, no_new, counts) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
        Arc::new(Counts::default()),
    );
    let clients: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn(client(
                listen,
                format!("/{code}"),
                Arc::clone(&stop),
                Arc::clone(&no_new),
                Arc::clone(&counts),
            ))
        })
        .collect();
    assert!(
        eventually(Duration::from_secs(10), || async {
            counts.redirected.load(Ordering::Relaxed) >= 2_000
        })
        .await
    );

    // SIGTERM; readiness is 503 from when the service says it has it (it logs the signal once
    // the stop is under way).
    // SAFETY: kill(2) on the child this test started.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let signalled = Instant::now();
    loop {
        let line = log
            .recv_timeout(Duration::from_secs(10))
            .expect("the child logs that it received SIGTERM");
        if line.contains("SIGTERM received") {
            break;
        }
    }
    assert_eq!(send(admin, "GET", "/readyz", &[], b"").await.status, 503);
    // A load balancer stops sending new connections once readiness fails; the open ones are
    // answered (with Connection: close) until the drain.
    no_new.store(true, Ordering::Release);
    for client in clients {
        tokio::time::timeout(Duration::from_secs(15), client)
            .await
            .expect("every client ends once its connection is closed")
            .unwrap();
    }
    stop.store(true, Ordering::Release);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(15),
            "the child did not exit within its grace period"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0), "exit status {status:?}");

    let redirected = counts.redirected.load(Ordering::Relaxed);
    assert_eq!(
        counts.resets.load(Ordering::Relaxed),
        0,
        "connections reset"
    );
    assert_eq!(
        counts.other.load(Ordering::Relaxed),
        0,
        "answers other than 302"
    );
    assert_eq!(
        counts.refused.load(Ordering::Relaxed),
        0,
        "connections refused"
    );
    // Every click it answered was written on the way out.
    let db = connect(&db_url).await;
    let written = scalar(
        &db,
        "SELECT coalesce(sum(clicks), 0)::bigint FROM link_clicks_daily",
    )
    .await;
    assert_eq!(written as u64, redirected);
}
