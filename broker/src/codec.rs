//! A small MQTT 3.1.1 codec: only what a server reads and writes.
//!
//! Decoding is zero-copy: a frame is split off the read buffer as [`Bytes`] and the
//! topic and payload of a PUBLISH are slices of it.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    /// The remaining length announced by the fixed header exceeds the limit.
    #[error("packet of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        size: usize,
        max: usize,
        publish: bool,
    },
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
}

/// Last will of a CONNECT.
#[derive(Debug, Clone)]
pub(crate) struct Will {
    pub topic: Bytes,
    pub payload: Bytes,
    pub qos: u8,
}

#[derive(Debug, Clone)]
pub(crate) struct Connect {
    pub protocol_name: Bytes,
    pub level: u8,
    pub clean_session: bool,
    pub keep_alive: u16,
    pub client_id: String,
    pub will: Option<Will>,
}

#[derive(Debug, Clone)]
pub(crate) struct Publish {
    pub qos: u8,
    /// UTF-8, checked while decoding.
    pub topic: Bytes,
    pub pkid: u16,
    pub payload: Bytes,
}

#[derive(Debug, Clone)]
pub(crate) enum Packet {
    Connect(Connect),
    Publish(Publish),
    PubAck(u16),
    /// PUBREC, PUBREL or PUBCOMP: QoS 2, which AWS IoT does not have.
    Qos2Flow,
    Subscribe {
        pkid: u16,
        filters: Vec<(String, u8)>,
    },
    Unsubscribe {
        pkid: u16,
        filters: Vec<String>,
    },
    PingReq,
    Disconnect,
    /// A packet only a server sends (CONNACK, SUBACK, ...): a protocol violation.
    ServerOnly(u8),
}

/// Decodes one packet from `buf` if a complete frame is there.
///
/// `max_remaining` bounds the remaining length of any packet; the frame is refused as
/// soon as its fixed header is read, before its body arrives.
pub(crate) fn decode(
    buf: &mut BytesMut,
    max_remaining: usize,
) -> Result<Option<Packet>, DecodeError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let byte1 = buf[0];
    let mut remaining: usize = 0;
    let mut shift = 0;
    let mut header_len = 1;
    loop {
        let Some(&b) = buf.get(header_len) else {
            return Ok(None);
        };
        header_len += 1;
        remaining |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 21 {
            return Err(DecodeError::Malformed(
                "remaining length longer than 4 bytes",
            ));
        }
    }
    let kind = byte1 >> 4;
    if remaining > max_remaining {
        return Err(DecodeError::TooLarge {
            size: remaining,
            max: max_remaining,
            publish: kind == 3,
        });
    }
    let frame_len = header_len + remaining;
    if buf.len() < frame_len {
        buf.reserve(frame_len - buf.len());
        return Ok(None);
    }
    let mut frame = buf.split_to(frame_len).freeze();
    frame.advance(header_len);
    let flags = byte1 & 0x0f;
    decode_body(kind, flags, frame).map(Some)
}

fn decode_body(kind: u8, flags: u8, mut b: Bytes) -> Result<Packet, DecodeError> {
    Ok(match kind {
        1 => Packet::Connect(decode_connect(b)?),
        3 => {
            let qos = (flags >> 1) & 0b11;
            if qos == 3 {
                return Err(DecodeError::Malformed("publish with qos 3"));
            }
            let topic = read_bytes(&mut b)?;
            if std::str::from_utf8(&topic).is_err() {
                return Err(DecodeError::Malformed("topic is not UTF-8"));
            }
            let pkid = if qos > 0 { read_u16(&mut b)? } else { 0 };
            if qos > 0 && pkid == 0 {
                return Err(DecodeError::Malformed("packet id 0"));
            }
            Packet::Publish(Publish {
                qos,
                topic,
                pkid,
                payload: b,
            })
        }
        4 => Packet::PubAck(read_u16(&mut b)?),
        5..=7 => {
            read_u16(&mut b)?;
            Packet::Qos2Flow
        }
        8 => {
            if flags != 0b0010 {
                return Err(DecodeError::Malformed("subscribe flags"));
            }
            let pkid = read_u16(&mut b)?;
            let mut filters = Vec::new();
            while b.has_remaining() {
                let f = read_string(&mut b)?;
                if !b.has_remaining() {
                    return Err(DecodeError::Malformed("subscribe filter without qos"));
                }
                let qos = b.get_u8();
                if qos & 0b1111_1100 != 0 || qos == 3 {
                    return Err(DecodeError::Malformed("subscribe qos"));
                }
                filters.push((f, qos));
            }
            if filters.is_empty() {
                return Err(DecodeError::Malformed("subscribe without filter"));
            }
            Packet::Subscribe { pkid, filters }
        }
        10 => {
            if flags != 0b0010 {
                return Err(DecodeError::Malformed("unsubscribe flags"));
            }
            let pkid = read_u16(&mut b)?;
            let mut filters = Vec::new();
            while b.has_remaining() {
                filters.push(read_string(&mut b)?);
            }
            if filters.is_empty() {
                return Err(DecodeError::Malformed("unsubscribe without filter"));
            }
            Packet::Unsubscribe { pkid, filters }
        }
        12 => Packet::PingReq,
        14 => Packet::Disconnect,
        2 | 9 | 11 | 13 => Packet::ServerOnly(kind),
        _ => return Err(DecodeError::Malformed("reserved packet type")),
    })
}

