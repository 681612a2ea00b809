//! Property tests of the codec. Each property runs [`cases`] cases: 2,000 by default
//! (CI), `PROPTEST_CASES` otherwise, e.g. the longer run of the crate documentation:
//! `PROPTEST_CASES=1000000 cargo test --release -p mir-broker codec::proptests`.
#![allow(clippy::unwrap_used)]

use bytes::{BufMut, BytesMut};
use proptest::prelude::*;

use super::tests::{field, frame};
use super::*;

/// Cases per property.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        // Shrinking a failure is worth a while; the default bound is far below that.
        max_shrink_iters: 10_000,
        ..ProptestConfig::default()
    }
}

/// The limit on a packet's remaining length in these tests: small, so that the
/// too-large refusal is reached too.
const MAX: usize = 600;

/// A valid topic name: 1 to 5 levels of letters, digits, `$`, `-` and a few
/// multi-byte characters.
fn topic_name() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-z0-9$_é€-]{0,6}", 1..5)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("non-empty", |t| !t.is_empty())
}

/// A valid topic filter: levels of a topic name, `+`, and maybe a last `#`.
fn topic_filter() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop_oneof![Just("+".to_string()), "[a-z0-9$-]{0,5}"], 0..4),
        any::<bool>(),
    )
        .prop_map(|(mut levels, hash)| {
            if hash || levels.is_empty() {
                levels.push("#".to_string());
            }
            match levels.join("/") {
                f if f.is_empty() => "+".to_string(),
                f => f,
            }
        })
}

fn pkid() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

/// What the broker writes, with the packet decoding must give back.
fn server_packet() -> impl Strategy<Value = (Vec<u8>, Packet)> {
    let connack =
        (any::<bool>(), prop::sample::select(vec![0u8, 1, 2, 3, 5])).prop_map(|(present, code)| {
            let c = match code {
                0 => ConnectCode::Accepted,
                1 => ConnectCode::UnacceptableProtocol,
                2 => ConnectCode::IdentifierRejected,
                3 => ConnectCode::ServerUnavailable,
                _ => ConnectCode::NotAuthorized,
            };
            let mut b = BytesMut::new();
            put_connack(&mut b, present, c);
            let packet = Packet::ConnAck {
                session_present: present && code == 0,
                code,
            };
            (b.to_vec(), packet)
        });
    let publish = (
        any::<bool>(),
        0u8..=1,
        pkid(),
        topic_name(),
        prop::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(dup, qos, pkid, topic, payload)| {
            let mut b = BytesMut::new();
            put_publish(&mut b, dup, qos, pkid, topic.as_bytes(), &payload);
            let packet = Packet::Publish(Publish {
                dup: dup && qos == 1,
                qos,
                retain: false,
                topic: Bytes::from(topic.into_bytes()),
                pkid: if qos == 1 { pkid } else { 0 },
                payload: Bytes::from(payload),
            });
            (b.to_vec(), packet)
        });
    let puback = pkid().prop_map(|id| {
        let mut b = BytesMut::new();
        put_puback(&mut b, id);
        (b.to_vec(), Packet::PubAck(id))
    });
    let suback = (
        pkid(),
        prop::collection::vec(prop::sample::select(vec![0u8, 1, 0x80]), 1..60),
    )
        .prop_map(|(id, codes)| {
            let mut b = BytesMut::new();
            put_suback(&mut b, id, &codes);
            (b.to_vec(), Packet::SubAck { pkid: id, codes })
        });
    let unsuback = pkid().prop_map(|id| {
        let mut b = BytesMut::new();
        put_unsuback(&mut b, id);
        (b.to_vec(), Packet::UnsubAck(id))
    });
    let pingresp = Just(()).prop_map(|()| {
        let mut b = BytesMut::new();
        put_pingresp(&mut b);
        (b.to_vec(), Packet::PingResp)
    });
    prop_oneof![connack, publish, puback, suback, unsuback, pingresp]
}

