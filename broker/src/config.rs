//! [`BrokerConfig`]: listeners and limits, with AWS IoT Core's values as defaults.

use std::{fmt, net::SocketAddr, time::Duration};

/// Broker settings. Every limit is documented in the crate documentation (Limits).
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Plain TCP listener (development); port 0 picks a free port.
    pub plain: Option<SocketAddr>,
    /// mTLS listener; port 0 picks a free port.
    pub tls: Option<TlsListenerConfig>,
    /// Largest accepted PUBLISH payload; larger ones disconnect the client (AWS: 128 KB).
    pub max_payload: usize,
    /// Outbound QoS 1 window per client: at most this many unacknowledged publishes
    /// (AWS: 100).
    pub max_inflight: u16,
    /// Messages waiting to be sent to one session (kept while it is offline for a
    /// persistent session); when full the oldest is dropped.
    pub max_queued_per_session: usize,
    /// Bytes (topic + payload) queued or in flight to one session; past it the oldest
    /// are dropped (in-flight ones are the oldest).
    pub max_queued_bytes_per_session: usize,
    /// Bytes queued or in flight to all sessions together; past it a new message is
    /// not queued.
    pub max_queued_bytes: usize,
    /// How long a persistent session is kept after its client disconnected (AWS: 1 hour).
    pub session_expiry: Duration,
    /// Subscriptions one session holds at most (AWS: 50 per connection); a filter past
    /// it gets the SUBACK failure code 0x80.
    pub max_subscriptions_per_connection: usize,
    /// Topic filters one SUBSCRIBE carries at most (AWS: 8); more disconnect the client.
    pub max_filters_per_subscribe: usize,
    /// Open TCP connections, both listeners and every stage together; a connection past
    /// it is closed as soon as it is accepted.
    pub max_connections: usize,
    /// Connections that have not sent CONNECT yet (TLS handshake included); a new one
    /// past it closes the oldest of them.
    pub max_pending_connections: usize,
    /// Time from the TCP accept to a complete CONNECT (TLS handshake included); also
    /// the time [`crate::Hooks::admit`] has to answer.
    pub connect_timeout: Duration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            plain: None,
            tls: None,
            max_payload: mir_proto::MAX_PAYLOAD_BYTES,
            max_inflight: mir_proto::MAX_INFLIGHT,
            max_queued_per_session: 10_000,
            max_queued_bytes_per_session: 8 << 20,
            max_queued_bytes: 256 << 20,
            session_expiry: Duration::from_secs(3600),
            max_subscriptions_per_connection: 50,
            max_filters_per_subscribe: 8,
            max_connections: 10_000,
            max_pending_connections: 500,
            connect_timeout: Duration::from_secs(5),
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
