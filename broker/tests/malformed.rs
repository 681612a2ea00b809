//! Malformed packets of every kind, as raw bytes over TCP: each closes its connection,
//! is counted, and the broker keeps serving the others.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use mir_broker::{DisconnectReason, QoS, Rejection};
use rumqttc::QoS as Q;
use support::*;

/// Before CONNECT: packets that MQTT 3.1.1 says are malformed.
fn before_connect() -> Vec<(&'static str, Vec<u8>)> {
    let id = field(b"dev-x");
    vec![
        ("reserved type 0", vec![0x00, 0]),
        ("reserved type 15", vec![0xf0, 0]),
        ("CONNECT with fixed-header flags", {
            let mut p = connect_packet(0b10, &[&id]);
            p[0] = 0x12;
            p
        }),
        (
            "remaining length of 5 bytes",
            vec![0x10, 0xff, 0xff, 0xff, 0xff, 0x01],
        ),
        ("CONNECT reserved flag", connect_packet(0b11, &[&id])),
        ("will QoS without will", connect_packet(0b1010, &[&id])),
        (
            "will retain without will",
            connect_packet(0b10_0010, &[&id]),
        ),
        (
            "will QoS 3",
            connect_packet(0b1_1110, &[&id, &field(b"mir/dev-x/hb"), &field(b"")]),
        ),
        (
            "will topic with a wildcard",
            connect_packet(0b110, &[&id, &field(b"mir/#"), &field(b"")]),
        ),
        (
            "password without user name",
            connect_packet(0b100_0010, &[&id, &field(b"pw")]),
        ),
        (
            "client id not UTF-8",
            connect_packet(0b10, &[&field(&[0xc3, 0x28])]),
        ),
        (
            "client id with U+0000",
            connect_packet(0b10, &[&field(b"dev\0x")]),
        ),
        (
            "bytes after the CONNECT payload",
            connect_packet(0b10, &[&id, &[1, 2]]),
        ),
        ("CONNECT cut short", frame(0x10, &[0, 4, b'M', b'Q'])),
    ]
}

/// After an accepted CONNECT: malformed packets of every client kind.
fn after_connect(me: &str) -> Vec<(&'static str, Vec<u8>)> {
    let own = format!("mir/{me}/tlm");
    let own = own.as_bytes();
    let publish =
        |byte1: u8, topic: &[u8], rest: &[u8]| frame(byte1, &[&field(topic)[..], rest].concat());
    let subscribe = |byte1: u8, rest: &[u8]| frame(byte1, &[&[0, 1][..], rest].concat());
    vec![
        ("PUBACK with flags", vec![0x42, 2, 0, 1]),
        ("PUBACK of 3 bytes", vec![0x40, 3, 0, 1, 0]),
        ("PUBACK of packet 0", vec![0x40, 2, 0, 0]),
        ("PINGREQ with flags", vec![0xc1, 0]),
        ("PINGREQ with a body", vec![0xc0, 1, 0]),
        ("DISCONNECT with flags", vec![0xe4, 0]),
        ("PUBREL without 0b0010", vec![0x60, 2, 0, 1]),
        ("QoS 3 PUBLISH", publish(0x36, own, &[0, 1])),
        ("DUP on QoS 0", publish(0x38, own, b"x")),
        ("QoS 1 PUBLISH of packet 0", publish(0x32, own, &[0, 0])),
        ("empty topic", publish(0x30, b"", b"x")),
        ("wildcard topic", publish(0x30, b"mir/+/tlm", b"x")),
        ("topic not UTF-8", publish(0x30, &[0xff, 0xfe], b"x")),
        ("topic with U+0000", publish(0x30, b"mir/\0/tlm", b"x")),
        ("topic longer than the packet", vec![0x30, 3, 0, 200, b'm']),
        (
            "SUBSCRIBE without 0b0010",
            subscribe(0x80, &[&field(b"mir/x/#")[..], &[1]].concat()),
        ),
        ("SUBSCRIBE without filters", subscribe(0x82, &[])),
        (
            "SUBSCRIBE with QoS 3",
            subscribe(0x82, &[&field(b"mir/x/#")[..], &[3]].concat()),
        ),
        (
            "SUBSCRIBE empty filter",
            subscribe(0x82, &[&field(b"")[..], &[0]].concat()),
        ),
        (
            "SUBSCRIBE filter with U+0000",
            subscribe(0x82, &[&field(b"mir/\0")[..], &[0]].concat()),
        ),
        (
            "SUBSCRIBE '#' not last",
            subscribe(0x82, &[&field(b"mir/#/x")[..], &[0]].concat()),
        ),
        (
            "UNSUBSCRIBE without 0b0010",
            subscribe(0xa0, &field(b"mir/x/#")),
        ),
        ("UNSUBSCRIBE without filters", subscribe(0xa2, &[])),
        (
            "remaining length of 5 bytes",
            vec![0x30, 0x80, 0x80, 0x80, 0x80, 0x01],
        ),
    ]
}

