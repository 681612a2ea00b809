//! The embedded MQTT 3.1.1 broker of the local hub (`mir local`) and its local
//! certificate authority.
//!
//! The broker emulates AWS IoT Core with the device IoT policy of docs/architecture.md
//! (Topics and rule events):
//! the client id must be a valid [`mir_proto::DeviceId`]; on the mTLS listener the
//! certificate's common name must equal it; a device may publish only on its own
//! device-to-cloud topics (anything else disconnects it, as AWS does) and subscribe
//! only under `mir/{its id}/` (anything else gets the SUBACK failure code 0x80, so `#`,
//! `mir/#`, `mir/+/cmd/req` and `$aws/#` are refused). There is no QoS 2 and no
//! retained-message store (the retain flag is ignored).
//!
//! # Layout
//!
//! - this file: the public API ([`Broker`], [`BrokerHandle`], [`BrokerError`]);
//!   `config`: [`BrokerConfig`], [`TlsListenerConfig`]; `hooks`: [`Hooks`],
//!   [`ConnectRequest`], [`ClientInfo`], [`ClientCertificate`], [`Refusal`],
//!   [`HookError`], [`DisconnectReason`], [`QoS`]; `metrics`: [`BrokerMetrics`],
//!   [`Rejection`], [`Limit`], [`Sample`].
//! - `listener`: the accept loops (connection cap, pending budget, TLS handshake).
//! - `codec`: a strict, zero-copy MQTT 3.1.1 codec (`decode`, `encode`).
//! - `topic`: topic names and filters ([`TopicError`]); `policy`: the device policy.
//! - `session`: sessions (subscriptions, outbound queue and in-flight window, kept
//!   while offline for `clean_session = false`), the session table, routing, expiry.
//! - `conn`: one task per connection: CONNECT checks, admission, keepalive, hooks,
//!   outbound flow control.
//! - `tls`: the rustls server configuration (client certificates required).
//! - [`ca`]: the hub's certificate authority (CA, server and device certificates, CSRs).
//!
//! # Strict codec
//!
//! Whatever MQTT 3.1.1 says to reject closes the connection, with a log line naming
//! the cause (a typed `DecodeError`) and the [`Rejection::CodecError`] count: reserved
//! packet types; fixed-header flags other than the required ones (every type but
//! PUBLISH; SUBSCRIBE, UNSUBSCRIBE and PUBREL need `0b0010`); a remaining length over
//! 4 bytes, or other than 2 (acknowledgements) or 0 (PINGREQ, DISCONNECT); packet
//! identifier 0; a QoS 3 PUBLISH, or DUP on QoS 0; empty topics and filters, invalid
//! UTF-8 or U+0000 in any string, wildcards in a topic name, `#` or `+` not alone in
//! their level; SUBSCRIBE or UNSUBSCRIBE without filters, a requested QoS over 2;
//! a CONNECT with its reserved flag, will QoS or retain without the will flag, will QoS
//! 3, a password without a user name, or bytes after its payload. A protocol other
//! than MQTT 3.1.1 (name `MQTT`, level 4) gets CONNACK 1. The first packet must be
//! CONNECT; a second CONNECT, the QoS 2 flow and the packets only servers send close
//! the connection ([`Rejection::ProtocolError`]).
//!
//! # Admission and takeover
//!
//! After the broker's own checks and before any session is touched, [`Hooks::admit`]
//! sees a [`ConnectRequest`] (with the [`ClientCertificate`] of an mTLS client): the
//! hub refuses a plain-port client claiming the id of a device that has a certificate,
//! or a revoked certificate. A refused client gets CONNACK 5 (3 for
//! [`Refusal::Unavailable`]) and the session of that id, online or not, stays exactly
//! as it was. An admitted client with the id of a connected one takes its place
//! ([`DisconnectReason::DuplicateClientId`]). [`BrokerHandle::disconnect`] cuts off a
//! client (a device whose certificate was just revoked) and forgets its session.
//!
//! # Acknowledgements
//!
//! A QoS 1 PUBLISH is acknowledged only once [`Hooks::on_publish`] returned `Ok`. When
//! it returns a [`HookError`] the message is neither acknowledged nor routed and the
//! client is disconnected ([`DisconnectReason::ServerError`], AWS's `SERVER_ERROR`):
//! MQTT 3.1.1 clients resend unacknowledged messages when they reconnect, so nothing
//! the hub could not keep is lost. A QoS 0 message the hook refused is dropped and
//! the connection stays.
//!
//! # Limits
//!
//! Each is a [`BrokerConfig`] field whose default is AWS IoT Core's value where AWS has
//! one. Each hit is logged with its reason (the first hits, then every power of two and
//! every thousandth, with the count so far) and counted by its [`Limit`]:
//!
//! | field | default | when hit |
//! |---|---|---|
//! | `max_payload` | 128 KB (AWS) | the client is disconnected ([`Rejection::PayloadTooLarge`]) |
//! | `max_inflight` | 100 (AWS) | QoS 1 messages wait until the client acknowledges |
//! | `session_expiry` | 1 hour (AWS) | an offline persistent session is forgotten |
//! | `max_queued_per_session` | 10,000 messages | the oldest waiting message is dropped |
//! | `max_queued_bytes_per_session` | 8 MiB | the oldest messages are dropped, in flight ones first (they are the oldest), so a subscriber that never acknowledges holds at most this and gets the newest when it resumes |
//! | `max_queued_bytes` | 256 MiB, all sessions | the session's own oldest messages are dropped to make room; with none, the new message is not queued |
//! | `max_subscriptions_per_connection` | 50 (AWS) | the filter gets SUBACK 0x80, as AWS fails the subscriptions past its quota; the client stays |
//! | `max_filters_per_subscribe` | 8 (AWS) | the client is disconnected (`CLIENT_ERROR`), as AWS does |
//! | `max_connections` | 10,000 | a new TCP connection is closed as soon as accepted |
//! | `max_pending_connections` | 500 | connections without a complete CONNECT (TLS handshake included): a new one closes the oldest, so a flood of silent connections cannot keep out a client that sends its CONNECT at once |
//! | `connect_timeout` | 5 s | no complete CONNECT within it of the TCP accept (or no answer of [`Hooks::admit`]): closed |
//!
//! Queued bytes are topic plus payload of the messages waiting for, or in flight to, a
//! session. Nothing is reserved for a packet before its bytes arrive: a read buffer
//! starts empty and grows with what is read (to 16 KB steps).
//!
//! Outbound messages wait in their session's queue rather than in a per-connection
//! channel, so that a persistent session keeps exactly one queue whether its device is
//! online or not; the connection task is woken to drain it within the in-flight window.
//!
//! # Metrics
//!
//! [`BrokerHandle::metrics`] returns a [`BrokerMetrics`] snapshot of plain atomic
//! counters: connections (plain, mTLS), pending connections, sessions (online,
//! offline), messages in and out, queued messages and bytes, rejections by
//! [`Rejection`] and limit hits by [`Limit`]. [`BrokerMetrics::samples`] names them
//! for Prometheus (`mir_broker_...`); the names are stable.
//!
//! # Property tests
//!
//! The codec's properties (arbitrary bytes never panic and decode or fail with a typed
//! error; what the broker writes and what clients send decode back to what was
//! encoded; a stream split anywhere decodes like the whole) run 2,000 cases each with
//! `cargo test -p mir-broker`. The longer run:
//!
//! ```sh
//! PROPTEST_CASES=1000000 cargo test --release -p mir-broker --lib codec::proptests
//! ```
//!
//! Architecture: see docs/architecture.md in the repository (section Topics and rule events).

