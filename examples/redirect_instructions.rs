//! Instructions per redirect, counted rather than timed: the service's `handle_public` answers
//! a cached code N times over one keep-alive connection on an in-memory stream (as the
//! `http_redirect_hit` bench does), and valgrind's callgrind counts the instructions executed
//! inside `exchanges` only (the service's background tasks run on a runtime of their own and
//! are not counted). A count does not swing with the neighbours of a shared machine; two
//! counts at two values of N give the cost of one redirect: `loadtest/instructions.sh`.
//!
//!   cargo build --release --example redirect_instructions
//!   valgrind --tool=callgrind --toggle-collect='*exchanges*' \
//!     target/release/examples/redirect_instructions 12000

use std::sync::Arc;

use clap::Parser;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use shortener::Application;
use shortener::config::{Cli, Command};
use shortener::links::ResolvedLink;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

const REQUEST: &[u8] = b"GET /bench123 HTTP/1.1\r\nHost: sho.rt\r\nUser-Agent: Mozilla/5.0 \
    (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36\r\n\
    Accept: */*\r\n\r\n";

/// Sends `count` requests and reads their answers; what callgrind counts.
#[inline(never)]
fn exchanges(runtime: &tokio::runtime::Runtime, stream: &mut DuplexStream, count: usize) {
    runtime.block_on(async {
        let mut answer = Vec::with_capacity(1024);
        for _ in 0..count {
            stream.write_all(REQUEST).await.unwrap();
            answer.clear();
            while !answer.ends_with(b"\r\n\r\n") {
                let mut chunk = [0u8; 1024];
                let read = stream.read(&mut chunk).await.unwrap();
                assert!(read > 0, "the server closed the connection");
                answer.extend_from_slice(&chunk[..read]);
            }
            assert!(answer.starts_with(b"HTTP/1.1 302"), "not a redirect");
        }
    })
}

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|count| count.parse().ok())
        .expect("usage: redirect_instructions COUNT");
    let background = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let argv = [
        "shortener",
        "serve",
        "--database-url",
        "postgres://bench@127.0.0.1:1/never",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--rate-limit-redirect",
        "off",
    ];
    let Command::Serve(args) = Cli::try_parse_from(argv).unwrap().command else {
        unreachable!()
    };
    let application = background
        .block_on(Application::build(args.parse().unwrap()))
        .unwrap();
    let link = Arc::new(ResolvedLink::new(
        1,
        http::HeaderValue::from_static("https://example.com/some/long/path/1"),
        time::OffsetDateTime::now_utc(),
    ));
    runtime.block_on(application.link_cache().insert("bench123", link));
    let state = application.state();
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let peer: std::net::SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let tasks = tokio_util::task::TaskTracker::new();
    let _connection = tasks.spawn_on(
        async move {
            let service = service_fn(move |request| {
                let response = shortener::http::handle_public(Arc::clone(&state), request, peer);
                async move { Ok::<_, std::convert::Infallible>(response.await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(server), service)
                .await;
        },
        runtime.handle(),
    );
    // Warm: the first requests allocate what the rest reuse.
    exchanges(&runtime, &mut client, 100);
    exchanges(&runtime, &mut client, count);
}
