//! Telemetry sinks and readers: typed values read back, replays overwrite, series,
//! windows paged across the DynamoDB sink's hour chunks, out-of-order and duplicate
//! points, big batches, 20,000 points of one device, retention.

use std::sync::Arc;

use mir_shared::{
    domain::Page,
    ports::{StoreError, TelemetryQuery, TelemetrySeries},
    telemetry::{FieldValue, TelemetryRecord},
};

use crate::support::Ports;

pub fn record(device: &str, measure: &str, time_ns: i64, seq: u64, temp: i64) -> TelemetryRecord {
    TelemetryRecord {
        device_id: device.into(),
        name: format!("{device}-name"),
        namespace: "default".into(),
        measure: Arc::from(measure),
        time_ns,
        seq,
        tags: vec![(Arc::from("site"), Arc::from("north"))],
        values: vec![
            (Arc::from("temperature"), FieldValue::Int(temp)),
            (Arc::from("windSpeed"), FieldValue::Double(3.0)),
            (Arc::from("raining"), FieldValue::Bool(true)),
            (Arc::from("station"), FieldValue::Text("roof".into())),
            (Arc::from("nested.depth"), FieldValue::Double(-0.25)),
        ],
    }
}

fn q(since_ns: i64, limit: usize) -> TelemetryQuery {
    TelemetryQuery::new("d1", "schema.v1.Env", since_ns).limit(limit)
}

/// One page's points.
async fn points(p: &Ports, query: &TelemetryQuery) -> Vec<TelemetryRecord> {
    p.reader().query(query).await.unwrap().items
}

/// Every page of `query`: the points in order and the number of pages.
async fn every_page(p: &Ports, query: &TelemetryQuery) -> (Vec<TelemetryRecord>, usize) {
    let mut query = query.clone();
    let mut out = Vec::new();
    let mut pages = 0;
    loop {
        let Page { items, next_token } = p.reader().query(&query).await.unwrap();
        pages += 1;
        out.extend(items);
        match next_token {
            Some(t) => query = query.after(Some(t)),
            None => return (out, pages),
        }
        assert!(pages < 10_000, "{}: the pages do not end", p.kind);
    }
}

const HOUR: i64 = 3_600_000_000_000;
/// 2025-01-01T00:00:00Z, in nanoseconds.
const T0: i64 = 1_735_689_600_000_000_000;

async fn writes_read_back_typed_and_replays_overwrite(p: &Ports) {
    let env = "schema.v1.Env";
    let r1 = record("d1", env, 1_000, 1, 20);
    let r2 = record("d1", env, 2_000, 2, 21);
    let r3 = record("d1", env, 3_000, 3, 22);
    let other = record("d1", "schema.v1.Other", 500, 4, 0);
    let elsewhere = record("d2", env, 1_000, 1, 0);
    let rep = p.sink().write(&[r1.clone(), r2.clone()]).await.unwrap();
    assert_eq!((rep.written, rep.rejected.len()), (2, 0));
    let mut r2b = r2.clone();
    r2b.values[0].1 = FieldValue::Int(99);
    let rep = p
        .sink()
        .write(&[r2b.clone(), r3.clone(), other, elsewhere])
        .await
        .unwrap();
    assert_eq!((rep.written, rep.rejected.len()), (4, 0));
    // The replay of r1 (same time and seq) changes nothing.
    p.sink().write(std::slice::from_ref(&r1)).await.unwrap();
    assert_eq!(
        points(p, &q(0, 100)).await,
        [r1, r2b.clone(), r3.clone()],
        "{}",
        p.kind
    );
    assert_eq!(points(p, &q(1_500, 100)).await, [r2b, r3.clone()]);
    assert_eq!(points(p, &q(0, 1).newest_first()).await, [r3]);
    assert!(points(p, &q(10_000, 5)).await.is_empty());
}

async fn series_count_each_point_once_and_a_redelivered_batch_once(p: &Ports) {
    let env = "schema.v1.Env";
    let batch = [
        record("d1", env, 1_000, 1, 20),
        record("d1", env, 2_000, 2, 21),
    ];
    p.sink().write(&batch).await.unwrap();
    p.sink()
        .write(&[
            record("d1", env, 3_000, 3, 22),
            record("d1", "schema.v1.Other", 500, 4, 0),
        ])
        .await
        .unwrap();
    // An older batch does not move the last time back; a redelivery counts nothing.
    p.sink()
        .write(&[record("d1", env, 10, 9, 1)])
        .await
        .unwrap();
    p.sink().write(&batch).await.unwrap();
    assert_eq!(
        p.reader().series("d1").await.unwrap(),
        [
            TelemetrySeries {
                measure: env.into(),
                count: 4,
                last_time_ns: 3_000
            },
            TelemetrySeries {
                measure: "schema.v1.Other".into(),
                count: 1,
                last_time_ns: 500
            },
        ],
        "{}",
        p.kind
    );
    assert!(p.reader().series("nobody").await.unwrap().is_empty());
}