fn decode_connect(mut b: Bytes) -> Result<Connect, DecodeError> {
    let protocol_name = read_bytes(&mut b)?;
    if b.remaining() < 4 {
        return Err(DecodeError::Malformed("short connect"));
    }
    let level = b.get_u8();
    let flags = b.get_u8();
    let keep_alive = b.get_u16();
    if flags & 1 != 0 {
        return Err(DecodeError::Malformed("connect reserved flag"));
    }
    let clean_session = flags & 0b10 != 0;
    let has_will = flags & 0b100 != 0;
    let will_qos = (flags >> 3) & 0b11;
    let has_password = flags & 0b0100_0000 != 0;
    let has_user = flags & 0b1000_0000 != 0;
    let client_id = read_string(&mut b)?;
    let will = if has_will {
        if will_qos == 3 {
            return Err(DecodeError::Malformed("will qos 3"));
        }
        let topic = read_bytes(&mut b)?;
        if std::str::from_utf8(&topic).is_err() {
            return Err(DecodeError::Malformed("will topic is not UTF-8"));
        }
        let payload = read_bytes(&mut b)?;
        Some(Will {
            topic,
            payload,
            qos: will_qos,
        })
    } else {
        None
    };
    // Username and password are read for well-formedness and ignored: devices
    // authenticate with their certificate (or not at all on the plain listener).
    if has_user {
        read_bytes(&mut b)?;
    }
    if has_password {
        read_bytes(&mut b)?;
    }
    Ok(Connect {
        protocol_name,
        level,
        clean_session,
        keep_alive,
        client_id,
        will,
    })
}

fn read_u16(b: &mut Bytes) -> Result<u16, DecodeError> {
    if b.remaining() < 2 {
        return Err(DecodeError::Malformed("missing u16"));
    }
    Ok(b.get_u16())
}

fn read_bytes(b: &mut Bytes) -> Result<Bytes, DecodeError> {
    let len = usize::from(read_u16(b)?);
    if b.remaining() < len {
        return Err(DecodeError::Malformed("string longer than the packet"));
    }
    Ok(b.split_to(len))
}

fn read_string(b: &mut Bytes) -> Result<String, DecodeError> {
    let raw = read_bytes(b)?;
    String::from_utf8(raw.to_vec()).map_err(|_| DecodeError::Malformed("string is not UTF-8"))
}

