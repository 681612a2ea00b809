//! Decoding: a frame off the read buffer, then the rules of its packet type.
//!
//! Every check that can be made from the fixed header (type, flags, length) is made
//! before the body arrives, so a stream decodes the same whether its bytes come at
//! once or one by one.

use bytes::{Buf, Bytes, BytesMut};

use super::{Connect, DecodeError, Field, Kind, Packet, Publish, Will};
use crate::topic;

/// Decodes one packet from `buf` if a complete frame is there; `Ok(None)` asks for
/// more bytes.
///
/// `max_remaining` bounds the remaining length of any packet; the frame is refused as
/// soon as its fixed header is read. Nothing is reserved for the body: the caller's
/// reads grow the buffer as the bytes arrive.
pub(crate) fn decode(
    buf: &mut BytesMut,
    max_remaining: usize,
) -> Result<Option<Packet>, DecodeError> {
    let Some(&byte1) = buf.first() else {
        return Ok(None);
    };
    let kind = Kind::from_nibble(byte1 >> 4).ok_or(DecodeError::ReservedType(byte1 >> 4))?;
    let flags = byte1 & 0x0f;
    if let Some(required) = kind.required_flags() {
        if flags != required {
            return Err(DecodeError::ReservedFlags { kind, flags });
        }
    }
    let mut remaining: usize = 0;
    let mut header_len = 1;
    loop {
        let Some(&b) = buf.get(header_len) else {
            return Ok(None);
        };
        remaining |= usize::from(b & 0x7f) << (7 * (header_len - 1));
        header_len += 1;
        if b & 0x80 == 0 {
            break;
        }
        if header_len == 5 {
            return Err(DecodeError::RemainingLength);
        }
    }
    if let Some(expected) = fixed_length(kind) {
        if remaining != expected {
            return Err(DecodeError::Length {
                kind,
                len: remaining,
                expected,
            });
        }
    }
    if remaining > max_remaining {
        return Err(DecodeError::TooLarge {
            size: remaining,
            max: max_remaining,
            publish: kind == Kind::Publish,
        });
    }
    let frame_len = header_len + remaining;
    if buf.len() < frame_len {
        return Ok(None);
    }
    let mut frame = buf.split_to(frame_len).freeze();
    frame.advance(header_len);
    decode_body(kind, flags, frame).map(Some)
}

/// The remaining length of the packet types that have only a fixed part.
fn fixed_length(kind: Kind) -> Option<usize> {
    match kind {
        Kind::ConnAck
        | Kind::PubAck
        | Kind::PubRec
        | Kind::PubRel
        | Kind::PubComp
        | Kind::UnsubAck => Some(2),
        Kind::PingReq | Kind::PingResp | Kind::Disconnect => Some(0),
        _ => None,
    }
}

fn decode_body(kind: Kind, flags: u8, mut b: Bytes) -> Result<Packet, DecodeError> {
    Ok(match kind {
        Kind::Connect => Packet::Connect(decode_connect(b)?),
        Kind::ConnAck => {
            let (ack_flags, code) = (b.get_u8(), b.get_u8());
            // MQTT-3.2.2-1 (reserved bits) and MQTT-3.2.2-4 (no session on a refusal).
            if ack_flags & 0xfe != 0 || code > 5 || (ack_flags == 1 && code != 0) {
                return Err(DecodeError::ConnAck {
                    flags: ack_flags,
                    code,
                });
            }
            Packet::ConnAck {
                session_present: ack_flags == 1,
                code,
            }
        }
        Kind::Publish => Packet::Publish(decode_publish(flags, b)?),
        Kind::PubAck => Packet::PubAck(packet_id(&mut b, kind)?),
        Kind::PubRec => Packet::PubRec(packet_id(&mut b, kind)?),
        Kind::PubRel => Packet::PubRel(packet_id(&mut b, kind)?),
        Kind::PubComp => Packet::PubComp(packet_id(&mut b, kind)?),
        Kind::UnsubAck => Packet::UnsubAck(packet_id(&mut b, kind)?),
        Kind::Subscribe => {
            let pkid = packet_id(&mut b, kind)?;
            let mut filters = Vec::new();
            while b.has_remaining() {
                let filter = read_filter(&mut b, kind)?;
                if !b.has_remaining() {
                    return Err(DecodeError::Truncated(kind));
                }
                // MQTT-3.8.3-4: the upper six bits are reserved; QoS 3 is malformed.
                let qos = b.get_u8();
                if qos > 2 {
                    return Err(DecodeError::RequestedQos(qos));
                }
                filters.push((filter, qos));
            }
            if filters.is_empty() {
                return Err(DecodeError::NoTopicFilter(kind));
            }
            Packet::Subscribe { pkid, filters }
        }
        Kind::SubAck => {
            let pkid = packet_id(&mut b, kind)?;
            if !b.has_remaining() {
                return Err(DecodeError::Truncated(kind));
            }
            let codes = b.to_vec();
            if let Some(&bad) = codes.iter().find(|c| !matches!(c, 0 | 1 | 2 | 0x80)) {
                return Err(DecodeError::SubAckCode(bad));
            }
            Packet::SubAck { pkid, codes }
        }
        Kind::Unsubscribe => {
            let pkid = packet_id(&mut b, kind)?;
            let mut filters = Vec::new();
            while b.has_remaining() {
                filters.push(read_filter(&mut b, kind)?);
            }
            if filters.is_empty() {
                return Err(DecodeError::NoTopicFilter(kind));
            }
            Packet::Unsubscribe { pkid, filters }
        }
        Kind::PingReq => Packet::PingReq,
        Kind::PingResp => Packet::PingResp,
        Kind::Disconnect => Packet::Disconnect,
    })
}

