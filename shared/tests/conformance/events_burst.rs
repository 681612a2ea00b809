//! A burst of 5,000 events of one day on the DynamoDB adapter: the items spread over the
//! day's shards (read raw from the table), and pages by time range and by device hold
//! each of them exactly once, newest first.

use std::{
    collections::{BTreeMap, HashSet},
    time::Instant,
};

use mir_shared::{
    adapters::dynamodb::{aws_sdk_dynamodb, EVENT_SHARDS},
    domain::{Event, EventFilter, EventReason, Page, PageRequest},
    ports::EventStore,
    testing::at_ms,
};

use crate::support::{aws_env, note};

const BURST: usize = 5_000;
const DEVICES: usize = 8;
/// 2023-11-14T00:00:00Z.
const DAY_START_MS: i64 = 1_699_920_000_000;

/// Every page of `filter`, `limit` at a time, flattened.
async fn read_all(events: &dyn EventStore, filter: &EventFilter, limit: usize) -> Vec<Event> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let Page { items, next_token } = events
            .list(filter, &PageRequest { limit, token })
            .await
            .unwrap();
        out.extend(items);
        match next_token {
            Some(t) => token = Some(t),
            None => return out,
        }
    }
}

/// The events `pk` and top-level `expiresAt` of every item of `table` (a raw scan).
async fn raw_items(client: &aws_sdk_dynamodb::Client, table: &str) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        for item in page.items() {
            let pk = item.get("pk").and_then(|v| v.as_s().ok()).cloned();
            let expires = item
                .get("expiresAt")
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<i64>().ok());
            if let (Some(pk), Some(expires)) = (pk, expires) {
                out.push((pk, expires));
            }
        }
        start = page.last_evaluated_key;
        if start.is_none() {
            return out;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS-compatible endpoint in MIR_TEST_AWS_ENDPOINT (scripts/moto.sh start); run with --include-ignored"]
async fn a_burst_of_one_day_spreads_over_the_shards_and_reads_back_once_each() {
    let env = aws_env().await;
    let events = env.ports.events().unwrap();
    let table = env.config.events_table.clone().unwrap();
    let burst: Vec<Event> = (0..BURST)
        .map(|i| {
            let reason = if i % 4 == 0 {
                EventReason::DeviceOnline
            } else {
                EventReason::ReportedPropertiesUpdated
            };
            // Spread over the day, 17 s apart, a few at the same millisecond.
            let ms = DAY_START_MS + (i as i64 / 2) * 17_000;
            Event::new(
                reason,
                &format!("dev{:02}", i % DEVICES),
                at_ms(ms),
                &format!("b{i}"),
                "burst",
            )
        })
        .collect();

    let started = Instant::now();
    events.append(&burst).await.unwrap();
    let wrote = started.elapsed();
    note(&format!("events burst: {BURST} appended in {wrote:?}"));
    assert!(wrote.as_secs() < 60, "{wrote:?}");

    let raw = raw_items(&aws_sdk_dynamodb::Client::new(&env.sdk), &table).await;
    let mut per_pk: BTreeMap<&str, usize> = BTreeMap::new();
    for (pk, _) in raw.iter().filter(|(pk, _)| pk.starts_with("DAY#")) {
        *per_pk.entry(pk.as_str()).or_default() += 1;
    }
    let counts: Vec<usize> = per_pk.values().copied().collect();
    note(&format!("events burst: items per partition {per_pk:?}"));
    assert_eq!(counts.iter().sum::<usize>(), BURST);
    assert_eq!(per_pk.len(), EVENT_SHARDS as usize);
    assert!(per_pk.keys().all(|pk| pk.starts_with("DAY#2023-11-14#")));
    let mean = BURST / per_pk.len();
    assert!(counts.iter().all(|c| *c <= 2 * mean), "{counts:?}");
    // One directory item besides the events, with the longest retention.
    let others: Vec<&(String, i64)> = raw
        .iter()
        .filter(|(pk, _)| !pk.starts_with("DAY#"))
        .collect();
    assert_eq!(others.len(), 1, "{others:?}");
    assert_eq!(others[0].0, "DAYS");
    // expiresAt per reason: 7 days for presence, 90 for the others.
    let expiries: HashSet<i64> = raw
        .iter()
        .filter(|(pk, _)| pk.starts_with("DAY#"))
        .map(|(_, x)| *x - (DAY_START_MS / 1_000))
        .map(|x| x / 86_400)
        .collect();
    assert_eq!(
        expiries,
        HashSet::from([7, 90]),
        "days after the day's start"
    );

    let mut newest_first: Vec<&Event> = burst.iter().collect();
    newest_first.sort_by(|a, b| (b.time, &b.id).cmp(&(a.time, &a.id)));
    let want: Vec<&str> = newest_first.iter().map(|e| e.id.as_str()).collect();
    let started = Instant::now();
    let day = EventFilter {
        since: Some(at_ms(DAY_START_MS)),
        until: Some(at_ms(DAY_START_MS + 86_400_000)),
        ..Default::default()
    };
    let got = read_all(events, &day, 1_000).await;
    let got: Vec<&str> = got.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(got, want, "the day, newest first, each once");
    note(&format!(
        "events burst: the day read in pages of 1,000 in {:?}",
        started.elapsed()
    ));
    let late = EventFilter {
        since: Some(at_ms(DAY_START_MS + 10 * 3_600_000)),
        ..day.clone()
    };
    let got = read_all(events, &late, 300).await;
    let got: Vec<&str> = got.iter().map(|e| e.id.as_str()).collect();
    let evening: Vec<&str> = newest_first
        .iter()
        .filter(|e| late.matches(e))
        .map(|e| e.id.as_str())
        .collect();
    assert!(!evening.is_empty() && evening.len() < BURST);
    assert_eq!(got, evening);
    note(&format!(
        "events burst: and from 10:00 in pages of 300 at {:?}",
        started.elapsed()
    ));
    let mut by_device = 0;
    for d in 0..DEVICES {
        let f = EventFilter {
            device_id: Some(format!("dev{d:02}")),
            ..day.clone()
        };
        let got = read_all(events, &f, 250).await;
        let ids: Vec<&str> = got.iter().map(|e| e.id.as_str()).collect();
        let mine: Vec<&str> = newest_first
            .iter()
            .filter(|e| f.matches(e))
            .map(|e| e.id.as_str())
            .collect();
        assert_eq!(ids, mine, "dev{d:02}");
        by_device += ids.len();
    }
    assert_eq!(by_device, BURST);
    note(&format!(
        "events burst: and every device in pages of 250 at {:?}",
        started.elapsed()
    ));
}
