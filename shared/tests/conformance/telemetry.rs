//! Telemetry sinks and readers: typed values read back, replays overwrite, series.

use std::sync::Arc;

use mir_shared::{
    ports::{TelemetryQuery, TelemetrySeries},
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
    TelemetryQuery {
        device_id: "d1".into(),
        measure: "schema.v1.Env".into(),
        since_ns,
        limit,
    }
}

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
        p.reader().query(&q(0, 100)).await.unwrap(),
        [r1, r2b.clone(), r3.clone()],
        "{}",
        p.kind
    );
    assert_eq!(
        p.reader().query(&q(1_500, 100)).await.unwrap(),
        [r2b, r3.clone()]
    );
    assert_eq!(p.reader().query(&q(0, 1)).await.unwrap(), [r3]);
    assert!(p.reader().query(&q(10_000, 5)).await.unwrap().is_empty());
    assert_eq!(
        p.reader().series("d1").await.unwrap(),
        [
            TelemetrySeries {
                measure: env.into(),
                count: 3,
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
    assert_eq!(p.reader().query(&q(0, 10)).await.unwrap(), [a, b]);
}

async fn the_extreme_integers_read_back_exactly(p: &Ports) {
    let mut r = record("d1", "schema.v1.Env", 1_000, 1, i64::MIN);
    r.values
        .push((Arc::from("big"), FieldValue::Uint(u64::MAX)));
    r.values
        .push((Arc::from("past"), FieldValue::Uint(i64::MAX as u64 + 1)));
    r.values.push((Arc::from("max"), FieldValue::Int(i64::MAX)));
    p.sink().write(std::slice::from_ref(&r)).await.unwrap();
    let back = p.reader().query(&q(0, 10)).await.unwrap();
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

conformance!(
    writes_read_back_typed_and_replays_overwrite,
    the_same_time_with_another_seq_is_another_point,
    the_extreme_integers_read_back_exactly
);