fn decode_publish(flags: u8, mut b: Bytes) -> Result<Publish, DecodeError> {
    let dup = flags & 0b1000 != 0;
    let qos = (flags >> 1) & 0b11;
    let retain = flags & 1 != 0;
    if qos == 3 {
        return Err(DecodeError::PublishQos3);
    }
    // MQTT-3.3.1-2.
    if dup && qos == 0 {
        return Err(DecodeError::DupOnQos0);
    }
    let topic = read_utf8(&mut b, Kind::Publish, Field::TopicName)?;
    check_topic_name(&topic, Field::TopicName)?;
    let pkid = if qos > 0 {
        packet_id(&mut b, Kind::Publish)?
    } else {
        0
    };
    Ok(Publish {
        dup,
        qos,
        retain,
        topic,
        pkid,
        payload: b,
    })
}

fn decode_connect(mut b: Bytes) -> Result<Connect, DecodeError> {
    const KIND: Kind = Kind::Connect;
    let name = read_bytes(&mut b, KIND)?;
    if !b.has_remaining() {
        return Err(DecodeError::Truncated(KIND));
    }
    let level = b.get_u8();
    // Checked before the rest: other versions lay out the rest differently.
    if &name[..] != b"MQTT" || level != 4 {
        return Err(DecodeError::UnsupportedProtocol {
            name_is_mqtt: &name[..] == b"MQTT",
            level,
        });
    }
    if b.remaining() < 3 {
        return Err(DecodeError::Truncated(KIND));
    }
    let flags = b.get_u8();
    let keep_alive = b.get_u16();
    // MQTT-3.1.2-3.
    if flags & 1 != 0 {
        return Err(DecodeError::ConnectReservedFlag);
    }
    let clean_session = flags & 0b10 != 0;
    let has_will = flags & 0b100 != 0;
    let will_qos = (flags >> 3) & 0b11;
    let will_retain = flags & 0b10_0000 != 0;
    let has_password = flags & 0b100_0000 != 0;
    let has_user = flags & 0b1000_0000 != 0;
    // MQTT-3.1.2-11, -13 and -15.
    if !has_will && (will_qos != 0 || will_retain) {
        return Err(DecodeError::WillFlagsWithoutWill);
    }
    // MQTT-3.1.2-14.
    if will_qos == 3 {
        return Err(DecodeError::WillQos3);
    }
    // MQTT-3.1.2-22.
    if has_password && !has_user {
        return Err(DecodeError::PasswordWithoutUserName);
    }
    let client_id = read_string(&mut b, KIND, Field::ClientId)?;
    let will = if has_will {
        let topic = read_utf8(&mut b, KIND, Field::WillTopic)?;
        check_topic_name(&topic, Field::WillTopic)?;
        let payload = read_bytes(&mut b, KIND)?;
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
        })
    } else {
        None
    };
    // User name and password are read for well-formedness; devices authenticate with
    // their certificate (or not at all on the plain listener).
    let user_name = if has_user {
        Some(read_string(&mut b, KIND, Field::UserName)?)
    } else {
        None
    };
    if has_password {
        read_bytes(&mut b, KIND)?;
    }
    if b.has_remaining() {
        return Err(DecodeError::Trailing {
            kind: KIND,
            extra: b.remaining(),
        });
    }
    Ok(Connect {
        clean_session,
        keep_alive,
        client_id,
        will,
        user_name,
        has_password,
    })
}

/// A non-zero packet identifier (MQTT-2.3.1-1).
fn packet_id(b: &mut Bytes, kind: Kind) -> Result<u16, DecodeError> {
    if b.remaining() < 2 {
        return Err(DecodeError::Truncated(kind));
    }
    match b.get_u16() {
        0 => Err(DecodeError::ZeroPacketId(kind)),
        id => Ok(id),
    }
}

fn read_bytes(b: &mut Bytes, kind: Kind) -> Result<Bytes, DecodeError> {
    if b.remaining() < 2 {
        return Err(DecodeError::Truncated(kind));
    }
    let len = usize::from(b.get_u16());
    if b.remaining() < len {
        return Err(DecodeError::Truncated(kind));
    }
    Ok(b.split_to(len))
}

/// A UTF-8 string without U+0000 (MQTT-1.5.3-1 and -2), kept as its bytes.
fn read_utf8(b: &mut Bytes, kind: Kind, field: Field) -> Result<Bytes, DecodeError> {
    let raw = read_bytes(b, kind)?;
    let text = std::str::from_utf8(&raw).map_err(|_| DecodeError::Utf8(field))?;
    if text.contains('\0') {
        return Err(DecodeError::Nul(field));
    }
    Ok(raw)
}

fn read_string(b: &mut Bytes, kind: Kind, field: Field) -> Result<String, DecodeError> {
    let raw = read_utf8(b, kind, field)?;
    Ok(String::from_utf8_lossy(&raw).into_owned())
}

fn read_filter(b: &mut Bytes, kind: Kind) -> Result<String, DecodeError> {
    let filter = read_string(b, kind, Field::TopicFilter)?;
    topic::check_filter(&filter).map_err(|error| DecodeError::Topic {
        field: Field::TopicFilter,
        error,
    })?;
    Ok(filter)
}

fn check_topic_name(raw: &[u8], field: Field) -> Result<(), DecodeError> {
    let text = std::str::from_utf8(raw).map_err(|_| DecodeError::Utf8(field))?;
    topic::check_name(text).map_err(|error| DecodeError::Topic { field, error })
}
