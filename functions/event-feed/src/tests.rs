//! Handler tests over the embedded store and a recording feed.

use std::sync::Arc;

use mir_shared::{
    adapters::memory::RecordingFeed,
    domain::{Event, EventReason},
    ports::{FeedError, Ports, TwinStore},
    service::HandlerError,
    testing::{at_ms, TestWorld},
};

use super::*;

fn world() -> (TestWorld, Arc<RecordingFeed>, Ports) {
    let world = TestWorld::new();
    let feed = Arc::new(RecordingFeed::new());
    let ports = Ports {
        feed: Some(feed.clone()),
        ..world.ports.clone()
    };
    (world, feed, ports)
}

fn event(device: &str, n: i64) -> Event {
    Event::new(
        EventReason::DeviceOnline,
        device,
        at_ms(1_700_000_000_000 + n),
        &format!("cause-{n}"),
        "online",
    )
}

async fn labelled_device(world: &TestWorld, id: &str) {
    world.with_weather_device(id).await;
    let mut t = world.twin_versioned(id).await;
    t.value.meta.name = format!("{id}-name");
    t.value.meta.namespace = "plant-a".into();
    t.value.meta.labels.insert("site".into(), "north".into());
    TwinStore::update(&world.store, &t.value, t.version)
        .await
        .expect("twin updated");
}

#[tokio::test]
async fn events_go_out_in_order_with_their_devices_name_namespace_and_labels() {
    let (world, feed, ports) = world();
    labelled_device(&world, "w1").await;
    let events: Vec<Event> = (0..3).map(|n| event("w1", n)).collect();
    let deps = Deps::try_from(&ports).expect("deps");
    let out = handle(&deps, events.clone()).await.expect("published");
    assert_eq!(
        out,
        FeedOutcome {
            published: 3,
            refused: 0
        }
    );
    let got = feed.published();
    let ids: Vec<&str> = got.iter().map(|e| e.id.as_str()).collect();
    let want: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, want);
    for e in &got {
        assert_eq!(e.name, "w1-name");
        assert_eq!(e.namespace, "plant-a");
        assert_eq!(e.labels.get("site").map(String::as_str), Some("north"));
    }
}

#[tokio::test]
async fn an_event_of_a_device_that_no_longer_exists_goes_out_without_labels() {
    let (_world, feed, ports) = world();
    let deps = Deps::try_from(&ports).expect("deps");
    handle(&deps, vec![event("gone", 1)])
        .await
        .expect("published");
    let got = feed.published();
    assert_eq!(got.len(), 1);
    assert!(got[0].labels.is_empty());
    assert_eq!(got[0].device_id, "gone");
}

#[tokio::test]
async fn a_bus_that_fails_midway_says_how_many_events_went_out_so_the_retry_starts_there() {
    let (_world, feed, ports) = world();
    feed.fail_after(2);
    let deps = Deps::try_from(&ports).expect("deps");
    let events: Vec<Event> = (0..5).map(|n| event("d1", n)).collect();
    let Err(partial) = handle(&deps, events.clone()).await else {
        panic!("the feed was told to fail");
    };
    assert_eq!(partial.published, 2);
    assert!(partial.is_retryable());
    assert!(matches!(
        partial.error,
        HandlerError::Feed(FeedError::Unavailable { published: 2, .. })
    ));
    // The retry, from the first event that did not go out.
    let rest = events[partial.published..].to_vec();
    handle(&deps, rest).await.expect("published");
    let ids: Vec<String> = feed.published().into_iter().map(|e| e.id).collect();
    let want: Vec<String> = events.into_iter().map(|e| e.id).collect();
    assert_eq!(ids, want);
}

#[tokio::test]
async fn an_event_the_bus_refuses_for_good_is_skipped_and_the_events_behind_it_go_out() {
    let (_world, feed, ports) = world();
    let events: Vec<Event> = (0..4).map(|n| event("d1", n)).collect();
    feed.refuse(&events[1].id);
    let deps = Deps::try_from(&ports).expect("deps");
    let out = handle(&deps, events.clone())
        .await
        .expect("the rest published");
    assert_eq!(
        out,
        FeedOutcome {
            published: 3,
            refused: 1
        }
    );
    let ids: Vec<String> = feed.published().into_iter().map(|e| e.id).collect();
    assert_eq!(
        ids,
        vec![
            events[0].id.clone(),
            events[2].id.clone(),
            events[3].id.clone()
        ]
    );
}

#[tokio::test]
async fn without_a_feed_port_the_function_does_not_start() {
    let world = TestWorld::new();
    let missing = Deps::try_from(&world.ports).err();
    assert_eq!(
        missing,
        Some(mir_shared::ports::MissingPort { port: "event feed" })
    );
}
