//! The ceiling the service is measured against (`loadtest/ratio.sh`): a bare hyper 1.x
//! HTTP/1.1 server that answers every request with the same `302 Found` and an empty body,
//! without routing, cache, database or click counting. Its connection handling copies the
//! service's (`src/http/server.rs`): the same `http1::Builder` settings, `TCP_NODELAY`, one
//! task per connection, the multi-thread runtime. So service/bare is the share of the
//! achievable redirect throughput the service reaches.
//!
//! ```text
//! cargo run --release --example bare_redirect -- [LISTEN_ADDR]   (default 127.0.0.1:8090)
//! ```
//!
//! Stops on SIGINT or SIGTERM.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, LOCATION};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

const DEFAULT_LISTEN: &str = "127.0.0.1:8090";

fn redirect() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::FOUND;
    let headers = response.headers_mut();
    headers.insert(
        LOCATION,
        HeaderValue::from_static("https://example.com/some/long/path"),
    );
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=0"),
    );
    response
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listen = std::env::args().nth(1);
    let listen = listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listener = TcpListener::bind(listen).await?;
    eprintln!("bare_redirect listening on {}", listener.local_addr()?);

    // The same settings as the service's server (src/http/server.rs).
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .keep_alive(true)
        .max_headers(100)
        .max_header_size(16 * 1024);

    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    loop {
        let (stream, _peer) = tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    eprintln!("accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = service_fn(|_request| async { Ok::<_, Infallible>(redirect()) });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
    Ok(())
}
