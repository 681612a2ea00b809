//! The attack matrix at the broker's level (issue 15): each attack is refused, counted,
//! and leaves the victim as it was.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use mir_broker::{DisconnectReason, Limit, QoS, Refusal, Rejection};
use rumqttc::{
    ConnectReturnCode, ConnectionError, LastWill, Packet, QoS as Q, SubscribeReasonCode,
};
use support::*;

/// Connects the victim `dev-1` over mTLS with a persistent session subscribed to its
/// commands.
async fn victim(b: &TestBroker, pki: &Pki) -> (Device, rumqttc::MqttOptions) {
    let (mut o, _) = pki.device_opts("dev-1", b.tls.unwrap());
    o.set_clean_session(false);
    let (mut d, _) = Device::connect(o.clone()).await;
    let codes = d.subscribe(&[("mir/dev-1/cmd/req", Q::AtLeastOnce)]).await;
    assert_eq!(codes, vec![SubscribeReasonCode::Success(Q::AtLeastOnce)]);
    (d, o)
}

async fn expect_not_authorized(opts: rumqttc::MqttOptions) {
    let mut d = Device::start(opts);
    match d.connack().await {
        Err(ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized)) => {}
        other => panic!("expected CONNACK 5 (not authorized), got {other:?}"),
    }
}