async fn the_same_time_with_another_seq_is_another_point(p: &Ports) {
    let a = record("d1", "schema.v1.Env", 1_000, 1, 1);
    let b = record("d1", "schema.v1.Env", 1_000, 2, 2);
    p.sink().write(&[a.clone(), b.clone()]).await.unwrap();
    assert_eq!(points(p, &q(0, 10)).await, [a, b]);
}

async fn the_extreme_integers_read_back_exactly(p: &Ports) {
    let mut r = record("d1", "schema.v1.Env", 1_000, 1, i64::MIN);
    r.values
        .push((Arc::from("big"), FieldValue::Uint(u64::MAX)));
    r.values
        .push((Arc::from("past"), FieldValue::Uint(i64::MAX as u64 + 1)));
    r.values.push((Arc::from("max"), FieldValue::Int(i64::MAX)));
    p.sink().write(std::slice::from_ref(&r)).await.unwrap();
    let back = points(p, &q(0, 10)).await;
    assert_eq!(back, [r], "{}", p.kind);
    let json: Vec<String> = back[0]
        .values
        .iter()
        .map(|(_, v)| v.to_json().to_string())
        .collect();
    assert!(
        json.contains(&"18446744073709551615".to_string()),
        "{json:?}"
    );
    assert!(
        json.contains(&"9223372036854775808".to_string()),
        "{json:?}"
    );
    assert!(
        json.contains(&"-9223372036854775808".to_string()),
        "{json:?}"
    );
}

/// Ten points a quarter of an hour apart, from 00:30 to 02:45: three hours.
fn across_hours() -> Vec<TelemetryRecord> {
    (0..10)
        .map(|i| {
            record(
                "d1",
                "schema.v1.Env",
                T0 + HOUR / 2 + i * HOUR / 4,
                i as u64,
                i,
            )
        })
        .collect()
}

async fn a_window_reads_across_hour_boundaries_page_by_page(p: &Ports) {
    let all = across_hours();
    p.sink().write(&all).await.unwrap();
    // From 01:00 (inclusive) to 02:30 (exclusive): the points of 01:00 to 02:15.
    let window = q(T0 + HOUR, 3).until(T0 + 2 * HOUR + HOUR / 2);
    let (got, pages) = every_page(p, &window).await;
    assert_eq!(got, all[2..8], "{}", p.kind);
    assert_eq!(pages, 2, "6 points in pages of 3: {}", p.kind);
    let (back, _) = every_page(p, &window.clone().newest_first()).await;
    assert_eq!(back, all[2..8].iter().rev().cloned().collect::<Vec<_>>());
    // Pages of one, either way, over everything.
    let (one_by_one, pages) = every_page(p, &q(0, 1)).await;
    assert_eq!((one_by_one, pages), (all.clone(), 10));
    let (newest, pages) = every_page(p, &q(0, 4).newest_first()).await;
    assert_eq!(newest, all.iter().rev().cloned().collect::<Vec<_>>());
    assert_eq!(pages, 3);
    // A window between two points, and one that ends where it starts.
    assert!(
        points(p, &q(T0 + HOUR / 2 + 1, 10).until(T0 + HOUR / 2 + HOUR / 4))
            .await
            .is_empty()
    );
    assert!(points(p, &q(T0, 10).until(T0)).await.is_empty());
}

async fn out_of_order_and_duplicate_points_come_back_once_in_order(p: &Ports) {
    let all = across_hours();
    let pick =
        |i: &[usize]| -> Vec<TelemetryRecord> { i.iter().map(|&i| all[i].clone()).collect() };
    // Out of order within a batch and across hours, a point twice in one batch.
    p.sink().write(&pick(&[7, 2, 9, 2, 4])).await.unwrap();
    // Late points into hours that already have chunks, and points of the first batch
    // again in another batch.
    p.sink().write(&pick(&[3, 0, 9, 7, 1])).await.unwrap();
    p.sink().write(&pick(&[8, 6, 5, 4, 2])).await.unwrap();
    // The first batch delivered again.
    p.sink().write(&pick(&[7, 2, 9, 2, 4])).await.unwrap();
    assert_eq!(points(p, &q(0, 100)).await, all, "{}", p.kind);
    for limit in [1, 2, 3, 7] {
        let (got, _) = every_page(p, &q(0, limit)).await;
        assert_eq!(got, all, "pages of {limit}: {}", p.kind);
        let (back, _) = every_page(p, &q(0, limit).newest_first()).await;
        assert_eq!(back, all.iter().rev().cloned().collect::<Vec<_>>());
    }
}