fn put_remaining_length(buf: &mut BytesMut, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if len == 0 {
            break;
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
    NotAuthorized = 5,
}

pub(crate) fn put_connack(buf: &mut BytesMut, session_present: bool, code: ConnectCode) {
    buf.put_slice(&[0x20, 2, u8::from(session_present), code as u8]);
}

/// Writes a PUBLISH (`qos` 0 or 1; `pkid` ignored for 0).
pub(crate) fn put_publish(
    buf: &mut BytesMut,
    dup: bool,
    qos: u8,
    pkid: u16,
    topic: &[u8],
    payload: &[u8],
) {
    let qos = qos.min(1);
    let len = 2 + topic.len() + if qos > 0 { 2 } else { 0 } + payload.len();
    buf.reserve(len + 5);
    buf.put_u8(0x30 | (u8::from(dup) << 3) | (qos << 1));
    put_remaining_length(buf, len);
    // Topics are at most u16::MAX long: they come from decoded packets or checked input.
    buf.put_u16(topic.len().min(usize::from(u16::MAX)) as u16);
    buf.put_slice(topic);
    if qos > 0 {
        buf.put_u16(pkid);
    }
    buf.put_slice(payload);
}

pub(crate) fn put_puback(buf: &mut BytesMut, pkid: u16) {
    let [hi, lo] = pkid.to_be_bytes();
    buf.put_slice(&[0x40, 2, hi, lo]);
}

pub(crate) fn put_suback(buf: &mut BytesMut, pkid: u16, codes: &[u8]) {
    buf.put_u8(0x90);
    put_remaining_length(buf, 2 + codes.len());
    buf.put_u16(pkid);
    buf.put_slice(codes);
}

pub(crate) fn put_unsuback(buf: &mut BytesMut, pkid: u16) {
    let [hi, lo] = pkid.to_be_bytes();
    buf.put_slice(&[0xb0, 2, hi, lo]);
}

pub(crate) fn put_pingresp(buf: &mut BytesMut) {
    buf.put_slice(&[0xd0, 0]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(bytes: &[u8]) -> BytesMut {
        BytesMut::from(bytes)
    }

    #[test]
    fn a_publish_round_trips_and_partial_frames_wait_for_more_bytes() {
        let mut out = BytesMut::new();
        put_publish(&mut out, true, 1, 7, b"mir/a/tlm", &[1, 2, 3]);
        let full = out.clone();
        let mut partial = frame(&full[..full.len() - 1]);
        assert!(matches!(decode(&mut partial, 1024), Ok(None)));
        match decode(&mut out, 1024) {
            Ok(Some(Packet::Publish(p))) => {
                assert_eq!((p.qos, p.pkid), (1, 7));
                assert_eq!(&p.topic[..], b"mir/a/tlm");
                assert_eq!(&p.payload[..], &[1, 2, 3]);
            }
            other => panic!("{other:?}"),
        }
        assert!(out.is_empty());
    }

    #[test]
    fn large_remaining_lengths_are_refused_from_the_header() {
        let mut big = BytesMut::new();
        put_publish(&mut big, false, 0, 0, b"t", &vec![0u8; 300]);
        assert!(matches!(
            decode(&mut frame(&big[..4]), 100),
            Err(DecodeError::TooLarge { publish: true, .. })
        ));
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x1234_5678_u32;
        for _ in 0..5000 {
            let len = (seed % 40) as usize;
            let mut v = Vec::with_capacity(len);
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                v.push(seed as u8);
            }
            let mut b = frame(&v);
            while let Ok(Some(_)) = decode(&mut b, 1 << 20) {}
        }
        // A CONNECT whose protocol name claims 4 bytes of the 1 left.
        let mut truncated = frame(&[0x10, 3, 0, 4, b'M']);
        assert!(matches!(
            decode(&mut truncated, 1024),
            Err(DecodeError::Malformed("string longer than the packet"))
        ));
    }

    #[test]
    fn connect_is_decoded_with_will() {
        let mut b = BytesMut::new();
        let body: Vec<u8> = [
            &[0, 4][..],
            b"MQTT",
            &[4, 0b0000_1110, 0, 30],
            &[0, 3],
            b"dev",
            &[0, 9],
            b"mir/d/hb!",
            &[0, 2, 9, 9],
        ]
        .concat();
        b.put_u8(0x10);
        put_remaining_length(&mut b, body.len());
        b.put_slice(&body);
        match decode(&mut b, 1024) {
            Ok(Some(Packet::Connect(c))) => {
                assert_eq!(c.level, 4);
                assert!(c.clean_session);
                assert_eq!(c.keep_alive, 30);
                assert_eq!(c.client_id, "dev");
                let will = c.will.expect("will");
                assert_eq!(will.qos, 1);
                assert_eq!(&will.payload[..], &[9, 9]);
            }
            other => panic!("{other:?}"),
        }
    }
}
