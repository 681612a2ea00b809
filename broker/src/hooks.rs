//! What the broker asks of the hub: [`Hooks`], and the types its methods take.

use std::{fmt, net::SocketAddr};

use bytes::Bytes;

/// The client certificate of an mTLS connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientCertificate {
    /// SHA-256 of the certificate's DER, lower-case hex: the same value as
    /// [`crate::ca::IssuedCert::certificate_id`] (like AWS's `certificateId`).
    pub certificate_id: String,
    /// The serial number, lower-case hex, without leading zero bytes.
    pub serial_hex: String,
    /// Subject common name.
    pub common_name: Option<String>,
}

/// A CONNECT that passed the broker's own checks (protocol, client id, certificate
/// common name), as passed to [`Hooks::admit`] before any session is touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// The MQTT client id, a valid device id.
    pub client_id: String,
    pub peer: SocketAddr,
    /// Whether the client came through the mTLS listener.
    pub tls: bool,
    /// The client certificate (mTLS only).
    pub certificate: Option<ClientCertificate>,
    pub clean_session: bool,
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
    /// The client certificate (mTLS only).
    pub certificate: Option<ClientCertificate>,
    pub clean_session: bool,
}

/// Why [`Hooks::admit`] refuses a connection. The client gets the CONNACK return code
/// of [`Refusal::connack_code`] and the connection is closed; no session is touched
/// and no other hook is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Refusal {
    /// The client id belongs to a device that has a certificate: it connects over mTLS
    /// only (a client on the plain listener claiming it is refused).
    #[error("the client id belongs to a device with a certificate: it must connect over mTLS")]
    CertificateRequired,
    /// The client certificate was revoked.
    #[error("the client certificate is revoked")]
    CertificateRevoked,
    /// Any other reason not to let this client in.
    #[error("not authorized")]
    NotAuthorized,
    /// The hub cannot decide now (a store is unreachable, it is stopping); the client
    /// may try again later.
    #[error("the hub cannot admit clients now")]
    Unavailable,
}

impl Refusal {
    /// The MQTT 3.1.1 CONNACK return code: 5 (not authorized), or 3 (server
    /// unavailable) for [`Refusal::Unavailable`].
    pub fn connack_code(&self) -> u8 {
        match self {
            Refusal::Unavailable => 3,
            Refusal::CertificateRequired | Refusal::CertificateRevoked | Refusal::NotAuthorized => {
                5
            }
        }
    }
}

/// Why [`Hooks::on_publish`] did not keep a message.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// Storing the message, or writing its dead letter, failed.
    #[error("the message could not be kept: {0}")]
    NotKept(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The hub accepts no message now (it is stopping).
    #[error("the hub accepts no message now")]
    Unavailable,
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
    /// The client published or acted outside its policy, or the hub cut it off
    /// ([`crate::BrokerHandle::disconnect`]).
    AuthorizationFailure,
    /// Malformed or forbidden packet (QoS 2, second CONNECT, more than
    /// [`crate::BrokerConfig::max_filters_per_subscribe`] filters, ...).
    ProtocolError,
    /// Another connection with the same client id took over.
    DuplicateClientId,
    /// The broker is stopping.
    ServerShutdown,
    /// A PUBLISH larger than [`crate::BrokerConfig::max_payload`].
    PayloadTooLarge,
    /// [`Hooks::on_publish`] did not keep a QoS 1 message: the client is disconnected
    /// without its PUBACK, so that it sends the message again when it reconnects.
    ServerError,
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
            DisconnectReason::ServerError => "SERVER_ERROR",
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
    /// After the broker's own CONNECT checks and before any session is touched: an
    /// `Err` refuses the client with the CONNACK return code of the [`Refusal`], and the
    /// session of the client id (a real device's, connected or not) stays as it was.
    /// It must answer within [`crate::BrokerConfig::connect_timeout`], else the client
    /// is refused as [`Refusal::Unavailable`]. The default admits every client.
    async fn admit(&self, request: &ConnectRequest) -> Result<(), Refusal> {
        let _ = request;
        Ok(())
    }
    /// After the CONNACK accepting `client` was sent.
    async fn on_connect(&self, client: &ClientInfo);
    /// Exactly once per accepted connection, shutdown included.
    async fn on_disconnect(&self, client: &ClientInfo, reason: DisconnectReason);
    /// Every accepted inbound PUBLISH (and last will). For QoS 1 the PUBACK is sent only
    /// after this returned `Ok`, so a slow hook applies backpressure to that client and
    /// nothing acknowledged is lost. On `Err` the message is not routed; a QoS 1 message
    /// is not acknowledged and the client is disconnected
    /// ([`DisconnectReason::ServerError`]) so that it sends it again once reconnected
    /// (MQTT 3.1.1 clients resend unacknowledged messages on reconnection only); a
    /// QoS 0 message is dropped and the connection stays.
    async fn on_publish(
        &self,
        client: &ClientInfo,
        topic: &str,
        payload: Bytes,
    ) -> Result<(), HookError>;
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

#[cfg(test)]
mod tests {
    use super::DisconnectReason::*;
    use super::Refusal;

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
            ServerError,
        ] {
            assert!(AWS.contains(&reason.as_aws_str()), "{reason:?}");
        }
        assert_eq!(DuplicateClientId.as_aws_str(), "DUPLICATE_CLIENTID");
        assert_eq!(AuthorizationFailure.as_aws_str(), "AUTH_ERROR");
        assert_eq!(PayloadTooLarge.as_aws_str(), "CLIENT_ERROR");
        assert_eq!(ServerError.as_aws_str(), "SERVER_ERROR");
    }

    #[test]
    fn refusals_answer_not_authorized_unless_the_hub_is_unavailable() {
        assert_eq!(Refusal::CertificateRequired.connack_code(), 5);
        assert_eq!(Refusal::CertificateRevoked.connack_code(), 5);
        assert_eq!(Refusal::NotAuthorized.connack_code(), 5);
        assert_eq!(Refusal::Unavailable.connack_code(), 3);
    }
}