/// What a well-behaved client sends, encoded here (the broker does not write these),
/// with the packet decoding must give back.
fn client_packet() -> impl Strategy<Value = (Vec<u8>, Packet)> {
    let connect = (
        "[a-zA-Z0-9:_-]{0,20}",
        any::<bool>(),
        any::<u16>(),
        prop::option::of((
            topic_name(),
            prop::collection::vec(any::<u8>(), 0..40),
            0u8..=2,
            any::<bool>(),
        )),
        prop::option::of((
            "[a-z]{0,8}",
            prop::option::of(prop::collection::vec(any::<u8>(), 0..8)),
        )),
    )
        .prop_map(|(id, clean, keep_alive, will, user)| {
            let mut flags = u8::from(clean) << 1;
            let mut payload = field(id.as_bytes());
            if let Some((topic, body, qos, retain)) = &will {
                flags |= 0b100 | (qos << 3) | (u8::from(*retain) << 5);
                payload.extend(field(topic.as_bytes()));
                payload.extend(field(body));
            }
            if let Some((name, password)) = &user {
                flags |= 0b1000_0000;
                payload.extend(field(name.as_bytes()));
                if let Some(pw) = password {
                    flags |= 0b100_0000;
                    payload.extend(field(pw));
                }
            }
            let mut body = field(b"MQTT");
            body.extend_from_slice(&[4, flags]);
            body.extend_from_slice(&keep_alive.to_be_bytes());
            body.extend(payload);
            let packet = Packet::Connect(Connect {
                clean_session: clean,
                keep_alive,
                client_id: id,
                will: will.map(|(topic, body, qos, retain)| Will {
                    topic: Bytes::from(topic.into_bytes()),
                    payload: Bytes::from(body),
                    qos,
                    retain,
                }),
                has_password: user.as_ref().is_some_and(|(_, pw)| pw.is_some()),
                user_name: user.map(|(name, _)| name),
            });
            (frame(0x10, &body), packet)
        });
    let publish = (
        any::<bool>(),
        0u8..=2,
        any::<bool>(),
        pkid(),
        topic_name(),
        prop::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(dup, qos, retain, pkid, topic, payload)| {
            let dup = dup && qos > 0;
            let mut body = field(topic.as_bytes());
            if qos > 0 {
                body.extend_from_slice(&pkid.to_be_bytes());
            }
            body.extend_from_slice(&payload);
            let byte1 = 0x30 | (u8::from(dup) << 3) | (qos << 1) | u8::from(retain);
            let packet = Packet::Publish(Publish {
                dup,
                qos,
                retain,
                topic: Bytes::from(topic.into_bytes()),
                pkid: if qos > 0 { pkid } else { 0 },
                payload: Bytes::from(payload),
            });
            (frame(byte1, &body), packet)
        });
    let acks =
        (prop::sample::select(vec![0x40u8, 0x50, 0x62, 0x70]), pkid()).prop_map(|(byte1, id)| {
            let packet = match byte1 {
                0x40 => Packet::PubAck(id),
                0x50 => Packet::PubRec(id),
                0x62 => Packet::PubRel(id),
                _ => Packet::PubComp(id),
            };
            (frame(byte1, &id.to_be_bytes()), packet)
        });
    let subscribe = (
        pkid(),
        prop::collection::vec((topic_filter(), 0u8..=2), 1..10),
    )
        .prop_map(|(id, filters)| {
            let mut body = id.to_be_bytes().to_vec();
            for (f, q) in &filters {
                body.extend(field(f.as_bytes()));
                body.push(*q);
            }
            (frame(0x82, &body), Packet::Subscribe { pkid: id, filters })
        });
    let unsubscribe =
        (pkid(), prop::collection::vec(topic_filter(), 1..10)).prop_map(|(id, filters)| {
            let mut body = id.to_be_bytes().to_vec();
            for f in &filters {
                body.extend(field(f.as_bytes()));
            }
            (
                frame(0xa2, &body),
                Packet::Unsubscribe { pkid: id, filters },
            )
        });
    let empty = prop::sample::select(vec![
        (vec![0xc0u8, 0], Packet::PingReq),
        (vec![0xe0, 0], Packet::Disconnect),
    ]);
    prop_oneof![connect, publish, acks, subscribe, unsubscribe, empty]
}

/// Bytes worth decoding: noise, and valid packets with a few bytes changed, cut or
/// added (which reach the checks deep inside a packet).
fn stream() -> impl Strategy<Value = Vec<u8>> {
    let mutated = (
        prop::collection::vec(prop_oneof![client_packet(), server_packet()], 1..4),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..4),
    )
        .prop_map(|(packets, edits)| {
            let mut bytes: Vec<u8> = packets.into_iter().flat_map(|(b, _)| b).collect();
            for (at, value, op) in edits {
                if bytes.is_empty() {
                    break;
                }
                let i = at.index(bytes.len());
                match op {
                    0 => bytes[i] = value,
                    1 => bytes.truncate(i),
                    _ => bytes.insert(i, value),
                }
            }
            bytes
        });
    prop_oneof![prop::collection::vec(any::<u8>(), 0..200), mutated]
}

/// Decodes `buf` until it needs more bytes or fails.
fn drain(buf: &mut BytesMut, out: &mut Vec<Packet>) -> Option<DecodeError> {
    loop {
        let before = buf.len();
        match decode(buf, MAX) {
            Ok(Some(p)) => {
                assert!(buf.len() < before, "a decoded packet consumes bytes");
                out.push(p);
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "waiting for more consumes nothing");
                return None;
            }
            Err(e) => return Some(e),
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic_and_decode_or_fail_with_a_typed_error(bytes in stream()) {
        let mut buf = BytesMut::from(&bytes[..]);
        let mut packets = Vec::new();
        match drain(&mut buf, &mut packets) {
            Some(e) => prop_assert!(!e.to_string().is_empty()),
            // What is left is the start of a frame not complete yet.
            None => prop_assert!(buf.len() <= MAX + 5),
        }
    }

    #[test]
    fn what_the_broker_writes_decodes_to_what_was_written((bytes, packet) in server_packet()) {
        let mut buf = BytesMut::from(&bytes[..]);
        prop_assert_eq!(decode(&mut buf, 1 << 20), Ok(Some(packet)));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn what_a_client_may_send_decodes_to_what_was_encoded((bytes, packet) in client_packet()) {
        let mut buf = BytesMut::from(&bytes[..]);
        prop_assert_eq!(decode(&mut buf, 1 << 20), Ok(Some(packet)));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn a_stream_split_anywhere_decodes_like_the_whole(
        bytes in stream(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut whole = BytesMut::from(&bytes[..]);
        let mut expected = Vec::new();
        let expected_error = drain(&mut whole, &mut expected);

        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        points.push(bytes.len());
        points.sort_unstable();
        let mut streamed = BytesMut::new();
        let mut got = Vec::new();
        let mut got_error = None;
        let mut from = 0;
        for to in points {
            streamed.put_slice(&bytes[from..to]);
            from = to;
            got_error = drain(&mut streamed, &mut got);
            if got_error.is_some() {
                break;
            }
        }
        prop_assert_eq!(got, expected);
        prop_assert_eq!(got_error, expected_error);
        if expected_error.is_none() {
            prop_assert_eq!(&streamed[..], &whole[..]);
        }
    }
}
