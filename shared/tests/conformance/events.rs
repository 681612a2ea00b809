//! Events: idempotent append, filters by device, reason and time range, newest first,
//! pages (no duplicates, no gaps, tokens that round trip, bad tokens refused), and
//! `expiresAt` from the retention per reason.

use std::collections::HashSet;

use mir_shared::{
    domain::{Event, EventFilter, EventReason, EventRetention, Page, PageRequest},
    ports::StoreError,
    testing::at_ms,
};

use crate::support::Ports;

const DAY_MS: i64 = 86_400_000;
/// 2023-11-14T00:00:00Z, a midnight.
const MIDNIGHT_MS: i64 = 1_699_920_000_000;

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

/// `e` as the stores keep it: with the `expiresAt` of the default retention.
fn stored(e: &Event) -> Event {
    Event {
        expires_at: Some(EventRetention::default().expires_at(e).timestamp()),
        ..e.clone()
    }
}

async fn page(p: &Ports, filter: &EventFilter, limit: usize, token: Option<String>) -> Page<Event> {
    p.events()
        .list(filter, &PageRequest { limit, token })
        .await
        .unwrap()
}

async fn ids(p: &Ports, filter: EventFilter) -> Vec<String> {
    page(p, &filter, 100, None)
        .await
        .items
        .into_iter()
        .map(|e| e.id)
        .collect()
}

/// Every page of `filter`, `limit` at a time; asserts each token is given only with a
/// full page.
async fn pages(p: &Ports, filter: &EventFilter, limit: usize) -> Vec<Vec<Event>> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let got = page(p, filter, limit, token).await;
        assert!(got.items.len() <= limit, "{}", p.kind);
        let last = got.next_token.is_none();
        if !last {
            assert_eq!(got.items.len(), limit, "a token comes with a full page");
        }
        out.push(got.items);
        if last {
            return out;
        }
        token = got.next_token;
    }
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
        .append(&[e2.clone(), e3.clone(), e4.clone(), e5.clone(), e4.clone()])
        .await
        .unwrap();
    p.events().append(std::slice::from_ref(&e1)).await.unwrap();
    p.events().append(&[]).await.unwrap();
    let all = page(p, &EventFilter::default(), 100, None).await;
    assert_eq!(
        all,
        Page::last([&e4, &e3, &e2, &e1, &e5].map(stored).to_vec()),
        "{}",
        p.kind
    );
    let by = |device: Option<&str>, reason: Option<EventReason>, since: Option<i64>| EventFilter {
        device_id: device.map(Into::into),
        reason,
        since: since.map(at_ms),
        until: None,
    };
    assert_eq!(
        ids(p, by(Some("d1"), None, None)).await,
        [e4.id.as_str(), e2.id.as_str(), e1.id.as_str()]
    );
    assert_eq!(
        ids(p, by(None, Some(EventReason::DeviceOffline), None)).await,
        [e2.id.as_str()]
    );
    assert_eq!(
        ids(p, by(None, Some(EventReason::CommandSent), None)).await,
        [e4.id.as_str(), e5.id.as_str()]
    );
    assert_eq!(
        ids(p, by(None, None, Some(t0 + 1_000))).await,
        [e4.id.as_str(), e3.id.as_str(), e2.id.as_str()]
    );
    let two = page(p, &EventFilter::default(), 2, None).await;
    assert_eq!(two.items, [stored(&e4), stored(&e3)]);
    assert!(two.next_token.is_some());
    let one = page(p, &by(Some("d1"), None, Some(t0 + 1)), 1, None).await;
    assert_eq!(one.items, [stored(&e4)]);
    assert_eq!(
        ids(p, by(Some("d1"), Some(EventReason::DeviceOnline), None)).await,
        [e1.id.as_str()]
    );
    assert!(ids(p, by(Some("nobody"), None, None)).await.is_empty());
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
        ..Default::default()
    };
    let got = page(p, &filter, 25, None).await.items;
    assert_eq!(got.len(), 25);
    assert_eq!(got[0].id, events[59].id);
    assert!(got.windows(2).all(|w| w[0].time > w[1].time));
    let by_device = EventFilter {
        device_id: Some("d1".into()),
        ..filter
    };
    let got = page(p, &by_device, 25, None).await.items;
    assert_eq!(got.len(), 25);
    assert_eq!(got[24].id, events[11].id);
}

/// 150 events of 3 devices over six days, newest first: some on either side of
/// midnights, several at the same millisecond.
async fn fleet_over_days(p: &Ports) -> Vec<Event> {
    let mut events: Vec<Event> = (0..150)
        .map(|i| {
            let ms = match i % 5 {
                // At or one millisecond before one of five midnights.
                0 => MIDNIGHT_MS + (i / 30) * DAY_MS,
                1 => MIDNIGHT_MS + (i / 30) * DAY_MS - 1,
                // Pairs at the same time (of different devices).
                _ => MIDNIGHT_MS - DAY_MS + (i / 2) * 3_400_000,
            };
            let reason = if i % 3 == 0 {
                EventReason::CommandSent
            } else {
                EventReason::ReportedPropertiesUpdated
            };
            event(reason, &format!("dev{}", i % 3), ms, &format!("f{i}"))
        })
        .collect();
    p.events().append(&events[..70]).await.unwrap();
    p.events().append(&events[50..]).await.unwrap();
    events.sort_by(|a, b| (b.time, &b.id).cmp(&(a.time, &a.id)));
    events.iter().map(stored).collect()
}