#[tokio::test]
async fn a_plain_client_claiming_a_certified_devices_id_is_refused_and_the_victim_keeps_its_session(
) {
    let pki = Pki::new();
    let b = broker()
        .tls(pki.listener())
        .admit(|r| match (r.tls, r.client_id.as_str()) {
            (false, "dev-1") => Err(Refusal::CertificateRequired),
            _ => Ok(()),
        })
        .start()
        .await;
    let (mut victim_dev, victim_opts) = victim(&b, &pki).await;
    b.hooks.wait_connects("dev-1", 1).await;

    // Online victim: the attacker, on the plain port with the victim's id (and a
    // persistent session, to resume the victim's), is refused.
    let mut attack = opts("dev-1", b.addr());
    attack.set_clean_session(false);
    expect_not_authorized(attack.clone()).await;
    assert!(b.handle.is_connected("dev-1"));
    let n = b
        .handle
        .publish(
            "mir/dev-1/cmd/req",
            Bytes::from_static(b"c1"),
            QoS::AtLeastOnce,
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    let p = victim_dev
        .next_publish(WAIT)
        .await
        .expect("the victim's command");
    assert_eq!(&p.payload[..], b"c1");
    assert!(b.hooks.disconnects("dev-1").is_empty(), "not taken over");
    assert_eq!(b.hooks.connects("dev-1").len(), 1);
    let admits: Vec<(bool, Option<String>)> = b
        .hooks
        .events()
        .into_iter()
        .filter_map(|e| match e {
            HookEvent::Admit(r) => Some((r.tls, r.certificate.map(|c| c.certificate_id))),
            _ => None,
        })
        .collect();
    assert_eq!(admits.len(), 2);
    assert!(
        admits[0].0 && admits[0].1.is_some(),
        "the victim came with its certificate"
    );
    assert_eq!(
        admits[1],
        (false, None),
        "the attacker came on the plain port"
    );
    let m = b.handle.metrics();
    assert_eq!(m.rejections(Rejection::AdmissionRefused), 1);
    assert_eq!((m.connections_tls, m.connections_plain), (1, 0));

    // Offline victim: its queued command and subscription survive another attempt.
    victim_dev.client.disconnect().await.unwrap();
    b.hooks
        .wait_disconnect("dev-1", DisconnectReason::ClientInitiated)
        .await;
    let n = b
        .handle
        .publish(
            "mir/dev-1/cmd/req",
            Bytes::from_static(b"c2"),
            QoS::AtLeastOnce,
        )
        .await
        .unwrap();
    assert_eq!(n, 1, "queued for the offline victim");
    expect_not_authorized(attack).await;
    let (mut victim_dev, present) = Device::connect(victim_opts).await;
    assert!(present, "the victim's session was not touched");
    let p = victim_dev
        .next_publish(WAIT)
        .await
        .expect("the queued command");
    assert_eq!(&p.payload[..], b"c2");
    assert_eq!(
        b.handle.metrics().rejections(Rejection::AdmissionRefused),
        2
    );
}

#[tokio::test]
async fn a_revoked_certificate_is_refused_and_disconnect_cuts_off_the_device_using_it() {
    let pki = Pki::new();
    let revoked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let list = revoked.clone();
    let b = broker()
        .tls_only(pki.listener())
        .admit(move |r| match &r.certificate {
            Some(c) if list.lock().unwrap().contains(&c.certificate_id) => {
                Err(Refusal::CertificateRevoked)
            }
            _ => Ok(()),
        })
        .start()
        .await;
    let (mut o, cert) = pki.device_opts("dev-1", b.tls.unwrap());
    o.set_clean_session(false);
    o.set_last_will(LastWill::new(
        "mir/dev-1/hb",
        b"gone".to_vec(),
        Q::AtMostOnce,
        false,
    ));
    let (mut d, _) = Device::connect(o.clone()).await;
    d.subscribe(&[("mir/dev-1/cmd/req", Q::AtLeastOnce)]).await;
    b.hooks.wait_connects("dev-1", 1).await;
    let seen = b.hooks.connects("dev-1")[0]
        .certificate
        .clone()
        .expect("certificate");
    assert_eq!(
        seen.certificate_id, cert.certificate_id,
        "the CA's certificate id"
    );
    assert_eq!(seen.common_name.as_deref(), Some("dev-1"));
    assert!(
        !seen.serial_hex.is_empty() && seen.serial_hex.chars().all(|c| c.is_ascii_hexdigit()),
        "{}",
        seen.serial_hex
    );

    // The hub revokes the certificate and cuts the device off.
    revoked.lock().unwrap().insert(cert.certificate_id.clone());
    assert!(b
        .handle
        .disconnect("dev-1", DisconnectReason::AuthorizationFailure));
    d.expect_closed().await;
    b.hooks
        .wait_disconnect("dev-1", DisconnectReason::AuthorizationFailure)
        .await;
    assert!(
        b.hooks.publishes().is_empty(),
        "no last will for a device cut off"
    );
    let n = b
        .handle
        .publish("mir/dev-1/cmd/req", Bytes::new(), QoS::AtLeastOnce)
        .await
        .unwrap();
    assert_eq!(n, 0, "its session went with it");
    assert!(!b
        .handle
        .disconnect("dev-1", DisconnectReason::AuthorizationFailure));

    // From then on the certificate is refused; a new one of the device connects.
    expect_not_authorized(o).await;
    assert_eq!(
        b.handle.metrics().rejections(Rejection::AdmissionRefused),
        1
    );
    let (mut o, _fresh) = pki.device_opts("dev-1", b.tls.unwrap());
    o.set_clean_session(false);
    let (_d, present) = Device::connect(o).await;
    assert!(!present, "a new session");
}

#[tokio::test]
async fn wildcard_subscriptions_are_refused_and_the_victim_is_unaffected() {
    let b = broker().start().await;
    let (mut victim_dev, _) = Device::connect(opts("dev-1", b.addr())).await;
    victim_dev
        .subscribe(&[("mir/dev-1/cmd/req", Q::AtLeastOnce)])
        .await;
    let (mut attacker, _) = Device::connect(opts("dev-2", b.addr())).await;
    let codes = attacker
        .subscribe(&[
            ("#", Q::AtLeastOnce),
            ("mir/#", Q::AtLeastOnce),
            ("mir/+/cmd/req", Q::AtLeastOnce),
            ("$aws/#", Q::AtLeastOnce),
            ("mir/dev-1/#", Q::AtLeastOnce),
        ])
        .await;
    assert_eq!(codes, vec![SubscribeReasonCode::Failure; 5]);
    b.handle
        .publish(
            "mir/dev-1/cmd/req",
            Bytes::from_static(b"secret"),
            QoS::AtLeastOnce,
        )
        .await
        .unwrap();
    let p = victim_dev
        .next_publish(WAIT)
        .await
        .expect("the victim's command");
    assert_eq!(&p.payload[..], b"secret");
    assert!(
        attacker.next_publish(QUIET).await.is_none(),
        "the attacker got nothing"
    );
    assert!(
        b.handle.is_connected("dev-2"),
        "refused filters do not disconnect"
    );
    assert_eq!(
        b.handle
            .metrics()
            .rejections(Rejection::SubscriptionRefused),
        5
    );
}

#[tokio::test]
async fn publishing_on_another_devices_topics_disconnects_the_publisher_and_spares_the_victim() {
    let b = broker().start().await;
    let (mut victim_dev, _) = Device::connect(opts("dev-1", b.addr())).await;
    victim_dev
        .subscribe(&[("mir/dev-1/#", Q::AtLeastOnce)])
        .await;
    let topics = [
        "mir/dev-1/tlm",
        "mir/dev-1/cmd/resp",
        "mir/dev-1/cmd/req",
        "mir/dev-1/hb",
    ];
    for topic in topics {
        let (mut attacker, _) = Device::connect(opts("dev-2", b.addr())).await;
        attacker
            .client
            .publish(topic, Q::AtLeastOnce, false, b"forged".to_vec())
            .await
            .unwrap();
        attacker.expect_closed().await;
    }
    b.hooks
        .wait_until("every attacker disconnected", |_| {
            b.hooks.disconnects("dev-2") == vec![DisconnectReason::AuthorizationFailure; 4]
        })
        .await;
    assert!(
        b.hooks.publishes().is_empty(),
        "nothing forged reached the hub"
    );
    assert!(
        victim_dev.next_publish(QUIET).await.is_none(),
        "nor the victim"
    );
    assert!(b.handle.is_connected("dev-1"));
    b.handle
        .publish(
            "mir/dev-1/cmd/req",
            Bytes::from_static(b"real"),
            QoS::AtLeastOnce,
        )
        .await
        .unwrap();
    assert_eq!(
        &victim_dev.next_publish(WAIT).await.unwrap().payload[..],
        b"real"
    );
    assert_eq!(b.handle.metrics().rejections(Rejection::AuthFailure), 4);
}

/// Raises the soft limit of open files to `need` if the hard limit allows it.
fn ensure_open_files(need: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_some_and(|c| c >= need) || limit.current.is_none() {
        return;
    }
    let raised = Rlimit {
        current: Some(limit.maximum.map_or(need, |m| m.min(need))),
        maximum: limit.maximum,
    };
    setrlimit(Resource::Nofile, raised).expect("raise the limit of open files");
    let now = getrlimit(Resource::Nofile).current;
    assert!(
        now.is_none_or(|c| c >= need),
        "this test needs {need} open files; the hard limit is {:?}",
        limit.maximum
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_half_open_connections_do_not_keep_a_device_out() {
    const HALF_OPEN: usize = 2_000;
    // Both ends of every connection live in this process.
    ensure_open_files(2 * HALF_OPEN as u64 + 256);
    let b = broker().start().await;
    let max_pending = mir_broker::BrokerConfig::default().max_pending_connections;
    let mut silent = Vec::with_capacity(HALF_OPEN);
    for _ in 0..HALF_OPEN {
        silent.push(tokio::net::TcpStream::connect(b.addr()).await.unwrap());
    }

    // A device connects and completes a round trip.
    let (mut d, _) = Device::connect(opts("dev-1", b.addr())).await;
    d.subscribe(&[("mir/dev-1/cmd/req", Q::AtLeastOnce)]).await;
    b.handle
        .publish(
            "mir/dev-1/cmd/req",
            Bytes::from_static(b"c"),
            QoS::AtLeastOnce,
        )
        .await
        .unwrap();
    assert_eq!(
        &d.next_publish(WAIT).await.expect("command").payload[..],
        b"c"
    );
    d.client
        .publish("mir/dev-1/tlm", Q::AtLeastOnce, false, b"t".to_vec())
        .await
        .unwrap();
    d.expect_packet("PUBACK", |p| matches!(p, Packet::PubAck(_)))
        .await;

    // The silent connections were accepted before the device's (one backlog, in
    // order): all but the newest `max_pending` were closed to make room.
    let m = b.handle.metrics();
    assert!(m.pending_connections <= max_pending as u64, "{m:?}");
    assert!(
        m.limit_hits(Limit::PendingConnections) >= (HALF_OPEN - max_pending) as u64,
        "{m:?}"
    );
    assert_eq!(m.connections_plain, 1);
    drop(silent);
}

#[tokio::test]
async fn a_subscriber_that_never_acknowledges_holds_at_most_its_byte_cap_while_50_mb_are_published()
{
    const CAP: usize = 1 << 20;
    const PAYLOAD: usize = 125_000;
    const COUNT: u32 = 400; // 50 MB
    const TOPIC: &str = "mir/dev-1/cmd/req";
    let b = broker()
        .config(|c| c.max_queued_bytes_per_session = CAP)
        .start()
        .await;
    let mut o = opts("dev-1", b.addr());
    o.set_clean_session(false);
    o.set_manual_acks(true);
    let (mut d, _) = Device::connect(o.clone()).await;
    d.subscribe(&[(TOPIC, Q::AtLeastOnce)]).await;
    let mut most = 0;
    for i in 0..COUNT {
        let mut payload = vec![0u8; PAYLOAD];
        payload[..4].copy_from_slice(&i.to_be_bytes());
        let n = b
            .handle
            .publish(TOPIC, payload.into(), QoS::AtLeastOnce)
            .await
            .unwrap();
        assert_eq!(n, 1);
        let queued = b.handle.metrics().queued_bytes;
        assert!(
            queued <= CAP as u64,
            "{queued} bytes queued after message {i}"
        );
        most = most.max(queued);
        // Let the connection send what it may (and the subscriber not acknowledge it).
        tokio::task::yield_now().await;
    }
    let m = b.handle.metrics();
    let kept = CAP as u64 / (PAYLOAD + TOPIC.len()) as u64;
    assert_eq!(m.queued_messages, kept, "{m:?}");
    assert!(most <= CAP as u64);
    assert_eq!(
        m.limit_hits(Limit::SessionQueueBytes),
        u64::from(COUNT) - kept
    );

    // The oldest were dropped: the resumed session gets the newest, in order.
    d.kill().await;
    b.hooks
        .wait_disconnect("dev-1", DisconnectReason::ConnectionLost)
        .await;
    let (mut d, present) = Device::connect(o).await;
    assert!(present);
    let mut seqs = Vec::new();
    for _ in 0..kept {
        let p = d.next_publish(WAIT).await.expect("a kept message");
        seqs.push(u32::from_be_bytes([
            p.payload[0],
            p.payload[1],
            p.payload[2],
            p.payload[3],
        ]));
        d.client.ack(&p).await.unwrap();
    }
    let newest: Vec<u32> = (COUNT - kept as u32..COUNT).collect();
    assert_eq!(seqs, newest);
}
