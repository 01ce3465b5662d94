//! Bad input (docs/requirements.md B1, B4, B5, B8, B9): refused with a clear error, nothing
//! stored.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{ListenerSockets, eventually, parse_response, send, send_raw, spawn_app};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn the_hostile_url_corpus_is_refused_and_nothing_is_stored() {
    let blocklist = common::blocklist_file("blocked.example\n");
    let app = spawn_app(&["--blocklist-file", blocklist.to_str().unwrap()]).await;
    common::assert_hostile_urls_refused(&app).await;
    app.shutdown().await;
    let _ = std::fs::remove_file(blocklist);
}

#[tokio::test]
async fn oversized_bodies_are_refused_without_being_read() {
    let app = spawn_app(&[]).await;
    // Declares 1 MiB, sends 10 bytes: the answer comes from the header alone.
    let head = "POST /shorten HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
                Content-Length: 1048576\r\nConnection: close\r\n\r\n0123456789";
    send_raw(app.addr, head.as_bytes())
        .await
        .assert_problem(413);
    // Chunked, no length: cut off at the limit while reading.
    let mut chunked = String::from(
        "POST /shorten HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    );
    for _ in 0..20 {
        chunked.push_str(&format!("400\r\n{}\r\n", "x".repeat(0x400)));
    }
    chunked.push_str("0\r\n\r\n");
    send_raw(app.addr, chunked.as_bytes())
        .await
        .assert_problem(413);
    app.shutdown().await;
}

#[tokio::test]
async fn too_many_or_too_large_headers_are_431() {
    let app = spawn_app(&[]).await;
    let many: Vec<(String, String)> = (0..200).map(|i| (format!("X-H{i}"), "v".into())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let response = send(app.addr, "GET", "/abc", &many, b"").await;
    assert_eq!(response.status, 431);
    let huge = "a".repeat(64 * 1024);
    let response = send(app.addr, "GET", "/abc", &[("X-Huge", &huge)], b"").await;
    assert_eq!(response.status, 431);
    app.shutdown().await;
}

#[tokio::test]
async fn slow_header_senders_are_cut_off_while_others_are_served() {
    let app = spawn_app(&["--header-read-timeout", "500ms"]).await;
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"GET /abc HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    let code = app.create("https://example.com/").await;
    assert_eq!(app.get(&format!("/{code}")).await.status, 302);
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the slow connection was not closed at the header-read timeout"
    );
    app.shutdown().await;
}

/// B5 at its rate: 500 connections sending their headers a byte a second are each closed at
/// the header-read timeout, with nothing but (at most) a 408 read from them, while ordinary
/// clients meanwhile keep at least 99.9 % of their requests answered.
#[tokio::test]
async fn five_hundred_byte_a_second_senders_are_closed_and_others_served() {
    const SLOW: usize = 500;
    let timeout = Duration::from_secs(2);
    let app = spawn_app(&["--header-read-timeout", "2s"]).await;
    let code = app.create("https://example.com/b5").await;
    let started = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        let addr = app.addr;
        slow.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let (mut reader, mut writer) = stream.split();
            let head = b"GET /b5-slow HTTP/1.1\r\nHost: t\r\nUser-Agent: one-byte-a-second\r\n\r\n";
            let mut answer = Vec::new();
            let trickle = async {
                for byte in head {
                    if writer.write_all(&[*byte]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            };
            // Whatever the server sends, until it closes (bounded: a connection never closed
            // fails the test).
            let read = tokio::time::timeout(Duration::from_secs(20), async {
                tokio::select! {
                    _ = trickle => {}
                    _ = async {
                        let mut chunk = [0u8; 1024];
                        loop {
                            match reader.read(&mut chunk).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => answer.extend_from_slice(&chunk[..n]),
                            }
                        }
                    } => {}
                }
            })
            .await;
            (read.is_ok(), answer)
        }));
    }
    // Ordinary clients meanwhile, for as long as the slow ones hold their connections.
    let (mut asked, mut answered) = (0u32, 0u32);
    while started.elapsed() < timeout + Duration::from_secs(1) {
        asked += 1;
        if app.get(&format!("/{code}")).await.status == 302 {
            answered += 1;
        }
    }
    for sender in slow {
        let (closed, answer) = sender.await.unwrap();
        assert!(closed, "a slow sender's connection was never closed");
        let text = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || text.starts_with("HTTP/1.1 408"),
            "a slow sender got {text:?}"
        );
    }
    assert!(asked >= 10, "only {asked} ordinary requests were made");
    assert!(
        f64::from(answered) >= 0.999 * f64::from(asked),
        "{answered} of {asked} ordinary requests answered"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn open_connections_are_capped_and_excess_clients_wait() {
    let app = spawn_app(&["--max-connections", "2"]).await;
    let code = app.create("https://example.com/").await;
    // Two idle keep-alive connections take both places: both accepted, so `create` has
    // released its own.
    let first = TcpStream::connect(app.addr).await.unwrap();
    let mut second = TcpStream::connect(app.addr).await.unwrap();
    let both_held = eventually(Duration::from_secs(5), || async {
        let sockets = ListenerSockets::of(app.addr);
        sockets.accept_queue == 0 && sockets.established.len() == 2 && sockets.accepted() == 2
    })
    .await;
    assert!(both_held, "{:?}", ListenerSockets::of(app.addr));
    let path = format!("/{code}");
    let waiting = tokio::spawn({
        let addr = app.addr;
        let path = path.clone();
        async move { send(addr, "GET", &path, &[], b"").await }
    });
    // The third waits in the accept queue with its whole request there to be read.
    let queued = eventually(Duration::from_secs(5), || async {
        let sockets = ListenerSockets::of(app.addr);
        sockets.accept_queue == 1
            && sockets
                .established
                .iter()
                .any(|side| !side.accepted && side.unread > 0)
    })
    .await;
    assert!(queued, "{:?}", ListenerSockets::of(app.addr));
    // The server is running, not stalled: it answers on a connection it holds, after the
    // third arrived. Still the third is not taken.
    assert_eq!(request_on(&mut second, &path).await.status, 302);
    assert_eq!(ListenerSockets::of(app.addr).accept_queue, 1);
    assert!(
        !waiting.is_finished(),
        "a third connection was served while two were open"
    );
    drop(first);
    let response = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("served once a place was free")
        .unwrap();
    assert_eq!(response.status, 302);
    drop(second);
    app.shutdown().await;
}

/// One keep-alive request on an open connection; answers the response, leaving the
/// connection open.
async fn request_on(stream: &mut TcpStream, path: &str) -> common::TestResponse {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before a whole answer");
            answer.extend_from_slice(&chunk[..n]);
            let Some(head) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let length: usize = parse_response(&answer)
                .header("content-length")
                .map_or(0, |length| length.parse().unwrap());
            if answer.len() >= head + 4 + length {
                return;
            }
        }
    })
    .await;
    read.expect("an answer within 10 s");
    parse_response(&answer)
}