/// Letters that do not compress: `n` of them from a small generator.
pub fn noise(n: usize, seed: u64) -> String {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'!' + (x % 90) as u8)
        })
        .collect()
}

async fn a_batch_too_big_for_one_item_is_stored_in_several(p: &Ports) {
    // Six points of 100 KB of text each: more than one DynamoDB item holds.
    let big: Vec<TelemetryRecord> = (0..6)
        .map(|i| {
            let mut r = record("d1", "schema.v1.Env", 1_000 + i, i as u64, i);
            r.values[3].1 = FieldValue::Text(noise(100 * 1024, i as u64 + 1));
            r
        })
        .collect();
    let rep = p.sink().write(&big).await.unwrap();
    assert_eq!((rep.written, rep.rejected), (6, vec![]), "{}", p.kind);
    assert_eq!(every_page(p, &q(0, 4)).await.0, big, "{}", p.kind);
}

async fn twenty_thousand_points_of_one_device_read_back_exactly(p: &Ports) {
    // One point a second for 20,000 s (six hours), written in batches of 500.
    let all: Vec<TelemetryRecord> = (0..20_000)
        .map(|i| record("d1", "schema.v1.Env", T0 + i * 1_000_000_000, i as u64, i))
        .collect();
    for batch in all.chunks(500) {
        let rep = p.sink().write(batch).await.unwrap();
        assert_eq!((rep.written, rep.rejected.len()), (500, 0));
    }
    let (got, pages) = every_page(p, &q(0, 10_000)).await;
    assert_eq!(pages, 2, "{}", p.kind);
    assert!(
        got == all,
        "{}: {} points, not the 20,000 written",
        p.kind,
        got.len()
    );
    let (back, pages) = every_page(p, &q(0, 7_000).newest_first()).await;
    assert_eq!(pages, 3);
    assert!(back.iter().rev().eq(all.iter()), "{}", p.kind);
    assert_eq!(p.reader().series("d1").await.unwrap()[0].count, 20_000);
}

async fn a_token_that_is_not_a_cursor_is_a_bad_page_token(p: &Ports) {
    let e = p
        .reader()
        .query(&q(0, 10).after(Some("bm90LWEtY3Vyc29y".into())))
        .await
        .expect_err("not ours");
    assert!(
        matches!(&e, StoreError::BadPageToken(t) if t.0.starts_with("not a position")),
        "{}: {e}",
        p.kind
    );
}

conformance!(
    writes_read_back_typed_and_replays_overwrite,
    series_count_each_point_once_and_a_redelivered_batch_once,
    the_same_time_with_another_seq_is_another_point,
    the_extreme_integers_read_back_exactly,
    a_window_reads_across_hour_boundaries_page_by_page,
    out_of_order_and_duplicate_points_come_back_once_in_order,
    a_batch_too_big_for_one_item_is_stored_in_several,
    twenty_thousand_points_of_one_device_read_back_exactly,
    a_token_that_is_not_a_cursor_is_a_bad_page_token,
);

/// The embedded store's retention: points older than it go when the store is pruned,
/// and leave the series count.
#[tokio::test]
async fn the_embedded_store_prunes_points_older_than_the_telemetry_retention() {
    use mir_shared::adapters::embedded::Retention;
    let dir = tempfile::tempdir().unwrap();
    let store =
        mir_shared::adapters::embedded::EmbeddedStore::open(&dir.path().join("t.redb")).unwrap();
    let now = chrono::Utc::now();
    let ago = |days: i64| {
        (now - chrono::Duration::days(days))
            .timestamp_nanos_opt()
            .unwrap()
    };
    let env = "schema.v1.Env";
    let old = record("d1", env, ago(10), 1, 1);
    let recent = record("d1", env, ago(2), 2, 2);
    let gone = record("d1", "schema.v1.Other", ago(20), 3, 3);
    use mir_shared::ports::{TelemetryReader, TelemetrySink};
    store.write(&[old, recent.clone(), gone]).await.unwrap();
    let retention = Retention {
        telemetry: chrono::Duration::days(5),
        ..Retention::default()
    };
    assert_eq!(store.prune(now, retention).await.unwrap(), 2);
    assert_eq!(store.query(&q(0, 10)).await.unwrap().items, [recent]);
    assert_eq!(
        store.series("d1").await.unwrap(),
        [TelemetrySeries {
            measure: env.into(),
            count: 1,
            last_time_ns: ago(2),
        }],
        "the series without points left goes"
    );
}