pub mod ca;
mod codec;
mod config;
mod conn;
mod hooks;
mod listener;
mod metrics;
mod policy;
mod session;
mod tls;
mod topic;

use std::{fmt, future::Future, io, net::SocketAddr, sync::Arc};

use bytes::Bytes;
use tokio::{
    net::TcpListener,
    sync::{mpsc, watch},
};
use tracing::info;

pub use config::{BrokerConfig, TlsListenerConfig};
pub use hooks::{
    ClientCertificate, ClientInfo, ConnectRequest, DisconnectReason, HookError, Hooks, QoS, Refusal,
};
pub use metrics::{BrokerMetrics, Limit, MetricKind, Rejection, Sample};
pub use topic::TopicError;

use crate::session::Shared;

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
    InvalidTopic { topic: String, why: TopicError },
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
            tokio::spawn(listener::accept_loop(
                listener,
                None,
                shared.clone(),
                guard.clone(),
            ));
        }
        if let (Some(listener), Some(acceptor)) = (tls_listener, acceptor) {
            info!(addr = ?tls_addr, "MQTT listener (mTLS)");
            tokio::spawn(listener::accept_loop(
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
        topic::check_name(topic).map_err(|why| BrokerError::InvalidTopic {
            topic: topic.to_string(),
            why,
        })?;
        let max = self.shared.limits.max_payload;
        if payload.len() > max {
            return Err(BrokerError::PayloadTooLarge {
                size: payload.len(),
                max,
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

    /// Closes the connection of `client_id`, if any, with `reason` (the hub cutting off
    /// a device whose certificate it revoked passes
    /// [`DisconnectReason::AuthorizationFailure`]), without publishing its last will,
    /// and forgets its session, persistent or not, with what was queued for it.
    /// [`Hooks::on_disconnect`] is called as for any accepted connection. Returns
    /// whether the client id had a session.
    pub fn disconnect(&self, client_id: &str, reason: DisconnectReason) -> bool {
        self.shared.disconnect(client_id, reason)
    }

    /// A snapshot of the broker's counters (crate documentation, Metrics).
    pub fn metrics(&self) -> BrokerMetrics {
        let (online, offline) = self.shared.session_counts();
        self.shared.metrics.snapshot(online, offline)
    }
}
