//! Encoding of what the broker writes.

use bytes::{BufMut, BytesMut};

use super::ConnectCode;

pub(super) fn put_remaining_length(buf: &mut BytesMut, mut len: usize) {
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

pub(crate) fn put_connack(buf: &mut BytesMut, session_present: bool, code: ConnectCode) {
    // MQTT-3.2.2-4: no session present on a refusal.
    let present = session_present && code == ConnectCode::Accepted;
    buf.put_slice(&[0x20, 2, u8::from(present), code as u8]);
}

/// Writes a PUBLISH (`qos` 0 or 1; `pkid` ignored and DUP cleared for 0).
pub(crate) fn put_publish(
    buf: &mut BytesMut,
    dup: bool,
    qos: u8,
    pkid: u16,
    topic: &[u8],
    payload: &[u8],
) {
    let qos = qos.min(1);
    let dup = dup && qos > 0;
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
