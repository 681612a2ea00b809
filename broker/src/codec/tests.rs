//! The codec's rules, one packet at a time; `proptests` covers arbitrary input.
#![allow(clippy::unwrap_used)]

use bytes::{BufMut, BytesMut};

use super::encode::put_remaining_length;
use super::*;
use crate::topic::TopicError;

/// A frame: first byte, remaining length, body.
pub(super) fn frame(byte1: u8, body: &[u8]) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_u8(byte1);
    put_remaining_length(&mut b, body.len());
    b.put_slice(body);
    b.to_vec()
}

/// A length-prefixed string or binary field.
pub(super) fn field(s: &[u8]) -> Vec<u8> {
    let mut v = (s.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(s);
    v
}

/// A CONNECT of MQTT 3.1.1 with `flags`, keepalive 30 and `payload` after the header.
pub(super) fn connect(flags: u8, payload: &[&[u8]]) -> Vec<u8> {
    let mut body = field(b"MQTT");
    body.extend_from_slice(&[4, flags, 0, 30]);
    for p in payload {
        body.extend_from_slice(p);
    }
    frame(0x10, &body)
}

fn decode_all(bytes: &[u8]) -> Result<Option<Packet>, DecodeError> {
    decode(&mut BytesMut::from(bytes), 1 << 20)
}

#[test]
fn a_publish_round_trips_and_partial_frames_wait_for_more_bytes() {
    let mut out = BytesMut::new();
    put_publish(&mut out, true, 1, 7, b"mir/a/tlm", &[1, 2, 3]);
    let full = out.clone();
    let mut partial = BytesMut::from(&full[..full.len() - 1]);
    assert_eq!(decode(&mut partial, 1024), Ok(None));
    assert_eq!(partial.len(), full.len() - 1, "nothing consumed");
    match decode(&mut out, 1024) {
        Ok(Some(Packet::Publish(p))) => {
            assert_eq!((p.dup, p.qos, p.pkid, p.retain), (true, 1, 7, false));
            assert_eq!(&p.topic[..], b"mir/a/tlm");
            assert_eq!(&p.payload[..], &[1, 2, 3]);
        }
        other => panic!("{other:?}"),
    }
    assert!(out.is_empty());
}

#[test]
fn large_remaining_lengths_are_refused_from_the_header_without_reserving_them() {
    let mut big = BytesMut::new();
    put_publish(&mut big, false, 0, 0, b"t", &vec![0u8; 300]);
    assert_eq!(
        decode(&mut BytesMut::from(&big[..4]), 100),
        Err(DecodeError::TooLarge {
            size: 2 + 1 + 300,
            max: 100,
            publish: true
        })
    );
    // A header announcing 2 MB waits for its bytes and reserves nothing for them.
    let mut header = BytesMut::from(&[0x30u8, 0x80, 0x80, 0x80, 0x01][..]);
    let before = header.capacity();
    assert_eq!(decode(&mut header, 4 << 20), Ok(None));
    assert_eq!(header.capacity(), before);
}

#[test]
fn a_connect_is_decoded_with_its_will_and_user_name() {
    let bytes = connect(
        0b1100_1110,
        &[
            &field(b"dev"),
            &field(b"mir/dev/hb"),
            &field(&[9, 9]),
            &field(b"user"),
            &field(b"secret"),
        ],
    );
    match decode_all(&bytes) {
        Ok(Some(Packet::Connect(c))) => {
            assert!(c.clean_session);
            assert_eq!(c.keep_alive, 30);
            assert_eq!(c.client_id, "dev");
            let will = c.will.expect("will");
            assert_eq!((will.qos, will.retain), (1, false));
            assert_eq!(&will.topic[..], b"mir/dev/hb");
            assert_eq!(&will.payload[..], &[9, 9]);
            assert_eq!(c.user_name.as_deref(), Some("user"));
            assert!(c.has_password);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_packet_mqtt_3_1_1_says_to_reject_is_a_typed_error() {
    use DecodeError as E;
    let id = field(b"dev");
    let sub = |flags: u8, rest: &[u8]| frame(0x80 | flags, &[&[0, 1][..], rest].concat());
    let publish =
        |byte1: u8, topic: &[u8], rest: &[u8]| frame(byte1, &[&field(topic)[..], rest].concat());
    let cases: Vec<(&str, Vec<u8>, DecodeError)> = vec![
        ("reserved type 0", vec![0x00, 0], E::ReservedType(0)),
        ("reserved type 15", vec![0xf0, 0], E::ReservedType(15)),
        (
            "PUBACK with flags",
            vec![0x41, 2, 0, 1],
            E::ReservedFlags {
                kind: Kind::PubAck,
                flags: 1,
            },
        ),
        (
            "PINGREQ with flags",
            vec![0xc8, 0],
            E::ReservedFlags {
                kind: Kind::PingReq,
                flags: 8,
            },
        ),
        (
            "DISCONNECT with flags",
            vec![0xe2, 0],
            E::ReservedFlags {
                kind: Kind::Disconnect,
                flags: 2,
            },
        ),
        (
            "CONNECT with flags",
            vec![0x11, 0],
            E::ReservedFlags {
                kind: Kind::Connect,
                flags: 1,
            },
        ),
        (
            "PUBREL without 0b0010",
            vec![0x60, 2, 0, 1],
            E::ReservedFlags {
                kind: Kind::PubRel,
                flags: 0,
            },
        ),
        (
            "SUBSCRIBE without 0b0010",
            sub(0, &[&field(b"mir/dev/#")[..], &[1]].concat()),
            E::ReservedFlags {
                kind: Kind::Subscribe,
                flags: 0,
            },
        ),
        (
            "UNSUBSCRIBE with 0b0011",
            frame(0xa3, &[&[0, 1][..], &field(b"a")].concat()),
            E::ReservedFlags {
                kind: Kind::Unsubscribe,
                flags: 3,
            },
        ),
        (
            "remaining length of 5 bytes",
            vec![0x30, 0xff, 0xff, 0xff, 0xff, 0x01],
            E::RemainingLength,
        ),
        (
            "PUBACK of 3 bytes",
            vec![0x40, 3, 0, 1, 0],
            E::Length {
                kind: Kind::PubAck,
                len: 3,
                expected: 2,
            },
        ),
        (
            "PINGREQ with a body",
            vec![0xc0, 1, 0],
            E::Length {
                kind: Kind::PingReq,
                len: 1,
                expected: 0,
            },
        ),
        (
            "DISCONNECT with a body",
            vec![0xe0, 1, 0],
            E::Length {
                kind: Kind::Disconnect,
                len: 1,
                expected: 0,
            },
        ),
        (
            "PUBACK of packet 0",
            vec![0x40, 2, 0, 0],
            E::ZeroPacketId(Kind::PubAck),
        ),
        (
            "QoS 3 PUBLISH",
            publish(0x36, b"mir/dev/tlm", &[0, 1]),
            E::PublishQos3,
        ),
        (
            "DUP on QoS 0",
            publish(0x38, b"mir/dev/tlm", &[]),
            E::DupOnQos0,
        ),
        (
            "QoS 1 PUBLISH of packet 0",
            publish(0x32, b"mir/dev/tlm", &[0, 0]),
            E::ZeroPacketId(Kind::Publish),
        ),
        (
            "empty topic",
            publish(0x30, b"", b"x"),
            E::Topic {
                field: Field::TopicName,
                error: TopicError::Empty,
            },
        ),
        (
            "'+' in a topic name",
            publish(0x30, b"mir/+/tlm", b"x"),
            E::Topic {
                field: Field::TopicName,
                error: TopicError::Wildcard,
            },
        ),
        (
            "'#' in a topic name",
            publish(0x30, b"#", b"x"),
            E::Topic {
                field: Field::TopicName,
                error: TopicError::Wildcard,
            },
        ),
        (
            "topic not UTF-8",
            publish(0x30, &[b'a', 0xff], b"x"),
            E::Utf8(Field::TopicName),
        ),
        (
            "topic with U+0000",
            publish(0x30, b"mir/\0", b"x"),
            E::Nul(Field::TopicName),
        ),
        (
            "topic surrogate",
            publish(0x30, &[0xed, 0xa0, 0x80], b""),
            E::Utf8(Field::TopicName),
        ),
        (
            "topic longer than the packet",
            vec![0x30, 3, 0, 9, b'a'],
            E::Truncated(Kind::Publish),
        ),
        (
            "SUBSCRIBE without filters",
            sub(2, &[]),
            E::NoTopicFilter(Kind::Subscribe),
        ),
        (
            "SUBSCRIBE of packet 0",
            frame(0x82, &[&[0, 0][..], &field(b"a"), &[0]].concat()),
            E::ZeroPacketId(Kind::Subscribe),
        ),
        (
            "SUBSCRIBE with QoS 3",
            sub(2, &[&field(b"mir/dev/#")[..], &[3]].concat()),
            E::RequestedQos(3),
        ),
        (
            "SUBSCRIBE with reserved QoS bits",
            sub(2, &[&field(b"mir/dev/#")[..], &[0x81]].concat()),
            E::RequestedQos(0x81),
        ),
        (
            "SUBSCRIBE filter without QoS",
            sub(2, &field(b"mir/dev/#")),
            E::Truncated(Kind::Subscribe),
        ),
        (
            "SUBSCRIBE empty filter",
            sub(2, &[&field(b"")[..], &[0]].concat()),
            E::Topic {
                field: Field::TopicFilter,
                error: TopicError::Empty,
            },
        ),
        (
            "SUBSCRIBE filter '#' not last",
            sub(2, &[&field(b"mir/#/x")[..], &[0]].concat()),
            E::Topic {
                field: Field::TopicFilter,
                error: TopicError::MisplacedWildcard,
            },
        ),
        (
            "SUBSCRIBE filter with U+0000",
            sub(2, &[&field(b"a\0")[..], &[0]].concat()),
            E::Nul(Field::TopicFilter),
        ),
        (
            "SUBSCRIBE filter not UTF-8",
            sub(2, &[&field(&[0xc3])[..], &[0]].concat()),
            E::Utf8(Field::TopicFilter),
        ),
        (
            "UNSUBSCRIBE without filters",
            frame(0xa2, &[0, 1]),
            E::NoTopicFilter(Kind::Unsubscribe),
        ),
        (
            "UNSUBSCRIBE empty filter",
            frame(0xa2, &[&[0, 1][..], &field(b"")].concat()),
            E::Topic {
                field: Field::TopicFilter,
                error: TopicError::Empty,
            },
        ),
        (
            "CONNECT reserved flag",
            connect(0b11, &[&id]),
            E::ConnectReservedFlag,
        ),
        (
            "will QoS without will",
            connect(0b1010, &[&id]),
            E::WillFlagsWithoutWill,
        ),
        (
            "will retain without will",
            connect(0b10_0010, &[&id]),
            E::WillFlagsWithoutWill,
        ),
        (
            "will QoS 3",
            connect(0b1_1110, &[&id, &field(b"t"), &field(b"")]),
            E::WillQos3,
        ),
        (
            "password without user name",
            connect(0b100_0010, &[&id, &field(b"pw")]),
            E::PasswordWithoutUserName,
        ),
        (
            "client id not UTF-8",
            connect(0b10, &[&field(&[0xff])]),
            E::Utf8(Field::ClientId),
        ),
        (
            "client id with U+0000",
            connect(0b10, &[&field(b"d\0")]),
            E::Nul(Field::ClientId),
        ),
        (
            "user name not UTF-8",
            connect(0b1000_0010, &[&id, &field(&[0xfe])]),
            E::Utf8(Field::UserName),
        ),
        (
            "will topic with a wildcard",
            connect(0b110, &[&id, &field(b"mir/+/hb"), &field(b"")]),
            E::Topic {
                field: Field::WillTopic,
                error: TopicError::Wildcard,
            },
        ),
        (
            "empty will topic",
            connect(0b110, &[&id, &field(b""), &field(b"")]),
            E::Topic {
                field: Field::WillTopic,
                error: TopicError::Empty,
            },
        ),
        (
            "bytes after the CONNECT payload",
            connect(0b10, &[&id, &[7]]),
            E::Trailing {
                kind: Kind::Connect,
                extra: 1,
            },
        ),
        (
            "CONNECT without its client id",
            connect(0b10, &[]),
            E::Truncated(Kind::Connect),
        ),
        (
            "protocol name longer than the packet",
            vec![0x10, 3, 0, 4, b'M'],
            E::Truncated(Kind::Connect),
        ),
        (
            "MQTT 3.1 (MQIsdp)",
            frame(0x10, &[&field(b"MQIsdp")[..], &[3, 2, 0, 30], &id].concat()),
            E::UnsupportedProtocol {
                name_is_mqtt: false,
                level: 3,
            },
        ),
        (
            "MQTT 5",
            frame(
                0x10,
                &[&field(b"MQTT")[..], &[5, 2, 0, 30, 0], &id].concat(),
            ),
            E::UnsupportedProtocol {
                name_is_mqtt: true,
                level: 5,
            },
        ),
        (
            "CONNACK with a session on a refusal",
            vec![0x20, 2, 1, 5],
            E::ConnAck { flags: 1, code: 5 },
        ),
        (
            "SUBACK with code 3",
            vec![0x90, 3, 0, 1, 3],
            E::SubAckCode(3),
        ),
    ];
    for (what, bytes, want) in cases {
        assert_eq!(decode_all(&bytes), Err(want), "{what}: {bytes:02x?}");
        // Refused however the bytes arrive.
        let mut buf = BytesMut::new();
        let mut got = Ok(None);
        for b in &bytes {
            buf.put_u8(*b);
            got = decode(&mut buf, 1 << 20);
            if got != Ok(None) {
                break;
            }
        }
        assert_eq!(got, Err(want), "{what}, byte by byte");
        // Every refusal names its cause.
        assert!(!want.to_string().is_empty());
    }
}

#[test]
fn well_formed_packets_of_every_client_kind_are_accepted() {
    let ok: Vec<(&str, Vec<u8>)> = vec![
        ("CONNECT", connect(0b10, &[&field(b"dev")])),
        (
            "CONNECT with an empty client id",
            connect(0b10, &[&field(b"")]),
        ),
        (
            "QoS 1 PUBLISH with retain",
            frame(0x33, &[&field(b"mir/dev/tlm")[..], &[0, 1, 42]].concat()),
        ),
        (
            "QoS 1 PUBLISH with DUP",
            frame(0x3a, &[&field(b"mir/dev/tlm")[..], &[0, 1]].concat()),
        ),
        ("PUBACK", vec![0x40, 2, 0, 1]),
        ("PUBREC", vec![0x50, 2, 0, 1]),
        ("PUBREL", vec![0x62, 2, 0, 1]),
        ("PUBCOMP", vec![0x70, 2, 0, 1]),
        (
            "SUBSCRIBE",
            frame(
                0x82,
                &[&[0, 1][..], &field(b"mir/dev/#"), &[1], &field(b"+"), &[2]].concat(),
            ),
        ),
        (
            "UNSUBSCRIBE",
            frame(0xa2, &[&[0, 1][..], &field(b"mir/dev/#")].concat()),
        ),
        ("PINGREQ", vec![0xc0, 0]),
        ("DISCONNECT", vec![0xe0, 0]),
    ];
    for (what, bytes) in ok {
        let mut buf = BytesMut::from(&bytes[..]);
        let kind = what
            .split(' ')
            .find(|w| w.chars().all(|c| c.is_ascii_uppercase()) && w.len() > 3);
        match decode(&mut buf, 1 << 20) {
            Ok(Some(p)) => assert_eq!(Some(p.kind().name()), kind, "{what}"),
            other => panic!("{what}: {other:?}"),
        }
        assert!(buf.is_empty(), "{what}: the whole frame is consumed");
    }
}

#[test]
fn a_connack_never_claims_a_session_on_a_refusal() {
    let mut out = BytesMut::new();
    put_connack(&mut out, true, ConnectCode::NotAuthorized);
    assert_eq!(&out[..], &[0x20, 2, 0, 5]);
}
