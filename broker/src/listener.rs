//! The listeners' accept loops: the connection cap, the pending budget, the TLS
//! handshake, then one [`conn::serve`] task per connection.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    net::{TcpListener, TcpStream},
    time::Instant,
};
use tracing::{debug, warn};

use crate::{
    conn::{self, Preconnect, Transport},
    metrics::{worth_logging, Limit, Rejection},
    session::Shared,
    tls, TaskGuard,
};

/// Holds one place of `max_connections` until dropped.
struct Socket(Arc<Shared>);

impl Drop for Socket {
    fn drop(&mut self) {
        self.0
            .metrics
            .sockets
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// A place under `max_connections`, or `None` when the broker is full.
fn take_socket(shared: &Arc<Shared>) -> Option<Socket> {
    let sockets = &shared.metrics.sockets;
    let max = shared.limits.max_connections;
    sockets
        .fetch_update(
            std::sync::atomic::Ordering::AcqRel,
            std::sync::atomic::Ordering::Acquire,
            |n| (n < max).then_some(n + 1),
        )
        .ok()
        .map(|_| Socket(shared.clone()))
}

pub(crate) async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    guard: TaskGuard,
) {
    let mut stop = shared.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(socket) = take_socket(&shared) else {
            let n = shared.metrics.hit(Limit::Connections);
            if worth_logging(n) {
                warn!(
                    %peer,
                    max = shared.limits.max_connections,
                    total = n,
                    "too many connections: closed a new one"
                );
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let guard = guard.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            handle(shared, stream, peer, acceptor).await;
            drop(socket);
            drop(guard);
        });
    }
    debug!("listener stopped");
}

/// One accepted TCP connection: within the pending budget and the connect timeout
/// until its CONNECT is read (TLS handshake included).
async fn handle(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
) {
    let (slot, evicted) = shared.enter_pending();
    let mut pre = Preconnect {
        slot,
        evicted,
        deadline: Instant::now() + shared.limits.connect_timeout,
    };
    let Some(acceptor) = acceptor else {
        let transport = Transport {
            tls: false,
            certificate: None,
        };
        conn::serve(shared, stream, peer, transport, pre).await;
        return;
    };
    let mut stop = shared.shutdown.clone();
    let handshake = tokio::select! {
        _ = stop.wait_for(|s| *s) => return,
        _ = &mut pre.evicted => {
            debug!(%peer, "closed during the TLS handshake to make room for newer connections");
            return;
        }
        r = tokio::time::timeout_at(pre.deadline, acceptor.accept(stream)) => r,
    };
    let stream = match handshake {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let n = shared.metrics.reject(Rejection::TlsHandshake);
            if worth_logging(n) {
                warn!(%peer, error = %e, total = n, "TLS handshake failed");
            } else {
                debug!(%peer, error = %e, "TLS handshake failed");
            }
            return;
        }
        Err(_) => {
            let n = shared.metrics.hit(Limit::ConnectTimeout);
            if worth_logging(n) {
                warn!(%peer, total = n, "TLS handshake not done in time: connection closed");
            }
            return;
        }
    };
    let certificate = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(tls::client_certificate);
    let transport = Transport {
        tls: true,
        certificate,
    };
    conn::serve(shared, stream, peer, transport, pre).await;
}
