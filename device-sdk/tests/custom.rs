//! Custom device routes (`mir/{id}/x/{module}/{route}`): what a device sends there
//! reaches the broker byte for byte; bad names, oversized payloads and sends while not
//! connected are refused with typed errors, and nothing is published for them.

mod support;

use std::time::Duration;

use bytes::Bytes;
use mir_device_sdk::SdkError;
use mir_proto::MAX_PAYLOAD_BYTES;
use support::{device, launch, launch_connected, TestBroker, WAIT};

/// The custom topics `id` published on so far.
fn custom_topics(broker: &TestBroker, id: &str) -> Vec<String> {
    let prefix = format!("mir/{id}/x/");
    broker
        .recorder
        .topics()
        .into_iter()
        .filter(|t| t.starts_with(&prefix))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_on_a_custom_route_reaches_the_broker_with_exactly_its_bytes() {
    let broker = TestBroker::start().await;
    let dev = launch_connected(device(&broker, "route-send").build().expect("build")).await;
    let payload = Bytes::from_static(b"\x00door\xffopen\n");
    dev.mir
        .send_custom("alerts", "door", payload.clone())
        .expect("accepted");
    let got = broker
        .recorder
        .wait_on("mir/route-send/x/alerts/door", 1)
        .await;
    assert_eq!(got, vec![payload]);
    assert!(
        broker.recorder.disconnects().is_empty(),
        "the policy allows a device's own custom routes"
    );
    assert_eq!(dev.mir.status().connects, 1);
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_module_or_route_names_are_refused_with_the_name_and_nothing_is_published() {
    let broker = TestBroker::start().await;
    let dev = launch_connected(device(&broker, "route-names").build().expect("build")).await;
    let long = "r".repeat(33);
    for (module, route, what, name) in [
        ("Alerts", "door", "module", "Alerts"),
        ("9lives", "door", "module", "9lives"),
        ("", "door", "module", ""),
        ("alerts", "door/open", "route", "door/open"),
        ("alerts", "+", "route", "+"),
        ("alerts", long.as_str(), "route", long.as_str()),
    ] {
        match dev.mir.send_custom(module, route, Bytes::from_static(b"x")) {
            Err(SdkError::InvalidCustomRoute(e)) => {
                assert_eq!((e.what, e.name.as_str()), (what, name), "{module}/{route}");
            }
            other => panic!("{module}/{route}: {other:?}"),
        }
    }
    // A good one after them: once it arrived, the bad ones would have too.
    dev.mir
        .send_custom("alerts", "door", Bytes::from_static(b"ok"))
        .expect("accepted");
    broker
        .recorder
        .wait_on("mir/route-names/x/alerts/door", 1)
        .await;
    assert_eq!(
        custom_topics(&broker, "route-names"),
        ["mir/route-names/x/alerts/door"]
    );
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_over_the_limit_with_its_topic_is_refused_and_one_at_the_limit_is_sent() {
    let broker = TestBroker::start().await;
    let dev = launch_connected(device(&broker, "route-size").build().expect("build")).await;
    let topic = "mir/route-size/x/alerts/door";
    let fits = MAX_PAYLOAD_BYTES - topic.len();
    match dev
        .mir
        .send_custom("alerts", "door", Bytes::from(vec![7u8; fits + 1]))
    {
        Err(SdkError::PayloadTooLarge { name, size, limit }) => {
            assert_eq!(name, topic);
            assert_eq!((size, limit), (MAX_PAYLOAD_BYTES + 1, MAX_PAYLOAD_BYTES));
        }
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
    dev.mir
        .send_custom("alerts", "door", Bytes::from(vec![8u8; fits]))
        .expect("fits exactly");
    let got = broker.recorder.wait_on(topic, 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].len(), fits);
    assert!(
        got[0].iter().all(|b| *b == 8),
        "the one that fits, not the other"
    );
    assert!(broker.recorder.disconnects().is_empty());
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_messages_are_refused_while_not_connected_and_never_sent_later() {
    let mut broker = TestBroker::start().await;
    let mir = device(&broker, "route-offline")
        .backoff(Duration::from_millis(50), Duration::from_millis(200))
        .build()
        .expect("build");
    assert!(matches!(
        mir.send_custom("alerts", "door", Bytes::from_static(b"early")),
        Err(SdkError::NotLaunched)
    ));
    let dev = launch(mir).await;
    dev.mir.wait_connected(WAIT).await.expect("connects");

    broker.stop().await;
    dev.mir
        .wait_for_status(WAIT, |s| !s.connected)
        .await
        .expect("sees the broker go");
    let refused = dev
        .mir
        .send_custom("alerts", "door", Bytes::from_static(b"offline"));
    assert!(
        matches!(refused, Err(SdkError::NotConnected)),
        "{refused:?}"
    );
    assert!(refused.expect_err("refused").is_retryable());

    broker.restart().await;
    dev.mir.wait_connects(2, WAIT).await.expect("reconnects");
    dev.mir
        .send_custom("alerts", "door", Bytes::from_static(b"online"))
        .expect("accepted");
    let got = broker
        .recorder
        .wait_on("mir/route-offline/x/alerts/door", 1)
        .await;
    assert_eq!(got, vec![Bytes::from_static(b"online")]);
    assert_eq!(custom_topics(&broker, "route-offline").len(), 1);
    dev.stop().await;
}
