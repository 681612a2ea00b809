//! The embedded MQTT 3.1.1 broker of the local hub (`mir local`) and its local
//! certificate authority.
//!
//! The broker emulates AWS IoT Core with the device IoT policy of docs/architecture.md
//! (Topics and rule events):
//! the client id must be a valid [`mir_proto::DeviceId`]; on the mTLS listener the
//! certificate's common name must equal it; a device may publish only on its own
//! device-to-cloud topics (anything else disconnects it, as AWS does) and subscribe
//! only under `mir/{its id}/`. There is no QoS 2 and no retained-message store.
//!
//! Layout:
//! - this file: the public API ([`Broker`], [`BrokerHandle`], [`BrokerConfig`],
//!   [`Hooks`], [`ClientInfo`], [`DisconnectReason`], [`QoS`], [`BrokerError`]) and the
//!   listeners' accept loops.
//! - `codec`: a zero-copy MQTT 3.1.1 codec, only what a server reads and writes.
//! - `session`: sessions (subscriptions, outbound queue and in-flight window, kept
//!   while offline for `clean_session = false`), the session table and routing.
//! - `conn`: one task per connection: CONNECT checks, authorization, keepalive,
//!   hooks, outbound flow control.
//! - `tls`: the rustls server configuration (client certificates required).
//! - [`ca`]: the hub's certificate authority (CA, server and device certificates, CSRs).
//!
//! Outbound messages wait in their session's queue (bounded by
//! [`BrokerConfig::max_queued_per_session`], oldest dropped first) rather than in a
//! per-connection channel, so that a persistent session keeps exactly one queue whether
//! its device is online or not; the connection task is woken to drain it within the
//! in-flight window.
//!
//! Architecture: see docs/architecture.md in the repository (section Topics and rule events).

pub mod ca;
mod codec;
mod conn;
mod session;
mod tls;

use std::{fmt, future::Future, io, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{mpsc, watch},
};
use tracing::{debug, info, warn};

use crate::session::Shared;

/// Room for the fixed and variable headers (topic, packet id) around a payload.
const HEADER_SLACK: usize = 4096;
/// Time a client has to complete the TLS handshake and send CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Broker settings.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Plain TCP listener (development); port 0 picks a free port.
    pub plain: Option<SocketAddr>,
    /// mTLS listener; port 0 picks a free port.
    pub tls: Option<TlsListenerConfig>,
    /// Largest accepted PUBLISH payload; larger ones disconnect the client.
    pub max_payload: usize,
    /// Outbound QoS 1 window per client: at most this many unacknowledged publishes.
    pub max_inflight: u16,
    /// QoS 1 messages kept for an offline persistent session (and outbound messages
    /// waiting for an online one); when full the oldest is dropped.
    pub max_queued_per_session: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            plain: None,
            tls: None,
            max_payload: mir_proto::MAX_PAYLOAD_BYTES,
            max_inflight: mir_proto::MAX_INFLIGHT,
            max_queued_per_session: 10_000,
        }
    }
}

/// The mTLS listener: server certificate and the CA that signs device certificates.
#[derive(Clone)]
pub struct TlsListenerConfig {
    pub addr: SocketAddr,
    pub server_cert_chain_pem: String,
    pub server_key_pem: String,
    pub client_ca_pem: String,
}

impl fmt::Debug for TlsListenerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsListenerConfig")
            .field("addr", &self.addr)
            .field("server_key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// One accepted connection, as passed to [`Hooks`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    /// The MQTT client id, a valid device id.
    pub client_id: String,
    /// Unique per connection (a UUID), like AWS's `sessionIdentifier`.
    pub session_id: String,
    /// Like AWS's `versionNumber`: each new connection of a client id gets a higher one
    /// than the connection it follows, so lifecycle events delivered out of order can
    /// be put back in order. Microseconds since the Unix epoch (bumped when two
    /// connections fall in the same microsecond), so it keeps growing across restarts
    /// of the broker.
    pub version: u64,
    pub peer: SocketAddr,
    /// Whether the client came through the mTLS listener.
    pub tls: bool,
    /// Subject common name of the client certificate (mTLS only).
    pub cert_common_name: Option<String>,
    pub clean_session: bool,
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisconnectReason {
    /// The client sent DISCONNECT.
    ClientInitiated,
    /// The connection closed or failed without DISCONNECT.
    ConnectionLost,
    /// No packet for 1.5 times the keepalive.
    KeepAliveTimeout,
    /// The client published or acted outside its policy.
    AuthorizationFailure,
    /// Malformed or forbidden packet (QoS 2, second CONNECT, ...).
    ProtocolError,
    /// Another connection with the same client id took over.
    DuplicateClientId,
    /// The broker is stopping.
    ServerShutdown,
    /// A PUBLISH larger than [`BrokerConfig::max_payload`].
    PayloadTooLarge,
}

impl DisconnectReason {
    /// The `disconnectReason` of AWS IoT lifecycle events.
    pub fn as_aws_str(&self) -> &'static str {
        match self {
            DisconnectReason::ClientInitiated => "CLIENT_INITIATED_DISCONNECT",
            DisconnectReason::ConnectionLost => "CONNECTION_LOST",
            DisconnectReason::KeepAliveTimeout => "MQTT_KEEP_ALIVE_TIMEOUT",
            DisconnectReason::AuthorizationFailure => "AUTH_ERROR",
            DisconnectReason::ProtocolError => "CLIENT_ERROR",
            DisconnectReason::DuplicateClientId => "DUPLICATE_CLIENTID",
            DisconnectReason::ServerShutdown => "SERVER_INITIATED_DISCONNECT",
            // AWS: "a client will be disconnected ... if the client attempts to publish
            // with a payload that exceeds the payload limit" (CLIENT_ERROR).
            DisconnectReason::PayloadTooLarge => "CLIENT_ERROR",
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_aws_str())
    }
}

