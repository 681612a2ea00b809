//! A strict MQTT 3.1.1 codec: the server's view of the protocol.
//!
//! - `decode`: every packet type of MQTT 3.1.1, checked as the specification says
//!   (fixed-header flags, lengths, packet identifiers, UTF-8 strings, topic names and
//!   filters, CONNECT flags); anything else is a typed [`DecodeError`] and the connection
//!   is closed. Packets only a server sends (CONNACK, SUBACK, ...) are decoded too, so
//!   that what the broker writes can be read back (round-trip tests); the connection
//!   refuses them.
//! - `encode`: what the broker writes (CONNACK, PUBLISH, PUBACK, SUBACK, UNSUBACK,
//!   PINGRESP).
//!
//! Decoding is zero-copy: a frame is split off the read buffer as [`Bytes`] and the
//! topic and payload of a PUBLISH are slices of it. Nothing is reserved for a frame
//! before its bytes arrive.

mod decode;
mod encode;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::fmt;

use bytes::Bytes;

pub(crate) use decode::decode;
pub(crate) use encode::{
    put_connack, put_pingresp, put_puback, put_publish, put_suback, put_unsuback,
};

use crate::topic::TopicError;

/// The 14 packet types of MQTT 3.1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Connect,
    ConnAck,
    Publish,
    PubAck,
    PubRec,
    PubRel,
    PubComp,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    PingReq,
    PingResp,
    Disconnect,
}

impl Kind {
    /// The type of a fixed header's first nibble (0 and 15 are reserved).
    pub(crate) fn from_nibble(n: u8) -> Option<Kind> {
        Some(match n {
            1 => Kind::Connect,
            2 => Kind::ConnAck,
            3 => Kind::Publish,
            4 => Kind::PubAck,
            5 => Kind::PubRec,
            6 => Kind::PubRel,
            7 => Kind::PubComp,
            8 => Kind::Subscribe,
            9 => Kind::SubAck,
            10 => Kind::Unsubscribe,
            11 => Kind::UnsubAck,
            12 => Kind::PingReq,
            13 => Kind::PingResp,
            14 => Kind::Disconnect,
            _ => return None,
        })
    }

    /// The fixed-header flags MQTT-2.2.2-1 requires (PUBLISH has its own rules).
    pub(crate) fn required_flags(self) -> Option<u8> {
        match self {
            Kind::Publish => None,
            Kind::PubRel | Kind::Subscribe | Kind::Unsubscribe => Some(0b0010),
            _ => Some(0),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Connect => "CONNECT",
            Kind::ConnAck => "CONNACK",
            Kind::Publish => "PUBLISH",
            Kind::PubAck => "PUBACK",
            Kind::PubRec => "PUBREC",
            Kind::PubRel => "PUBREL",
            Kind::PubComp => "PUBCOMP",
            Kind::Subscribe => "SUBSCRIBE",
            Kind::SubAck => "SUBACK",
            Kind::Unsubscribe => "UNSUBSCRIBE",
            Kind::UnsubAck => "UNSUBACK",
            Kind::PingReq => "PINGREQ",
            Kind::PingResp => "PINGRESP",
            Kind::Disconnect => "DISCONNECT",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A UTF-8 string field of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Field {
    ClientId,
    WillTopic,
    UserName,
    TopicName,
    TopicFilter,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::ClientId => "client id",
            Field::WillTopic => "will topic",
            Field::UserName => "user name",
            Field::TopicName => "topic name",
            Field::TopicFilter => "topic filter",
        })
    }
}

