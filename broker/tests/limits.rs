//! AWS's limits in the broker, acknowledgements of what the hub kept, and the metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use bytes::Bytes;
use mir_broker::{DisconnectReason, Limit, QoS, Rejection};
use rumqttc::{Packet, QoS as Q, SubscribeReasonCode};
use support::*;
use tokio::sync::Semaphore;

// On tokio's paused clock, an hour takes no time (see broker.rs).
#[tokio::test(start_paused = true)]
async fn a_persistent_session_is_kept_for_an_hour_after_its_disconnect_and_then_forgotten() {
    let b = broker().start().await;
    let mut o = opts("dev-1", b.addr());
    o.set_clean_session(false);
    let (mut d, _) = Device::connect(o.clone()).await;
    d.subscribe(&[("mir/dev-1/cmd/req", Q::AtLeastOnce)]).await;
    d.client.disconnect().await.unwrap();
    b.hooks
        .wait_disconnect("dev-1", DisconnectReason::ClientInitiated)
        .await;

    // Within the hour: kept, and it gets what was queued.
    tokio::time::sleep(Duration::from_secs(59 * 60)).await;
    assert_eq!(b.handle.metrics().sessions_offline, 1);
    let n = b
        .handle
        .publish(
            "mir/dev-1/cmd/req",
            Bytes::from_static(b"kept"),
            QoS::AtLeastOnce,
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    let (mut d, present) = Device::connect(o.clone()).await;
    assert!(present);
    assert_eq!(&d.next_publish(WAIT).await.unwrap().payload[..], b"kept");
    // (rumqttc's `disconnect` stalls on the paused clock once it received a publish.)
    d.kill().await;
    b.hooks
        .wait_disconnect("dev-1", DisconnectReason::ConnectionLost)
        .await;

    // An hour after its last disconnect: forgotten.
    tokio::time::sleep(Duration::from_secs(3600 + 1)).await;
    let m = b.handle.metrics();
    assert_eq!((m.sessions_offline, m.sessions_online), (0, 0));
    assert_eq!(m.limit_hits(Limit::SessionExpiry), 1);
    let n = b
        .handle
        .publish("mir/dev-1/cmd/req", Bytes::new(), QoS::AtLeastOnce)
        .await
        .unwrap();
    assert_eq!(n, 0, "no session to queue for");
    let (_d, present) = Device::connect(o).await;
    assert!(!present);
}

#[tokio::test]
async fn a_session_past_a_tiny_expiry_is_not_resumed() {
    let b = broker()
        .config(|c| c.session_expiry = Duration::ZERO)
        .start()
        .await;
    let mut o = opts("dev-1", b.addr());
    o.set_clean_session(false);
    let (d, _) = Device::connect(o.clone()).await;
    d.client.disconnect().await.unwrap();
    b.hooks
        .wait_disconnect("dev-1", DisconnectReason::ClientInitiated)
        .await;
    let (_d, present) = Device::connect(o).await;
    assert!(!present);
    assert_eq!(b.handle.metrics().limit_hits(Limit::SessionExpiry), 1);
}

#[tokio::test]
async fn a_qos1_publish_the_hook_did_not_keep_is_not_acknowledged_and_comes_again() {
    let b = broker().start().await;
    b.hooks.fail_publishes.store(true, Ordering::SeqCst);
    let publish = |dup: bool| {
        let byte1 = if dup { 0x3a } else { 0x32 };
        frame(
            byte1,
            &[&field(b"mir/dev-1/tlm")[..], &[0, 7], b"t"].concat(),
        )
    };
    let mut raw = RawClient::connect(b.addr()).await;
    assert_eq!(raw.handshake("dev-1", 4, 30).await, Some((0, false)));
    raw.send(&publish(false)).await;
    // Closed without a PUBACK.
    assert_eq!(raw.read(1).await, None, "no PUBACK");
    b.hooks
        .wait_disconnect("dev-1", DisconnectReason::ServerError)
        .await;
    assert_eq!(b.handle.metrics().rejections(Rejection::HookError), 1);

    // The client resends it once reconnected; kept this time, it is acknowledged.
    b.hooks.fail_publishes.store(false, Ordering::SeqCst);
    let mut raw = RawClient::connect(b.addr()).await;
    assert_eq!(raw.handshake("dev-1", 4, 30).await, Some((0, false)));
    raw.send(&publish(true)).await;
    assert_eq!(raw.read(4).await, Some(vec![0x40, 2, 0, 7]));
    assert_eq!(b.hooks.publish_count(), 2);

    // QoS 0 the hook did not keep: dropped, and the connection stays.
    b.hooks.fail_publishes.store(true, Ordering::SeqCst);
    raw.send(&frame(0x30, &[&field(b"mir/dev-1/tlm")[..], b"t"].concat()))
        .await;
    raw.send(&[0xc0, 0]).await;
    assert_eq!(raw.read(2).await, Some(vec![0xd0, 0]), "PINGRESP");
    assert_eq!(b.handle.metrics().rejections(Rejection::HookError), 2);
}

#[tokio::test]
async fn a_subscribe_with_more_than_eight_filters_disconnects_the_client() {
    let b = broker().start().await;
    let (mut d, _) = Device::connect(opts("dev-1", b.addr())).await;
    let names: Vec<String> = (0..9).map(|i| format!("mir/dev-1/f{i}")).collect();
    let eight: Vec<(&str, Q)> = names[..8]
        .iter()
        .map(|f| (f.as_str(), Q::AtMostOnce))
        .collect();
    let codes = d.subscribe(&eight).await;
    assert_eq!(codes, vec![SubscribeReasonCode::Success(Q::AtMostOnce); 8]);
    let nine = names
        .iter()
        .map(|f| rumqttc::SubscribeFilter::new(f.clone(), Q::AtMostOnce));
    d.client.subscribe_many(nine).await.unwrap();
    d.expect_closed().await;
    b.hooks
        .wait_disconnect("dev-1", DisconnectReason::ProtocolError)
        .await;
    assert_eq!(b.handle.metrics().limit_hits(Limit::FiltersPerSubscribe), 1);
}

#[tokio::test]
async fn the_fifty_first_subscription_is_refused_and_the_client_stays() {
    let b = broker().start().await;
    let (mut d, _) = Device::connect(opts("dev-1", b.addr())).await;
    let names: Vec<String> = (0..51).map(|i| format!("mir/dev-1/f{i}")).collect();
    let mut codes = Vec::new();
    for chunk in names.chunks(8) {
        let filters: Vec<(&str, Q)> = chunk.iter().map(|f| (f.as_str(), Q::AtMostOnce)).collect();
        codes.extend(d.subscribe(&filters).await);
    }
    assert_eq!(
        &codes[..50],
        &[SubscribeReasonCode::Success(Q::AtMostOnce); 50][..]
    );
    assert_eq!(codes[50], SubscribeReasonCode::Failure);
    // Renewing a subscription held is not a new one.
    let again = d.subscribe(&[("mir/dev-1/f0", Q::AtLeastOnce)]).await;
    assert_eq!(again, vec![SubscribeReasonCode::Success(Q::AtLeastOnce)]);
    assert!(b.handle.is_connected("dev-1"));
    assert_eq!(
        b.handle
            .metrics()
            .limit_hits(Limit::SubscriptionsPerConnection),
        1
    );
}

#[tokio::test]
async fn a_connection_past_the_cap_is_closed_at_once() {
    let b = broker().config(|c| c.max_connections = 2).start().await;
    let mut first = RawClient::connect(b.addr()).await;
    assert_eq!(first.handshake("dev-1", 4, 30).await, Some((0, false)));
    let mut second = RawClient::connect(b.addr()).await;
    assert_eq!(second.handshake("dev-2", 4, 30).await, Some((0, false)));
    let mut third = RawClient::connect(b.addr()).await;
    third.send(&connect_packet(0b10, &[&field(b"dev-3")])).await;
    assert_eq!(third.read(4).await, None, "closed without a CONNACK");
    assert_eq!(b.handle.metrics().limit_hits(Limit::Connections), 1);
    assert!(b.hooks.connects("dev-3").is_empty());

    // A place freed is a place taken again (once the first connection's task ended,
    // which follows its disconnect hook: a few tries at most).
    drop(first);
    b.hooks
        .wait_disconnect("dev-1", DisconnectReason::ConnectionLost)
        .await;
    let mut accepted = None;
    for _ in 0..100 {
        let mut raw = RawClient::connect(b.addr()).await;
        raw.send(&connect_packet(0b10, &[&field(b"dev-4")])).await;
        if let Some(ack) = raw.read(4).await {
            accepted = Some(ack);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(accepted, Some(vec![0x20, 2, 0, 0]));
}

#[tokio::test(start_paused = true)]
async fn a_connection_without_connect_is_closed_after_the_connect_timeout() {
    let b = broker()
        .config(|c| c.connect_timeout = Duration::from_secs(2))
        .start()
        .await;
    let mut raw = RawClient::connect(b.addr()).await;
    assert!(raw.wait_closed(WAIT).await.is_some(), "still open");
    let m = b.handle.metrics();
    assert_eq!(m.limit_hits(Limit::ConnectTimeout), 1);
    assert_eq!(m.pending_connections, 0);
}

#[tokio::test]
async fn connections_without_connect_past_the_budget_close_the_oldest() {
    let b = broker()
        .config(|c| c.max_pending_connections = 3)
        .start()
        .await;
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(RawClient::connect(b.addr()).await);
    }
    assert!(
        silent[0].wait_closed(WAIT).await.is_some(),
        "the oldest is closed"
    );
    let (mut d, _) = Device::connect(opts("dev-1", b.addr())).await;
    d.client
        .publish("mir/dev-1/hb", Q::AtLeastOnce, false, b"hb".to_vec())
        .await
        .unwrap();
    d.expect_packet("PUBACK", |p| matches!(p, Packet::PubAck(_)))
        .await;
    let m = b.handle.metrics();
    assert!(m.pending_connections <= 3, "{m:?}");
    // The fourth pushed out the first, the device the second.
    assert_eq!(m.limit_hits(Limit::PendingConnections), 2);
    assert!(silent[1].wait_closed(WAIT).await.is_some());
}

#[tokio::test]
async fn metrics_follow_connections_sessions_and_messages() {
    let b = broker().start().await;
    let mut o = opts("dev-1", b.addr());
    o.set_clean_session(false);
    let (mut d1, _) = Device::connect(o).await;
    let (_d2, _) = Device::connect(opts("dev-2", b.addr())).await;
    b.hooks.wait_connects("dev-2", 1).await;
    d1.subscribe(&[("mir/dev-1/cmd/req", Q::AtLeastOnce)]).await;
    for _ in 0..2 {
        d1.client
            .publish("mir/dev-1/tlm", Q::AtLeastOnce, false, b"t".to_vec())
            .await
            .unwrap();
        d1.expect_packet("PUBACK", |p| matches!(p, Packet::PubAck(_)))
            .await;
    }
    b.handle
        .publish(
            "mir/dev-1/cmd/req",
            Bytes::from_static(b"c"),
            QoS::AtLeastOnce,
        )
        .await
        .unwrap();
    d1.next_publish(WAIT).await.expect("command");
    let m = b.handle.metrics();
    assert_eq!((m.connections_plain, m.connections_tls), (2, 0));
    assert_eq!((m.sessions_online, m.sessions_offline), (2, 0));
    assert_eq!((m.messages_in, m.messages_out), (2, 1));
    assert_eq!(m.pending_connections, 0);

    d1.client.disconnect().await.unwrap();
    b.hooks
        .wait_disconnect("dev-1", DisconnectReason::ClientInitiated)
        .await;
    let m = b.handle.metrics();
    assert_eq!(m.connections_plain, 1);
    assert_eq!((m.sessions_online, m.sessions_offline), (1, 1));
    let samples = m.samples();
    let online = samples
        .iter()
        .find(|s| s.name == "mir_broker_sessions" && s.label == Some(("state", "online")))
        .map(|s| s.value);
    assert_eq!(online, Some(1));
}

#[tokio::test(start_paused = true)]
async fn an_admission_hook_that_does_not_answer_in_time_refuses_as_server_unavailable() {
    let gate = Arc::new(Semaphore::new(0));
    let b = broker()
        .config(|c| c.connect_timeout = Duration::from_secs(2))
        .admit_gate(gate.clone())
        .start()
        .await;
    let mut raw = RawClient::connect(b.addr()).await;
    assert_eq!(raw.handshake("dev-1", 4, 30).await, Some((3, false)));
    assert_eq!(
        b.handle.metrics().rejections(Rejection::AdmissionRefused),
        1
    );
    assert!(b.hooks.connects("dev-1").is_empty());
    // Once it answers in time, the client is in.
    gate.add_permits(1);
    let mut raw = RawClient::connect(b.addr()).await;
    assert_eq!(raw.handshake("dev-1", 4, 30).await, Some((0, false)));
}

#[tokio::test]
async fn a_retained_publish_is_delivered_like_any_other_and_not_kept() {
    let b = broker().start().await;
    let (mut d, _) = Device::connect(opts("dev-1", b.addr())).await;
    d.subscribe(&[("mir/dev-1/hb", Q::AtLeastOnce)]).await;
    d.client
        .publish("mir/dev-1/hb", Q::AtLeastOnce, true, b"hb".to_vec())
        .await
        .unwrap();
    let p = d.next_publish(WAIT).await.expect("its own heartbeat");
    assert!(!p.retain);
    assert_eq!(b.hooks.publish_count(), 1);
    // A new subscriber gets no retained message.
    let (mut late, _) = Device::connect(opts("dev-1", b.addr())).await;
    late.subscribe(&[("mir/dev-1/hb", Q::AtLeastOnce)]).await;
    assert!(late.next_publish(QUIET).await.is_none());
}
