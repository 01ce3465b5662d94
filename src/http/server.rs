//! The accept loop and the per-connection limits.
//!
//! Limits, all enforced before a handler runs: a cap on open connections (a semaphore permit
//! is taken before `accept`, so excess clients wait in the kernel backlog), a header-read
//! timeout (which needs hyper's timer, or it is silently off), and caps on header count and size.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::Response;

/// More headers than this: 431.
const MAX_HEADERS: usize = 100;
/// Request line plus headers larger than this: 431.
const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Time to receive a request's headers; since hyper starts this clock when it waits for the
    /// next request, it is also the idle timeout of keep-alive connections.
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

/// Serves HTTP/1.1 on `listener` until `stop` is cancelled, then stops accepting, lets every
/// in-flight request finish (closing idle keep-alive connections), and returns. The caller
/// bounds how long that may take.
pub async fn serve<H, F>(
    listener: TcpListener,
    limits: ConnectionLimits,
    handler: H,
    stop: CancellationToken,
) where
    H: Fn(http::Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true)
        .max_headers(MAX_HEADERS)
        .max_header_size(MAX_HEADER_BYTES);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();

    loop {
        let permit = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let service = service_fn(move |request| {
            let response = handler(request, peer);
            async move { Ok::<_, Infallible>(response.await) }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