async fn pages_hold_every_event_once_in_order(p: &Ports) {
    let all = fleet_over_days(p).await;
    // Page sizes that split the pages at many places (and keep the AWS run short: a
    // page there reads every shard of its days).
    let filters = [
        (EventFilter::default(), &[13, 1_000][..]),
        (
            EventFilter {
                device_id: Some("dev1".into()),
                ..Default::default()
            },
            &[1, 7, 1_000][..],
        ),
        (
            EventFilter {
                reason: Some(EventReason::CommandSent),
                ..Default::default()
            },
            &[9, 1_000][..],
        ),
    ];
    for (filter, limits) in &filters {
        let want: Vec<&Event> = all.iter().filter(|e| filter.matches(e)).collect();
        for &limit in *limits {
            let got = pages(p, filter, limit).await;
            assert_eq!(
                got.len(),
                want.len().div_ceil(limit).max(1),
                "{filter:?} {limit}"
            );
            let flat: Vec<&Event> = got.iter().flatten().collect();
            assert_eq!(flat, want, "{} {filter:?} by {limit}", p.kind);
            let unique: HashSet<&str> = flat.iter().map(|e| e.id.as_str()).collect();
            assert_eq!(unique.len(), want.len());
        }
    }
}

async fn a_page_token_round_trips_and_a_bad_one_is_refused(p: &Ports) {
    let all = fleet_over_days(p).await;
    let f = EventFilter::default();
    let first = page(p, &f, 40, None).await;
    let token = first.next_token.clone().expect("more than 40");
    let second = page(p, &f, 40, Some(token.clone())).await;
    assert_eq!(
        page(p, &f, 40, Some(token.clone())).await,
        second,
        "same token, same page"
    );
    assert_eq!(second.items, all[40..80]);
    // A token ends a position, not a page size: a larger page goes on from it.
    let rest = page(p, &f, 1_000, Some(token)).await;
    assert_eq!(rest.items, all[40..]);
    assert_eq!(rest.next_token, None);
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    for bad in [
        "%%%".to_string(),
        b64("not json"),
        b64(r#"{"offset": 3}"#),
        b64(r#"{"before": "DEV#x"}"#),
        b64(r#"{"before": "123:x"}"#),
    ] {
        let err = p
            .events()
            .list(
                &f,
                &PageRequest {
                    limit: 10,
                    token: Some(bad.clone()),
                },
            )
            .await
            .expect_err(&bad);
        assert!(
            matches!(err, StoreError::BadPageToken(_)),
            "{} {bad}: {err}",
            p.kind
        );
    }
}

async fn time_ranges_cross_day_and_shard_boundaries(p: &Ports) {
    let all = fleet_over_days(p).await;
    let window = |since: Option<i64>, until: Option<i64>, device: Option<&str>| EventFilter {
        since: since.map(at_ms),
        until: until.map(at_ms),
        device_id: device.map(Into::into),
        ..Default::default()
    };
    let expect =
        |f: &EventFilter| -> Vec<Event> { all.iter().filter(|e| f.matches(e)).cloned().collect() };
    let midnight = MIDNIGHT_MS + DAY_MS;
    for device in [None, Some("dev0")] {
        // Around a midnight: one millisecond before it to one after.
        let f = window(Some(midnight - 1), Some(midnight + 1), device);
        let got: Vec<Event> = pages(p, &f, 4).await.concat();
        assert_eq!(got, expect(&f), "{} {device:?}", p.kind);
        assert!(got.iter().any(|e| e.time == at_ms(midnight)));
        assert!(got.iter().any(|e| e.time == at_ms(midnight - 1)));
        // `until` is exclusive, `since` inclusive: windows tile.
        let before = window(Some(MIDNIGHT_MS - DAY_MS), Some(midnight), device);
        let after = window(Some(midnight), None, device);
        let mut tiled = pages(p, &after, 25).await.concat();
        let early = pages(p, &before, 25).await.concat();
        assert!(early.iter().all(|e| e.time < at_ms(midnight)));
        tiled.extend(early);
        assert_eq!(tiled, expect(&window(None, None, device)));
    }
    // Three days long, read 30 at a time.
    let f = window(Some(MIDNIGHT_MS), Some(MIDNIGHT_MS + 3 * DAY_MS), None);
    assert_eq!(pages(p, &f, 30).await.concat(), expect(&f));
    // An empty window.
    let f = window(Some(midnight + 5), Some(midnight + 5), None);
    assert_eq!(page(p, &f, 10, None).await, Page::last(vec![]));
}

async fn each_event_expires_by_the_retention_of_its_reason(p: &Ports) {
    let t = MIDNIGHT_MS + 12_345;
    let reasons = [
        (EventReason::DeviceOnline, 7),
        (EventReason::DeviceOffline, 7),
        (EventReason::CommandFailed, 90),
        (EventReason::DeviceCreated, 90),
    ];
    let events: Vec<Event> = reasons
        .iter()
        .map(|(r, _)| event(*r, "d1", t, r.as_str()))
        .collect();
    p.events().append(&events).await.unwrap();
    let got = page(p, &EventFilter::default(), 10, None).await.items;
    assert_eq!(got.len(), reasons.len());
    for (reason, days) in reasons {
        let e = got.iter().find(|e| e.reason == reason).expect("listed");
        assert_eq!(
            e.expires_at,
            Some(t / 1_000 + days * 86_400),
            "{} {reason:?}",
            p.kind
        );
    }
}

conformance!(
    append_is_idempotent_and_lists_newest_first,
    many_events_page_through,
    pages_hold_every_event_once_in_order,
    a_page_token_round_trips_and_a_bad_one_is_refused,
    time_ranges_cross_day_and_shard_boundaries,
    each_event_expires_by_the_retention_of_its_reason
);