/// What the hub does with connections and messages.
#[async_trait::async_trait]
pub trait Hooks: Send + Sync + 'static {
    /// After the CONNACK accepting `client` was sent.
    async fn on_connect(&self, client: &ClientInfo);
    /// Exactly once per accepted connection, shutdown included.
    async fn on_disconnect(&self, client: &ClientInfo, reason: DisconnectReason);
    /// Every accepted inbound PUBLISH. For QoS 1 the PUBACK is sent only after this returns,
    /// so a slow hook applies backpressure to that client and nothing acknowledged is lost.
    async fn on_publish(&self, client: &ClientInfo, topic: &str, payload: Bytes);
}

/// Delivery guarantee (AWS IoT has no QoS 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QoS {
    AtMostOnce,
    AtLeastOnce,
}

impl QoS {
    pub(crate) fn level(self) -> u8 {
        match self {
            QoS::AtMostOnce => 0,
            QoS::AtLeastOnce => 1,
        }
    }
}

/// Errors of the broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the {what} PEM: {source}")]
    Pem {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("the {0} PEM holds no certificate or key")]
    EmptyPem(&'static str),
    #[error("invalid TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("invalid client CA: {0}")]
    ClientVerifier(#[from] rustls::server::VerifierBuilderError),
    #[error("invalid topic {topic:?}: {why}")]
    InvalidTopic { topic: String, why: &'static str },
    #[error("payload of {size} bytes exceeds the limit of {max} bytes")]
    PayloadTooLarge { size: usize, max: usize },
    #[error("the broker is stopped")]
    Stopped,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A running broker.
pub struct Broker {
    shared: Arc<Shared>,
    plain_addr: Option<SocketAddr>,
    tls_addr: Option<SocketAddr>,
    /// Every task holds a clone of the matching sender: `recv` returns `None` once all ended.
    tasks_done: mpsc::Receiver<()>,
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broker")
            .field("plain_addr", &self.plain_addr)
            .field("tls_addr", &self.tls_addr)
            .finish_non_exhaustive()
    }
}

/// Keeps [`Broker::stopped`] pending while alive.
#[derive(Clone)]
pub(crate) struct TaskGuard(#[allow(dead_code)] mpsc::Sender<()>);

impl Broker {
    /// Binds the listeners and starts serving until `shutdown` resolves.
    pub async fn start(
        config: BrokerConfig,
        hooks: Arc<dyn Hooks>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<Broker, BrokerError> {
        let acceptor = match &config.tls {
            Some(tls) => Some(tls::acceptor(tls)?),
            None => None,
        };
        let plain = match config.plain {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let tls_listener = match &config.tls {
            Some(tls) => Some(bind(tls.addr).await?),
            None => None,
        };
        let plain_addr = plain.as_ref().map(TcpListener::local_addr).transpose()?;
        let tls_addr = tls_listener
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()?;

        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let shared = Arc::new(Shared::new(&config, hooks, stop_rx));
        let (done_tx, tasks_done) = mpsc::channel(1);
        let guard = TaskGuard(done_tx);
        if let Some(listener) = plain {
            info!(addr = ?plain_addr, "MQTT listener (plain TCP)");
            tokio::spawn(accept_loop(listener, None, shared.clone(), guard.clone()));
        }
        if let (Some(listener), Some(acceptor)) = (tls_listener, acceptor) {
            info!(addr = ?tls_addr, "MQTT listener (mTLS)");
            tokio::spawn(accept_loop(
                listener,
                Some(acceptor),
                shared.clone(),
                guard.clone(),
            ));
        }
        drop(guard);
        Ok(Broker {
            shared,
            plain_addr,
            tls_addr,
            tasks_done,
        })
    }

    /// The bound address of the plain listener.
    pub fn plain_addr(&self) -> Option<SocketAddr> {
        self.plain_addr
    }

    /// The bound address of the mTLS listener.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    pub fn handle(&self) -> BrokerHandle {
        BrokerHandle {
            shared: self.shared.clone(),
        }
    }

    /// Resolves when every listener and connection task ended after shutdown.
    pub async fn stopped(mut self) {
        while self.tasks_done.recv().await.is_some() {}
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, BrokerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BrokerError::Bind { addr, source })
}

async fn accept_loop(
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
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let guard = guard.clone();
        match &acceptor {
            None => {
                tokio::spawn(async move {
                    conn::serve(shared, stream, peer, false, None).await;
                    drop(guard);
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    serve_tls(shared, acceptor, stream, peer).await;
                    drop(guard);
                });
            }
        }
    }
    debug!("listener stopped");
}

async fn serve_tls(
    shared: Arc<Shared>,
    acceptor: tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let mut stop = shared.shutdown.clone();
    let handshake = tokio::select! {
        _ = stop.wait_for(|s| *s) => return,
        r = tokio::time::timeout(CONNECT_TIMEOUT, acceptor.accept(stream)) => r,
    };
    let stream = match handshake {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            warn!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            warn!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let cn = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|der| tls::common_name(der));
    conn::serve(shared, stream, peer, true, cn).await;
}

/// Cheap handle to a running broker.
#[derive(Clone)]
pub struct BrokerHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for BrokerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerHandle").finish_non_exhaustive()
    }
}

impl BrokerHandle {
    /// Server-side publish (the hub publishing commands/desired properties to devices).
    /// Returns how many sessions it was delivered or queued to.
    pub async fn publish(
        &self,
        topic: &str,
        payload: Bytes,
        qos: QoS,
    ) -> Result<usize, BrokerError> {
        if *self.shared.shutdown.borrow() {
            return Err(BrokerError::Stopped);
        }
        check_topic_name(topic)?;
        if payload.len() > self.shared.max_payload {
            return Err(BrokerError::PayloadTooLarge {
                size: payload.len(),
                max: self.shared.max_payload,
            });
        }
        let topic = Bytes::copy_from_slice(topic.as_bytes());
        Ok(self.shared.route(&topic, &payload, qos.level()))
    }

    /// Whether a connection with this client id is currently accepted.
    pub fn is_connected(&self, client_id: &str) -> bool {
        self.shared.is_connected(client_id)
    }

    /// Client ids of the accepted connections.
    pub fn connected_clients(&self) -> Vec<String> {
        self.shared.connected_clients()
    }
}

fn check_topic_name(topic: &str) -> Result<(), BrokerError> {
    let why = if topic.is_empty() {
        "empty"
    } else if topic.len() > usize::from(u16::MAX) {
        "longer than 65535 bytes"
    } else if topic.contains(['+', '#']) {
        "wildcards are not allowed in a topic name"
    } else if topic.contains('\0') {
        "NUL character"
    } else {
        return Ok(());
    };
    Err(BrokerError::InvalidTopic {
        topic: topic.to_string(),
        why,
    })
}

#[cfg(test)]
mod tests {
    use super::DisconnectReason::*;

    #[test]
    fn every_disconnect_reason_is_one_aws_iot_lifecycle_events_use() {
        // The `disconnectReason` values of the AWS IoT Core lifecycle event documentation.
        const AWS: [&str; 12] = [
            "AUTH_ERROR",
            "CLIENT_INITIATED_DISCONNECT",
            "CLIENT_ERROR",
            "CONNECTION_LOST",
            "DUPLICATE_CLIENTID",
            "FORBIDDEN_ACCESS",
            "MQTT_KEEP_ALIVE_TIMEOUT",
            "SERVER_ERROR",
            "SERVER_INITIATED_DISCONNECT",
            "THROTTLED",
            "WEBSOCKET_TTL_EXPIRATION",
            "CUSTOMAUTH_TTL_EXPIRATION",
        ];
        for reason in [
            ClientInitiated,
            ConnectionLost,
            KeepAliveTimeout,
            AuthorizationFailure,
            ProtocolError,
            DuplicateClientId,
            ServerShutdown,
            PayloadTooLarge,
        ] {
            assert!(AWS.contains(&reason.as_aws_str()), "{reason:?}");
        }
        assert_eq!(DuplicateClientId.as_aws_str(), "DUPLICATE_CLIENTID");
        assert_eq!(AuthorizationFailure.as_aws_str(), "AUTH_ERROR");
        assert_eq!(PayloadTooLarge.as_aws_str(), "CLIENT_ERROR");
    }
}