/// Why a frame could not be decoded. Every variant closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    /// The remaining length announced by the fixed header exceeds the limit.
    #[error("packet of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        size: usize,
        max: usize,
        publish: bool,
    },
    #[error("remaining length longer than 4 bytes")]
    RemainingLength,
    #[error("reserved packet type {0}")]
    ReservedType(u8),
    #[error("{kind} with reserved fixed-header flags {flags:#06b}")]
    ReservedFlags { kind: Kind, flags: u8 },
    #[error("{kind} with a remaining length of {len} bytes instead of {expected}")]
    Length {
        kind: Kind,
        len: usize,
        expected: usize,
    },
    #[error("{0} ends before its last field")]
    Truncated(Kind),
    #[error("{kind} has {extra} bytes after its last field")]
    Trailing { kind: Kind, extra: usize },
    #[error("{0} with packet identifier 0")]
    ZeroPacketId(Kind),
    #[error("PUBLISH with QoS 3")]
    PublishQos3,
    #[error("DUP set on a QoS 0 PUBLISH")]
    DupOnQos0,
    #[error("{0} is not valid UTF-8")]
    Utf8(Field),
    #[error("{0} contains the character U+0000")]
    Nul(Field),
    #[error("invalid {field}: {error}")]
    Topic { field: Field, error: TopicError },
    #[error("unsupported protocol level {level} (protocol name \"MQTT\": {name_is_mqtt}); only MQTT 3.1.1 is served")]
    UnsupportedProtocol { name_is_mqtt: bool, level: u8 },
    #[error("CONNECT with its reserved flag set")]
    ConnectReservedFlag,
    #[error("CONNECT with will QoS or will retain but no will flag")]
    WillFlagsWithoutWill,
    #[error("CONNECT with will QoS 3")]
    WillQos3,
    #[error("CONNECT with a password but no user name")]
    PasswordWithoutUserName,
    #[error("{0} without any topic filter")]
    NoTopicFilter(Kind),
    #[error("SUBSCRIBE requesting QoS byte {0:#04x}")]
    RequestedQos(u8),
    #[error("CONNACK with flags {flags:#04x} and return code {code}")]
    ConnAck { flags: u8, code: u8 },
    #[error("SUBACK return code {0:#04x}")]
    SubAckCode(u8),
}

/// Last will of a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Will {
    /// A valid topic name (UTF-8, checked while decoding).
    pub topic: Bytes,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Connect {
    pub clean_session: bool,
    pub keep_alive: u16,
    pub client_id: String,
    pub will: Option<Will>,
    pub user_name: Option<String>,
    /// Whether a password was sent (it is not kept: it authenticates nothing here).
    pub has_password: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Publish {
    pub dup: bool,
    /// 0 or 1; QoS 2 is decoded (it is valid MQTT) and refused by the connection.
    pub qos: u8,
    pub retain: bool,
    /// A valid topic name (UTF-8, checked while decoding).
    pub topic: Bytes,
    /// 0 for QoS 0.
    pub pkid: u16,
    pub payload: Bytes,
}

impl Publish {
    /// The topic as text (checked while decoding, so never empty unless built otherwise).
    pub(crate) fn topic_str(&self) -> &str {
        std::str::from_utf8(&self.topic).unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Packet {
    Connect(Connect),
    ConnAck {
        session_present: bool,
        code: u8,
    },
    Publish(Publish),
    PubAck(u16),
    PubRec(u16),
    PubRel(u16),
    PubComp(u16),
    Subscribe {
        pkid: u16,
        filters: Vec<(String, u8)>,
    },
    SubAck {
        pkid: u16,
        codes: Vec<u8>,
    },
    Unsubscribe {
        pkid: u16,
        filters: Vec<String>,
    },
    UnsubAck(u16),
    PingReq,
    PingResp,
    Disconnect,
}

impl Packet {
    pub(crate) fn kind(&self) -> Kind {
        match self {
            Packet::Connect(_) => Kind::Connect,
            Packet::ConnAck { .. } => Kind::ConnAck,
            Packet::Publish(_) => Kind::Publish,
            Packet::PubAck(_) => Kind::PubAck,
            Packet::PubRec(_) => Kind::PubRec,
            Packet::PubRel(_) => Kind::PubRel,
            Packet::PubComp(_) => Kind::PubComp,
            Packet::Subscribe { .. } => Kind::Subscribe,
            Packet::SubAck { .. } => Kind::SubAck,
            Packet::Unsubscribe { .. } => Kind::Unsubscribe,
            Packet::UnsubAck(_) => Kind::UnsubAck,
            Packet::PingReq => Kind::PingReq,
            Packet::PingResp => Kind::PingResp,
            Packet::Disconnect => Kind::Disconnect,
        }
    }
}

/// CONNACK return codes of MQTT 3.1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum ConnectCode {
    Accepted = 0,
    UnacceptableProtocol = 1,
    IdentifierRejected = 2,
    ServerUnavailable = 3,
    NotAuthorized = 5,
}
