//! The accept loop and the per-connection limits.
//!
//! Limits, all enforced before a handler runs: a cap on open connections (a semaphore permit
//! is taken before `accept`, so excess clients wait in the kernel backlog), a header-read
//! timeout (which needs hyper's timer, or it is silently off), and caps on header count and size.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Response;
use crate::domain::TrustedProxies;
use crate::limits::LimitKey;

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
    /// Most connections open at once from one TCP peer (an IPv6 peer: its /64), never applied
    /// to trusted proxies; `None`: no such cap.
    pub per_peer: Option<PerPeerCap>,
}

/// A cap on the connections of each TCP peer: one client cannot take every place.
#[derive(Debug, Clone)]
pub struct PerPeerCap {
    pub max: usize,
    /// Peers the cap never applies to (the load balancers).
    pub exempt: TrustedProxies,
}

/// Connections open per peer now.
type OpenPerPeer = Arc<Mutex<HashMap<LimitKey, usize>>>;

/// A peer's place, given back when its connection ends.
struct PeerPlace {
    open: OpenPerPeer,
    key: LimitKey,
}

impl Drop for PeerPlace {
    fn drop(&mut self) {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Takes a place for `peer`, or `None` when it already holds `cap.max` connections. A peer
/// the cap does not apply to gets a place that counts nothing.
fn take_place(open: &OpenPerPeer, cap: &PerPeerCap, peer: SocketAddr) -> Option<Option<PeerPlace>> {
    if cap.exempt.contains(peer.ip()) {
        return Some(None);
    }
    let key = LimitKey::of(peer.ip());
    let mut counts = open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let count = counts.entry(key).or_insert(0);
    if *count >= cap.max {
        return None;
    }
    *count += 1;
    Some(Some(PeerPlace {
        open: Arc::clone(open),
        key,
    }))
}

/// A listener on `address` whose accept queue holds `backlog` connections (the kernel caps it
/// at `net.core.somaxconn`): a burst of new clients waits in the kernel, not in SYN retries.
pub fn bind(address: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(backlog)
}

/// Serves HTTP/1.1 on `listener` until `stop` is cancelled, then stops accepting, lets every
/// in-flight request finish (closing idle keep-alive connections), and returns. Each
/// connection is a task on `tasks`. The caller bounds how long that may take.
pub async fn serve<H, F>(
    listener: TcpListener,
    limits: ConnectionLimits,
    handler: H,
    stop: CancellationToken,
    tasks: TaskTracker,
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
    let open_per_peer: OpenPerPeer = Arc::default();
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
                    crate::throttled!(warn, error = %crate::telemetry::Chain(&error), "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let place = match &limits.per_peer {
            None => None,
            Some(cap) => match take_place(&open_per_peer, cap, peer) {
                Some(place) => place,
                None => {
                    // Closed at once: its permit is free again for everyone else.
                    tracing::debug!(%peer, "connection refused: this peer holds its share");
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
        tasks.spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
            drop(place);
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