/// Well-formed packets the broker does not take after CONNECT.
fn forbidden(me: &str) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "second CONNECT",
            connect_packet(0b10, &[&field(me.as_bytes())]),
        ),
        (
            "QoS 2 PUBLISH",
            frame(
                0x34,
                &[&field(format!("mir/{me}/tlm").as_bytes())[..], &[0, 1]].concat(),
            ),
        ),
        ("PUBREC", vec![0x50, 2, 0, 1]),
        ("CONNACK, which only servers send", vec![0x20, 2, 0, 0]),
        ("PINGRESP, which only servers send", vec![0xd0, 0]),
    ]
}

/// A device still connects and gets its command.
async fn still_serving(b: &TestBroker, n: usize) {
    let id = format!("ok-{n}");
    let (mut d, _) = Device::connect(opts(&id, b.addr())).await;
    let topic = format!("mir/{id}/cmd/req");
    d.subscribe(&[(topic.as_str(), Q::AtLeastOnce)]).await;
    b.handle
        .publish(&topic, Bytes::from_static(b"c"), QoS::AtLeastOnce)
        .await
        .unwrap();
    assert_eq!(
        &d.next_publish(WAIT).await.expect("command").payload[..],
        b"c"
    );
    d.client.disconnect().await.unwrap();
}

#[tokio::test]
async fn malformed_packets_of_every_kind_close_their_connection_and_the_broker_serves_others() {
    let b = broker().start().await;
    let mut checks = 0;

    for (what, bytes) in before_connect() {
        let mut raw = RawClient::connect(b.addr()).await;
        raw.send(&bytes).await;
        assert!(raw.wait_closed(WAIT).await.is_some(), "{what}: still open");
        checks += 1;
        still_serving(&b, checks).await;
    }
    let pre = before_connect().len() as u64;
    assert_eq!(b.handle.metrics().rejections(Rejection::CodecError), pre);
    // None of them reached a hook.
    assert!(b.hooks.connects("dev-x").is_empty());

    let cases = after_connect("").len();
    for i in 0..cases {
        let me = format!("dev-{i}");
        let (what, bytes) = after_connect(&me).swap_remove(i);
        let mut raw = RawClient::connect(b.addr()).await;
        assert_eq!(raw.handshake(&me, 4, 30).await, Some((0, false)), "{what}");
        raw.send(&bytes).await;
        assert!(raw.wait_closed(WAIT).await.is_some(), "{what}: still open");
        b.hooks
            .wait_disconnect(&me, DisconnectReason::ProtocolError)
            .await;
        checks += 1;
        still_serving(&b, checks).await;
    }
    let m = b.handle.metrics();
    assert_eq!(m.rejections(Rejection::CodecError), pre + cases as u64);

    let forbidden_cases = forbidden("").len();
    for i in 0..forbidden_cases {
        let me = format!("dev-f{i}");
        let (what, bytes) = forbidden(&me).swap_remove(i);
        let mut raw = RawClient::connect(b.addr()).await;
        assert_eq!(raw.handshake(&me, 4, 30).await, Some((0, false)), "{what}");
        raw.send(&bytes).await;
        assert!(raw.wait_closed(WAIT).await.is_some(), "{what}: still open");
        b.hooks
            .wait_disconnect(&me, DisconnectReason::ProtocolError)
            .await;
    }
    // A first packet other than CONNECT.
    let mut raw = RawClient::connect(b.addr()).await;
    raw.send(&[0xc0, 0]).await;
    assert!(
        raw.wait_closed(WAIT).await.is_some(),
        "PINGREQ first: still open"
    );
    let m = b.handle.metrics();
    assert_eq!(
        m.rejections(Rejection::ProtocolError),
        forbidden_cases as u64 + 1
    );
    assert!(
        b.hooks.publishes().is_empty(),
        "no malformed message reached the hub"
    );
    still_serving(&b, checks + 1).await;
}

#[tokio::test]
async fn another_protocol_version_gets_connack_1_and_is_counted() {
    let b = broker().start().await;
    for (name, level) in [(&b"MQTT"[..], 5u8), (&b"MQIsdp"[..], 3)] {
        let mut body = field(name);
        body.extend_from_slice(&[level, 0b10, 0, 30]);
        body.extend(field(b"dev-1"));
        let mut raw = RawClient::connect(b.addr()).await;
        raw.send(&frame(0x10, &body)).await;
        assert_eq!(
            raw.read(4).await,
            Some(vec![0x20, 2, 0, 1]),
            "level {level}"
        );
        assert!(raw.wait_closed(WAIT).await.is_some());
    }
    assert_eq!(
        b.handle
            .metrics()
            .rejections(Rejection::UnsupportedProtocol),
        2
    );
}
