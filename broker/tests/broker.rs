//! The broker over plain TCP: routing, policy, sessions, limits, lifecycle.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use mir_broker::{BrokerError, DisconnectReason, QoS, TopicError};
use rumqttc::{
    ConnectReturnCode, ConnectionError, LastWill, Packet, QoS as Q, SubscribeReasonCode,
};
use support::*;
use tokio::sync::Semaphore;

#[tokio::test]
async fn a_device_receives_what_the_hub_publishes_on_its_topics() {
    let b = broker().start().await;
    let (mut d, present) = Device::connect(opts("dev-1", b.addr())).await;
    assert!(!present);
    b.hooks.wait_connects("dev-1", 1).await;
    let codes = d.subscribe(&[("mir/dev-1/cmd/req", Q::AtLeastOnce)]).await;
    assert_eq!(codes, vec![SubscribeReasonCode::Success(Q::AtLeastOnce)]);
    assert!(b.handle.is_connected("dev-1"));
    assert_eq!(b.handle.connected_clients(), vec!["dev-1".to_string()]);

    let n = b
        .handle
        .publish(
            "mir/dev-1/cmd/req",
            Bytes::from_static(b"one"),
            QoS::AtLeastOnce,
        )
        .await;
    assert_eq!(n.unwrap(), 1);
    let p = d.next_publish(WAIT).await.expect("qos1 delivery");
    assert_eq!(
        (p.topic.as_str(), &p.payload[..], p.qos),
        ("mir/dev-1/cmd/req", &b"one"[..], Q::AtLeastOnce)
    );

    let n = b
        .handle
        .publish(
            "mir/dev-1/cmd/req",
            Bytes::from_static(b"two"),
            QoS::AtMostOnce,
        )
        .await;
    assert_eq!(n.unwrap(), 1);
    let p = d.next_publish(WAIT).await.expect("qos0 delivery");
    assert_eq!((&p.payload[..], p.qos), (&b"two"[..], Q::AtMostOnce));

    // Nobody subscribed to these.
    let n = b
        .handle
        .publish("mir/dev-1/cfg/desired", Bytes::new(), QoS::AtLeastOnce)
        .await;
    assert_eq!(n.unwrap(), 0);
    let n = b
        .handle
        .publish("mir/other/cmd/req", Bytes::new(), QoS::AtLeastOnce)
        .await;
    assert_eq!(n.unwrap(), 0);
    let refused = b
        .handle
        .publish("mir/+/cmd/req", Bytes::new(), QoS::AtMostOnce)
        .await;
    assert!(
        matches!(
            &refused,
            Err(BrokerError::InvalidTopic { topic, why: TopicError::Wildcard })
                if topic == "mir/+/cmd/req"
        ),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_qos1_publish_is_acknowledged_only_after_the_hook_returned() {
    let gate = Arc::new(Semaphore::new(0));
    let b = broker().publish_gate(gate.clone()).start().await;
    let (mut d, _) = Device::connect(opts("dev-1", b.addr())).await;
    d.client
        .publish("mir/dev-1/tlm", Q::AtLeastOnce, false, b"t".to_vec())
        .await
        .unwrap();
    b.hooks
        .wait_until("the hook called", |_| b.hooks.publish_count() == 1)
        .await;
    // The hook is blocked: no PUBACK may arrive.
    match d.next(QUIET).await {
        None => {}
        Some(other) => panic!("nothing expected while the hook runs, got {other:?}"),
    }
    gate.add_permits(1);
    d.expect_packet("PUBACK", |p| matches!(p, Packet::PubAck(_)))
        .await;
    let publishes = b.hooks.publishes();
    assert_eq!(publishes[0].0, "dev-1");
    assert_eq!(publishes[0].1, "mir/dev-1/tlm");
    assert_eq!(&publishes[0].2[..], b"t");
}

#[tokio::test]
async fn a_device_cannot_publish_on_another_devices_topic() {
    let b = broker().start().await;
    let (mut d, _) = Device::connect(opts("dev-1", b.addr())).await;
    d.client
        .publish("mir/dev-2/tlm", Q::AtLeastOnce, false, b"x".to_vec())
        .await
        .unwrap();
    d.expect_closed().await;
    b.hooks
        .wait_disconnect("dev-1", DisconnectReason::AuthorizationFailure)
        .await;
    assert!(b.hooks.publishes().is_empty());
}

#[tokio::test]
async fn a_device_cannot_publish_on_its_cloud_to_device_or_unknown_topics() {
    let b = broker().start().await;
    for topic in ["mir/dev-1/cmd/req", "mir/dev-1/nope", "other/dev-1/tlm"] {
        let (mut d, _) = Device::connect(opts("dev-1", b.addr())).await;
        d.client
            .publish(topic, Q::AtMostOnce, false, b"x".to_vec())
            .await
            .unwrap();
        d.expect_closed().await;
    }
    b.hooks
        .wait_until("three authorization failures", |_| {
            b.hooks.disconnects("dev-1") == vec![DisconnectReason::AuthorizationFailure; 3]
        })
        .await;
    assert!(b.hooks.publishes().is_empty());
}

#[tokio::test]
async fn subscriptions_outside_the_own_prefix_are_refused_and_qos2_is_granted_as_1() {
    let b = broker().start().await;
    let (mut d, _) = Device::connect(opts("dev-1", b.addr())).await;
    let codes = d
        .subscribe(&[
            ("mir/dev-2/cmd/req", Q::AtLeastOnce),
            ("mir/+/cmd/req", Q::AtMostOnce),
            ("#", Q::AtMostOnce),
            ("mir/dev-1/#", Q::ExactlyOnce),
            ("mir/dev-1/cfg/desired", Q::AtMostOnce),
        ])
        .await;
    assert_eq!(
        codes,
        vec![
            SubscribeReasonCode::Failure,
            SubscribeReasonCode::Failure,
            SubscribeReasonCode::Failure,
            SubscribeReasonCode::Success(Q::AtLeastOnce),
            SubscribeReasonCode::Success(Q::AtMostOnce),
        ]
    );
    // Still connected, and the wildcard subscription works.
    b.handle
        .publish("mir/dev-1/hello/get", Bytes::new(), QoS::AtLeastOnce)
        .await
        .unwrap();
    let p = d.next_publish(WAIT).await.unwrap();
    assert_eq!(
        (p.topic.as_str(), p.qos),
        ("mir/dev-1/hello/get", Q::AtLeastOnce)
    );
}

#[tokio::test]
async fn an_invalid_client_id_is_refused_with_identifier_rejected() {
    let b = broker().start().await;
    for id in ["bad/id", "dev+1", "é"] {
        let mut d = Device::start(opts(id, b.addr()));
        match d.connack().await {
            Err(ConnectionError::ConnectionRefused(ConnectReturnCode::BadClientId)) => {}
            other => panic!("{id}: expected identifier rejected, got {other:?}"),
        }
    }
    let mut raw = RawClient::connect(b.addr()).await;
    assert_eq!(raw.handshake("", 4, 30).await, Some((2, false)));
    // Refused connections call no hook, not even `admit`: once a valid device's connect
    // is reported, its admission and connect are the only events (a refused connection
    // ends before any hook could run).
    let (_d, _) = Device::connect(opts("dev-ok", b.addr())).await;
    b.hooks.wait_connects("dev-ok", 1).await;
    let events = b.hooks.events();
    assert!(
        matches!(
            &events[..],
            [HookEvent::Admit(r), HookEvent::Connect(c)] if r.client_id == "dev-ok" && c.client_id == "dev-ok"
        ),
        "refused connections call no hook: {events:#?}"
    );
}

#[tokio::test]
async fn only_mqtt_3_1_1_is_accepted() {
    let b = broker().start().await;
    let mut raw = RawClient::connect(b.addr()).await;
    assert_eq!(raw.handshake("dev-1", 5, 30).await, Some((1, false)));
    let mut raw = RawClient::connect(b.addr()).await;
    assert_eq!(raw.handshake("dev-1", 4, 30).await, Some((0, false)));
}

#[tokio::test]
async fn a_payload_over_the_limit_disconnects_the_device() {
    let b = broker().max_payload(1024).start().await;
    let (mut d, _) = Device::connect(opts("dev-1", b.addr())).await;
    d.client
        .publish("mir/dev-1/tlm", Q::AtLeastOnce, false, vec![7u8; 1024])
        .await
        .unwrap();
    d.expect_packet("PUBACK", |p| matches!(p, Packet::PubAck(_)))
        .await;
    d.client
        .publish("mir/dev-1/tlm", Q::AtLeastOnce, false, vec![7u8; 1025])
        .await
        .unwrap();
    d.expect_closed().await;
    b.hooks
        .wait_disconnect("dev-1", DisconnectReason::PayloadTooLarge)
        .await;
    assert_eq!(b.hooks.publish_count(), 1);

    // Far over the limit: refused from the packet header.
    let (mut d, _) = Device::connect(opts("dev-2", b.addr())).await;
    d.client
        .publish("mir/dev-2/tlm", Q::AtMostOnce, false, vec![7u8; 100_000])
        .await
        .unwrap();
    d.expect_closed().await;
    b.hooks
        .wait_disconnect("dev-2", DisconnectReason::PayloadTooLarge)
        .await;
    let refused = b
        .handle
        .publish("mir/dev-1/cmd/req", vec![0u8; 1025].into(), QoS::AtMostOnce)
        .await;
    assert!(
        matches!(
            refused,
            Err(BrokerError::PayloadTooLarge {
                size: 1025,
                max: 1024
            })
        ),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_qos2_publish_disconnects_the_device() {
    let b = broker().start().await;
    let (mut d, _) = Device::connect(opts("dev-1", b.addr())).await;
    d.client
        .publish("mir/dev-1/tlm", Q::ExactlyOnce, false, b"x".to_vec())
        .await
        .unwrap();
    d.expect_closed().await;
    b.hooks
        .wait_disconnect("dev-1", DisconnectReason::ProtocolError)
        .await;
    assert!(b.hooks.publishes().is_empty());
}

#[tokio::test]
async fn a_persistent_session_gets_what_was_published_while_it_was_offline() {
    let b = broker().start().await;
    let mut o = opts("dev-1", b.addr());
    o.set_clean_session(false);
    let (mut d, present) = Device::connect(o.clone()).await;
    assert!(!present);
    d.subscribe(&[("mir/dev-1/cmd/req", Q::AtLeastOnce)]).await;
    d.client.disconnect().await.unwrap();
    b.hooks
        .wait_disconnect("dev-1", DisconnectReason::ClientInitiated)
        .await;
    assert!(!b.handle.is_connected("dev-1"));

    for i in 0..3u8 {
        let n = b
            .handle
            .publish("mir/dev-1/cmd/req", vec![i].into(), QoS::AtLeastOnce)
            .await;
        assert_eq!(n.unwrap(), 1, "queued for the offline session");
    }
    let n = b
        .handle
        .publish("mir/dev-1/cmd/req", Bytes::new(), QoS::AtMostOnce)
        .await;
    assert_eq!(n.unwrap(), 0, "QoS 0 is not kept for offline sessions");

    let (mut d, present) = Device::connect(o).await;
    assert!(present, "session_present");
    for i in 0..3u8 {
        let p = d.next_publish(WAIT).await.expect("queued message");
        assert_eq!(&p.payload[..], &[i]);
    }
    assert!(d.next_publish(QUIET).await.is_none());
    // The subscription survived too.
    b.handle
        .publish(
            "mir/dev-1/cmd/req",
            Bytes::from_static(b"live"),
            QoS::AtLeastOnce,
        )
        .await
        .unwrap();
    assert_eq!(&d.next_publish(WAIT).await.unwrap().payload[..], b"live");
}

#[tokio::test]
async fn a_clean_session_forgets_everything_on_disconnect() {
    let b = broker().start().await;
    let (mut d, _) = Device::connect(opts("dev-1", b.addr())).await;
    d.subscribe(&[("mir/dev-1/cmd/req", Q::AtLeastOnce)]).await;
    d.client.disconnect().await.unwrap();
    b.hooks
        .wait_disconnect("dev-1", DisconnectReason::ClientInitiated)
        .await;
    let n = b
        .handle
        .publish("mir/dev-1/cmd/req", Bytes::new(), QoS::AtLeastOnce)
        .await;
    assert_eq!(n.unwrap(), 0);
    let mut o = opts("dev-1", b.addr());
    o.set_clean_session(false);
    let (_d, present) = Device::connect(o).await;
    assert!(!present);
}

#[tokio::test]
async fn unacknowledged_messages_are_sent_again_with_dup_on_reconnect() {
    let b = broker().start().await;
    let mut o = opts("dev-1", b.addr());
    o.set_clean_session(false);
    o.set_manual_acks(true);
    let (mut d, _) = Device::connect(o.clone()).await;
    d.subscribe(&[("mir/dev-1/cmd/req", Q::AtLeastOnce)]).await;
    b.handle
        .publish(
            "mir/dev-1/cmd/req",
            Bytes::from_static(b"c1"),
            QoS::AtLeastOnce,
        )
        .await
        .unwrap();
    let first = d.next_publish(WAIT).await.unwrap();
    assert!(!first.dup);
    d.kill().await; // never acknowledged
    b.hooks
        .wait_disconnect("dev-1", DisconnectReason::ConnectionLost)
        .await;

    let (mut d, present) = Device::connect(o).await;
    assert!(present);
    let again = d.next_publish(WAIT).await.expect("retransmission");
    assert!(again.dup);
    assert_eq!((again.pkid, &again.payload[..]), (first.pkid, &b"c1"[..]));
    d.client.ack(&again).await.unwrap();
    assert!(d.next_publish(QUIET).await.is_none());
}

#[tokio::test]
async fn at_most_max_inflight_qos1_messages_are_unacknowledged() {
    let b = broker().max_inflight(2).start().await;
    let mut o = opts("dev-1", b.addr());
    o.set_manual_acks(true);
    let (mut d, _) = Device::connect(o).await;
    d.subscribe(&[("mir/dev-1/cmd/req", Q::AtLeastOnce)]).await;
    for i in 0..5u8 {
        b.handle
            .publish("mir/dev-1/cmd/req", vec![i].into(), QoS::AtLeastOnce)
            .await
            .unwrap();
    }
    let p0 = d.next_publish(WAIT).await.unwrap();
    let p1 = d.next_publish(WAIT).await.unwrap();
    assert!(d.next_publish(QUIET).await.is_none(), "window of 2 is full");
    d.client.ack(&p0).await.unwrap();
    let p2 = d.next_publish(WAIT).await.unwrap();
    assert_eq!((&p1.payload[..], &p2.payload[..]), (&[1u8][..], &[2u8][..]));
    assert!(d.next_publish(QUIET).await.is_none());
    for p in [p1, p2] {
        d.client.ack(&p).await.unwrap();
    }
    let p3 = d.next_publish(WAIT).await.unwrap();
    let p4 = d.next_publish(WAIT).await.unwrap();
    assert_eq!((&p3.payload[..], &p4.payload[..]), (&[3u8][..], &[4u8][..]));
}

#[tokio::test]
async fn a_full_offline_queue_drops_the_oldest_messages() {
    let b = broker().max_queued(3).start().await;
    let mut o = opts("dev-1", b.addr());
    o.set_clean_session(false);
    let (mut d, _) = Device::connect(o.clone()).await;
    d.subscribe(&[("mir/dev-1/cmd/req", Q::AtLeastOnce)]).await;
    d.client.disconnect().await.unwrap();
    b.hooks
        .wait_disconnect("dev-1", DisconnectReason::ClientInitiated)
        .await;
    for i in 0..5u8 {
        b.handle
            .publish("mir/dev-1/cmd/req", vec![i].into(), QoS::AtLeastOnce)
            .await
            .unwrap();
    }
    let (mut d, _) = Device::connect(o).await;
    for i in 2..5u8 {
        assert_eq!(&d.next_publish(WAIT).await.unwrap().payload[..], &[i]);
    }
    assert!(d.next_publish(QUIET).await.is_none());
}

#[tokio::test]
async fn a_second_connection_with_the_same_client_id_takes_over() {
    let b = broker().start().await;
    let (mut first, _) = Device::connect(opts("dev-1", b.addr())).await;
    b.hooks.wait_connects("dev-1", 1).await;
    let (mut second, _) = Device::connect(opts("dev-1", b.addr())).await;
    first.expect_closed().await;
    b.hooks.wait_connects("dev-1", 2).await;
    assert_eq!(
        b.hooks.disconnects("dev-1"),
        vec![DisconnectReason::DuplicateClientId]
    );
    // The old connection's disconnect is reported before the new connect.
    let order: Vec<bool> = b
        .hooks
        .events()
        .iter()
        .filter_map(|e| match e {
            HookEvent::Connect(_) => Some(true),
            HookEvent::Disconnect(..) => Some(false),
            _ => None,
        })
        .collect();
    assert_eq!(order, vec![true, false, true]);
    let sessions: Vec<String> = b
        .hooks
        .connects("dev-1")
        .into_iter()
        .map(|c| c.session_id)
        .collect();
    assert_ne!(sessions[0], sessions[1]);
    // Like AWS's versionNumber: the new connection's is higher, and the old
    // connection's DUPLICATE_CLIENTID disconnect carries the old one.
    let connects = b.hooks.connects("dev-1");
    assert!(connects[0].version < connects[1].version, "{connects:?}");
    let old_disconnect = b.hooks.events().into_iter().find_map(|e| match e {
        HookEvent::Disconnect(c, r) => Some((c.version, r.as_aws_str())),
        _ => None,
    });
    assert_eq!(
        old_disconnect,
        Some((connects[0].version, "DUPLICATE_CLIENTID"))
    );

    second
        .subscribe(&[("mir/dev-1/cmd/req", Q::AtLeastOnce)])
        .await;
    b.handle
        .publish(
            "mir/dev-1/cmd/req",
            Bytes::from_static(b"x"),
            QoS::AtLeastOnce,
        )
        .await
        .unwrap();
    let p = second
        .next_publish(WAIT)
        .await
        .expect("delivered to the new connection");
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("mir/dev-1/cmd/req", &b"x"[..])
    );
    assert!(b.handle.is_connected("dev-1"));
}

// On tokio's paused clock (the broker's timers are tokio timers): time moves only when
// every task waits, straight to the next timer, so durations are exact and take no time.
#[tokio::test(start_paused = true)]
async fn a_silent_client_is_closed_after_one_and_a_half_keepalives() {
    let b = broker().start().await;
    let mut raw = RawClient::connect(b.addr()).await;
    assert_eq!(raw.handshake("dev-1", 4, 1).await, Some((0, false)));
    let took = raw.wait_closed(WAIT).await.expect("closed by the broker");
    assert!(
        (Duration::from_millis(1500)..=Duration::from_millis(1501)).contains(&took),
        "closed after {took:?}, not 1.5 keepalives of 1 s"
    );
    b.hooks
        .wait_disconnect("dev-1", DisconnectReason::KeepAliveTimeout)
        .await;
}

#[tokio::test(start_paused = true)]
async fn pings_keep_a_client_alive() {
    let b = broker().start().await;
    let mut o = opts("dev-1", b.addr());
    o.set_keep_alive(Duration::from_secs(1));
    let start = tokio::time::Instant::now();
    let (mut d, _) = Device::connect(o).await;
    // Nothing but pings for three keepalives, twice the broker's 1.5 s timeout.
    for _ in 0..3 {
        d.expect_packet("PINGRESP", |p| matches!(p, Packet::PingResp))
            .await;
    }
    assert!(
        start.elapsed() >= Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(b.handle.is_connected("dev-1"));
    assert!(b.hooks.disconnects("dev-1").is_empty());
}

#[tokio::test]
async fn an_authorized_last_will_is_published_on_an_ungraceful_disconnect() {
    let b = broker().start().await;
    let mut o = opts("dev-1", b.addr());
    o.set_last_will(LastWill::new(
        "mir/dev-1/hb",
        b"gone".to_vec(),
        Q::AtLeastOnce,
        false,
    ));
    let (d, _) = Device::connect(o).await;
    d.kill().await;
    b.hooks
        .wait_disconnect("dev-1", DisconnectReason::ConnectionLost)
        .await;
    assert_eq!(
        b.hooks.publishes(),
        vec![(
            "dev-1".into(),
            "mir/dev-1/hb".into(),
            Bytes::from_static(b"gone")
        )]
    );

    // A will on someone else's topic is dropped; a graceful disconnect sends none.
    let mut o = opts("dev-2", b.addr());
    o.set_last_will(LastWill::new(
        "mir/dev-1/hb",
        b"spoof".to_vec(),
        Q::AtMostOnce,
        false,
    ));
    let (d, _) = Device::connect(o).await;
    d.kill().await;
    b.hooks
        .wait_disconnect("dev-2", DisconnectReason::ConnectionLost)
        .await;
    let mut o = opts("dev-3", b.addr());
    o.set_last_will(LastWill::new(
        "mir/dev-3/hb",
        b"bye".to_vec(),
        Q::AtMostOnce,
        false,
    ));
    let (d, _) = Device::connect(o).await;
    d.client.disconnect().await.unwrap();
    b.hooks
        .wait_disconnect("dev-3", DisconnectReason::ClientInitiated)
        .await;
    assert_eq!(b.hooks.publish_count(), 1);
}

#[tokio::test]
async fn shutdown_closes_every_client_and_stopped_returns() {
    let mut b = broker().start().await;
    let (mut d1, _) = Device::connect(opts("dev-1", b.addr())).await;
    let (mut d2, _) = Device::connect(opts("dev-2", b.addr())).await;
    b.hooks.wait_connects("dev-2", 1).await;
    let handle = b.handle.clone();
    let addr = b.addr();
    b.shutdown().await;
    d1.expect_closed().await;
    d2.expect_closed().await;
    assert_eq!(
        b.hooks.disconnects("dev-1"),
        vec![DisconnectReason::ServerShutdown]
    );
    assert_eq!(
        b.hooks.disconnects("dev-2"),
        vec![DisconnectReason::ServerShutdown]
    );
    assert!(handle.connected_clients().is_empty());
    let refused = handle
        .publish("mir/dev-1/cmd/req", Bytes::new(), QoS::AtMostOnce)
        .await;
    assert!(matches!(refused, Err(BrokerError::Stopped)), "{refused:?}");
    match tokio::net::TcpStream::connect(addr).await {
        Err(e) => assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "listener closed"
        ),
        Ok(_) => panic!("the listener still accepts after shutdown"),
    }
}

#[tokio::test]
async fn every_telemetry_message_of_ten_devices_reaches_the_hook() {
    const DEVICES: usize = 10;
    const PER_DEVICE: usize = 2_000;
    let b = broker().start().await;
    let start = std::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0..DEVICES {
        let id = format!("dev-{i}");
        let addr = b.addr();
        tasks.push(tokio::spawn(async move {
            let mut o = opts(&id, addr);
            o.set_inflight(100);
            let (mut d, _) = Device::connect(o).await;
            let topic = format!("mir/{id}/tlm");
            let sender = d.client.clone();
            let send = tokio::spawn(async move {
                for n in 0..PER_DEVICE {
                    let payload = (n as u32).to_be_bytes().to_vec();
                    sender
                        .publish(topic.as_str(), Q::AtLeastOnce, false, payload)
                        .await
                        .unwrap();
                }
            });
            let mut acks = 0;
            while acks < PER_DEVICE {
                match d.next(Duration::from_secs(30)).await {
                    Some(Ok(Packet::PubAck(_))) => acks += 1,
                    Some(Ok(_)) => {}
                    other => panic!("{id}: {other:?} after {acks} acks"),
                }
            }
            send.await.unwrap();
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("in time")
            .unwrap();
    }
    let elapsed = start.elapsed();
    assert_eq!(b.hooks.publish_count(), DEVICES * PER_DEVICE);
    let rate = (DEVICES * PER_DEVICE) as f64 / elapsed.as_secs_f64();
    eprintln!(
        "{} QoS 1 messages from {DEVICES} devices in {elapsed:?}: {rate:.0} msg/s",
        DEVICES * PER_DEVICE
    );
    for i in 0..DEVICES {
        let id = format!("dev-{i}");
        let seqs: Vec<u32> = b
            .hooks
            .publishes()
            .into_iter()
            .filter(|(c, _, _)| *c == id)
            .map(|(_, _, p)| u32::from_be_bytes([p[0], p[1], p[2], p[3]]))
            .collect();
        assert_eq!(
            seqs,
            (0..PER_DEVICE as u32).collect::<Vec<_>>(),
            "{id}: in order, no loss"
        );
    }
}