/// A create whose declared 100-byte body trickles in at a byte a second; answers the response
/// and how long after the headers it came.
async fn trickle_a_body(addr: SocketAddr) -> (common::TestResponse, Duration) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    writer
        .write_all(
            b"POST /shorten HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n",
        )
        .await
        .unwrap();
    let sent = Instant::now();
    let trickling = tokio::spawn(async move {
        for _ in 0..100 {
            if writer.write_all(b" ").await.is_err() {
                return;
            }
            // Not synchronisation: a client this slow is the behaviour under test.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), reader.read_to_end(&mut answer))
        .await
        .expect("the server answers a trickling body")
        .expect("read the answer");
    let took = sent.elapsed();
    trickling.abort();
    (parse_response(&answer), took)
}

#[tokio::test]
async fn slow_bodies_get_408_at_the_deadline_and_free_their_connections() {
    const DEADLINE: Duration = Duration::from_secs(2);
    let app = spawn_app(&[
        "--max-connections",
        "50",
        "--body-read-timeout",
        "2s",
        "--shutdown-grace",
        "20s",
    ])
    .await;
    // As many trickling bodies as there are connection places.
    let tricklers: Vec<_> = (0..50)
        .map(|_| tokio::spawn(trickle_a_body(app.addr)))
        .collect();
    for trickler in tricklers {
        let (response, took) = trickler.await.unwrap();
        let problem = response.assert_problem(408);
        assert_eq!(problem["type"], "urn:shortener:problem:request-timeout");
        assert_eq!(response.header("connection"), Some("close"));
        assert!(
            took <= DEADLINE + Duration::from_secs(1),
            "408 after {took:?}"
        );
    }
    // Their places are free again.
    let code = app.create("https://example.com/after-the-slow-ones").await;
    assert_eq!(app.get(&format!("/{code}")).await.status, 302);
    assert_eq!(
        app.count("links").await,
        1,
        "nothing of the slow bodies was stored"
    );

    // Shutdown is not held by slow bodies past their deadline (the drain deadline is 16 s).
    let tricklers: Vec<_> = (0..10)
        .map(|_| tokio::spawn(trickle_a_body(app.addr)))
        .collect();
    // All ten accepted and read so far (headers and the first byte): requests in flight,
    // whose bodies the handlers are waiting for.
    let in_flight = eventually(Duration::from_secs(5), || async {
        let sockets = ListenerSockets::of(app.addr);
        sockets.accept_queue == 0
            && sockets.accepted() == 10
            && sockets.established.iter().all(|side| side.unread == 0)
    })
    .await;
    assert!(in_flight, "{:?}", ListenerSockets::of(app.addr));
    let stopping = Instant::now();
    app.shutdown().await;
    assert!(
        stopping.elapsed() <= DEADLINE + Duration::from_secs(2),
        "shutdown took {:?}",
        stopping.elapsed()
    );
    for trickler in tricklers {
        assert_eq!(trickler.await.unwrap().0.status, 408);
    }
}

#[tokio::test]
async fn links_back_to_this_service_are_refused_and_private_targets_when_asked() {
    let app = spawn_app(&[]).await;
    let port = app.addr.port();
    for own in [
        format!("http://127.0.0.1:{port}/x"),
        format!("http://[::1]:{port}/x"),
        format!("http://LOCALHOST.:{port}/x"),
        format!("http://0x7f.1:{port}/x"),
        "http://sho.rt:8443/x".to_owned(),
    ] {
        let response = app.shorten(&json!({ "url": own }).to_string()).await;
        let problem = response.assert_problem(400);
        assert_eq!(
            problem["type"], "urn:shortener:problem:invalid-url",
            "{own}"
        );
    }
    // Another port on this machine is another service; private addresses are allowed by
    // default (an intranet shortener needs them).
    for other in ["http://127.0.0.1:1/x", "http://10.0.0.1/"] {
        let response = app.shorten(&json!({ "url": other }).to_string()).await;
        assert_eq!(response.status, 201, "{other}: {}", response.text());
    }
    app.shutdown().await;

    let public = spawn_app(&["--block-private-targets", "true"]).await;
    for private in [
        "http://10.0.0.1/",
        "http://169.254.169.254/",
        "http://[fd00::1]/",
    ] {
        let response = public.shorten(&json!({ "url": private }).to_string()).await;
        response.assert_problem(400);
    }
    assert_eq!(public.count("links").await, 0);
    public.shutdown().await;
}

/// Everything the server writes on one connection for `raw`, until it closes it (bounded).
async fn whole_answer(addr: SocketAddr, raw: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(raw).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection within 10 s")
        .expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

/// B9: framing a proxy and this server could read differently (request smuggling). With both
/// `Content-Length` and `Transfer-Encoding: chunked`, hyper reads the body by the chunks and
/// closes the connection after answering (RFC 9112 §6.1), or refuses it: either way nothing
/// after the body is read as a second request. Two `Content-Length`s that differ are refused.
#[tokio::test]
async fn ambiguous_framing_smuggles_nothing() {
    let app = spawn_app(&[]).await;
    let smuggled = "GET /smuggled-code HTTP/1.1\r\nHost: t\r\n\r\n";
    let body = r#"{"url": "https://example.com/smuggled"}"#;
    let chunked = |framing: String| {
        format!(
            "POST /shorten HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n{framing}\r\n\
             {:x}\r\n{body}\r\n0\r\n\r\n{smuggled}",
            body.len()
        )
    };
    let mut made = 0;
    for framing in [
        format!(
            "Content-Length: {}\r\nTransfer-Encoding: chunked\r\n",
            body.len()
        ),
        "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n".to_owned(),
    ] {
        let answer = whole_answer(app.addr, chunked(framing.clone()).as_bytes()).await;
        assert_eq!(
            answer.matches("HTTP/1.1 ").count(),
            1,
            "{framing:?}: a second request was read from the same connection: {answer}"
        );
        if answer.starts_with("HTTP/1.1 201") {
            // Transfer-Encoding won: the chunked body was the request, and the connection
            // closed after it.
            assert!(
                answer.to_ascii_lowercase().contains("connection: close"),
                "{answer}"
            );
            made += 1;
        } else {
            assert!(answer.starts_with("HTTP/1.1 400"), "{framing:?}: {answer}");
        }
    }
    for framing in [
        format!("Content-Length: {}\r\nContent-Length: 2\r\n", body.len()),
        format!("Content-Length: {}, 2\r\n", body.len()),
    ] {
        let raw = format!(
            "POST /shorten HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n{framing}\r\n{body}{smuggled}"
        );
        let answer = whole_answer(app.addr, raw.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{framing:?}: {answer}");
        assert_eq!(
            answer.matches("HTTP/1.1 ").count(),
            1,
            "{framing:?}: {answer}"
        );
    }
    assert_eq!(app.count("links").await, made);
    app.shutdown().await;
}

#[tokio::test]
async fn an_http_1_1_request_needs_exactly_one_host() {
    let app = spawn_app(&[]).await;
    for raw in [
        &b"GET /anything HTTP/1.1\r\nConnection: close\r\n\r\n"[..],
        b"GET /anything HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
        b"POST /shorten HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    ] {
        let response = send_raw(app.addr, raw).await;
        let problem = response.assert_problem(400);
        assert_eq!(problem["type"], "urn:shortener:problem:bad-host");
        assert_eq!(response.header("connection"), Some("close"));
    }
    // HTTP/1.0 has no such rule.
    let old = send_raw(app.addr, b"GET /no-such-code HTTP/1.0\r\n\r\n").await;
    assert_eq!(old.status, 404);
    app.shutdown().await;
}

#[tokio::test]
async fn during_the_shutdown_delay_answers_close_their_connection() {
    let app = spawn_app(&["--shutdown-delay", "2s"]).await;
    app.stop.cancel();
    // The service is draining: its readiness says so.
    let draining = eventually(Duration::from_secs(1), || async {
        send(app.admin, "GET", "/readyz", &[], b"").await.status == 503
    })
    .await;
    assert!(draining, "readiness did not turn 503 on the stop");
    // A keep-alive request: the answer closes the connection, so reading to the end returns.
    let response = send_raw(app.addr, b"GET /no-such-code HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(response.status, 404);
    assert_eq!(response.header("connection"), Some("close"));
    app.wait_stopped().await;
}

/// A create sent from `source` (another loopback address: another peer), with its answer.
async fn create_from(source: &str, addr: SocketAddr) -> common::TestResponse {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let body = r#"{"url": "https://example.com/other-peer"}"#;
    let request = format!(
        "POST /shorten HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    parse_response(&answer)
}

#[tokio::test]
async fn one_peer_cannot_take_every_connection_place() {
    // B8 meanwhile: 50 slow bodies from one peer, 10 places per peer, 60 in all.
    let app = spawn_app(&[
        "--max-connections",
        "60",
        "--max-connections-per-peer",
        "10",
        "--body-read-timeout",
        "5s",
    ])
    .await;
    let mut held = Vec::new();
    let mut closed = 0;
    for _ in 0..50 {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        stream
            .write_all(b"POST /shorten HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
            .await
            .unwrap();
        let mut byte = [0u8; 1];
        // A refused connection is closed at once; a held one waits for its body.
        match tokio::time::timeout(Duration::from_millis(300), stream.read(&mut byte)).await {
            Ok(Ok(0)) | Ok(Err(_)) => closed += 1,
            Ok(Ok(_)) => panic!("a trickling create was answered early"),
            Err(_) => held.push(stream),
        }
    }
    assert_eq!(held.len(), 10, "each peer holds at most its share");
    assert_eq!(closed, 40);
    // Another peer is served at once, while the ten still trickle.
    let started = Instant::now();
    let response = create_from("127.0.0.2", app.addr).await;
    assert_eq!(response.status, 201, "{}", response.text());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    drop(held);
    app.shutdown().await;
}

#[tokio::test]
async fn the_per_peer_cap_never_applies_to_trusted_proxies() {
    let app = spawn_app(&[
        "--max-connections-per-peer",
        "2",
        "--trusted-proxies",
        "127.0.0.1/32",
    ])
    .await;
    // Five idle connections from the proxy, then a request on a sixth: served.
    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(TcpStream::connect(app.addr).await.unwrap());
    }
    // All five accepted and kept (a peer over its cap would see some closed at once).
    let kept = eventually(Duration::from_secs(5), || async {
        let sockets = ListenerSockets::of(app.addr);
        sockets.accept_queue == 0 && sockets.established.len() == 5 && sockets.accepted() == 5
    })
    .await;
    assert!(kept, "{:?}", ListenerSockets::of(app.addr));
    let response = app.get("/no-such-code").await;
    assert_eq!(response.status, 404);
    drop(idle);
    app.shutdown().await;
}
