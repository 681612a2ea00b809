//! Events: idempotent append, filters by device, reason and time, newest first, limits.

use mir_shared::{
    domain::{Event, EventFilter, EventReason},
    testing::at_ms,
};

use crate::support::Ports;

const DAY_MS: i64 = 86_400_000;

fn event(reason: EventReason, device: &str, ms: i64, cause: &str) -> Event {
    Event::new(
        reason,
        device,
        at_ms(ms),
        cause,
        format!("{} at {ms}", reason.as_str()),
    )
    .with_payload(serde_json::json!({"cause": cause, "n": 1, "list": [true, "x", 2.5]}))
}

async fn ids(p: &Ports, filter: EventFilter) -> Vec<String> {
    p.events()
        .list(&filter)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect()
}

async fn append_is_idempotent_and_lists_newest_first(p: &Ports) {
    let t0 = 1_700_000_000_000;
    let e1 = event(EventReason::DeviceOnline, "d1", t0, "a");
    let e2 = event(EventReason::DeviceOffline, "d1", t0 + 1_000, "b");
    let e3 = event(EventReason::DeviceCreated, "d2", t0 + 2_000, "c");
    let e4 = event(EventReason::CommandSent, "d1", t0 + DAY_MS, "d");
    let e5 = event(EventReason::CommandSent, "d3", t0 - 3 * DAY_MS, "e");
    p.events().append(&[e1.clone(), e2.clone()]).await.unwrap();
    p.events()
        .append(&[e2.clone(), e3.clone(), e4.clone(), e5.clone()])
        .await
        .unwrap();
    p.events().append(std::slice::from_ref(&e1)).await.unwrap();
    p.events().append(&[]).await.unwrap();
    let all = p.events().list(&EventFilter::default()).await.unwrap();
    assert_eq!(
        all,
        [e4.clone(), e3.clone(), e2.clone(), e1.clone(), e5.clone()],
        "{}",
        p.kind
    );
    let by = |device: Option<&str>,
              reason: Option<EventReason>,
              since: Option<i64>,
              limit: Option<usize>| EventFilter {
        device_id: device.map(Into::into),
        reason,
        since: since.map(at_ms),
        limit,
    };
    assert_eq!(
        ids(p, by(Some("d1"), None, None, None)).await,
        [e4.id.as_str(), e2.id.as_str(), e1.id.as_str()]
    );
    assert_eq!(
        ids(p, by(None, Some(EventReason::DeviceOffline), None, None)).await,
        [e2.id.as_str()]
    );
    assert_eq!(
        ids(p, by(None, Some(EventReason::CommandSent), None, None)).await,
        [e4.id.as_str(), e5.id.as_str()]
    );
    assert_eq!(
        ids(p, by(None, None, Some(t0 + 1_000), None)).await,
        [e4.id.as_str(), e3.id.as_str(), e2.id.as_str()]
    );
    assert_eq!(
        ids(p, by(None, None, None, Some(2))).await,
        [e4.id.as_str(), e3.id.as_str()]
    );
    assert_eq!(
        ids(p, by(Some("d1"), None, Some(t0 + 1), Some(1))).await,
        [e4.id.as_str()]
    );
    assert_eq!(
        ids(
            p,
            by(Some("d1"), Some(EventReason::DeviceOnline), None, None)
        )
        .await,
        [e1.id.as_str()]
    );
    assert!(ids(p, by(Some("nobody"), None, None, None))
        .await
        .is_empty());
}

async fn many_events_page_through(p: &Ports) {
    let t0 = 1_700_000_000_000;
    let events: Vec<Event> = (0..60)
        .map(|i| {
            event(
                if i % 2 == 0 {
                    EventReason::DeviceOnline
                } else {
                    EventReason::DeviceOffline
                },
                "d1",
                t0 + i * 1_000,
                &format!("c{i}"),
            )
        })
        .collect();
    p.events().append(&events).await.unwrap();
    let filter = EventFilter {
        reason: Some(EventReason::DeviceOffline),
        limit: Some(25),
        ..Default::default()
    };
    let got = p.events().list(&filter).await.unwrap();
    assert_eq!(got.len(), 25);
    assert_eq!(got[0].id, events[59].id);
    assert!(got.windows(2).all(|w| w[0].time > w[1].time));
    let got = p
        .events()
        .list(&EventFilter {
            device_id: Some("d1".into()),
            ..filter
        })
        .await
        .unwrap();
    assert_eq!(got.len(), 25);
    assert_eq!(got[24].id, events[11].id);
}

conformance!(
    append_is_idempotent_and_lists_newest_first,
    many_events_page_through
);
