//! Unit tests of the DynamoDB telemetry items.

use aws_sdk_dynamodb::types::AttributeValue;

use super::*;
use crate::adapters::dynamodb::table::decode;

#[test]
fn a_chunk_item_converts_through_serde_dynamo_with_its_points_as_binary() {
    let item = ChunkItem {
        pk: series_pk("d", "a.B"),
        sk: format!("{}#00ff", hour_of(5)),
        first_ns: 5,
        last_ns: 9,
        written_ns: 10,
        expires_at: 1_800_000_000,
        points: vec![1, 2, 3],
    };
    let attrs = encode("chunk", &item).expect("encodes");
    assert!(matches!(attrs.get("pk"), Some(AttributeValue::S(s)) if s == "TLM#d#a.B"));
    assert!(matches!(attrs.get("points"), Some(AttributeValue::B(b)) if b.as_ref() == [1, 2, 3]));
    assert!(matches!(attrs.get("expiresAt"), Some(AttributeValue::N(n)) if n == "1800000000"));
    let back: ChunkItem = decode("chunk", attrs).expect("decodes");
    assert_eq!(back, item);
}

#[test]
fn a_double_that_is_not_finite_is_refused_with_its_name() {
    let r = TelemetryRecord {
        device_id: "d".into(),
        name: "n".into(),
        namespace: "ns".into(),
        measure: Arc::from("m"),
        time_ns: 5,
        seq: 2,
        tags: vec![],
        values: vec![(Arc::from("speed"), FieldValue::Double(f64::NAN))],
    };
    assert_eq!(
        unstorable(&r).as_deref(),
        Some("measure speed is not a finite number, which DynamoDB cannot store")
    );
}

fn sink() -> DynamoTelemetry {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .build();
    DynamoTelemetry::new(Client::from_conf(config), "t", chrono::Duration::days(2))
}

/// `n` letters that do not compress much.
fn noise(n: usize) -> String {
    let mut x: u64 = 88172645463325252;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'!' + (x % 90) as u8)
        })
        .collect()
}

#[test]
fn a_group_too_big_for_one_item_is_split_and_each_chunk_expires_after_the_retention() {
    let records: Vec<TelemetryRecord> = (0..6)
        .map(|i| TelemetryRecord {
            device_id: "d".into(),
            name: "n".into(),
            namespace: "ns".into(),
            measure: Arc::from("m"),
            time_ns: i,
            seq: i as u64,
            tags: vec![],
            values: vec![(Arc::from("text"), FieldValue::Text(noise(100 * 1024)))],
        })
        .collect();
    let group: Vec<(usize, &TelemetryRecord, Vec<usize>)> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (i, r, vec![i]))
        .collect();
    let now = chrono::Utc::now();
    let (mut out, mut rejected) = (Vec::new(), Vec::new());
    sink().chunks(&group, now, &mut out, &mut rejected);
    assert_eq!(rejected, []);
    assert!(out.len() >= 2, "{} chunks", out.len());
    assert!(out.iter().all(|p| p.item.points.len() <= MAX_CHUNK_BYTES));
    let indexes: Vec<usize> = out.iter().flat_map(|p| p.indexes.clone()).collect();
    assert_eq!(indexes, [0, 1, 2, 3, 4, 5]);
    let two_days = (now + chrono::Duration::days(2)).timestamp();
    assert!(out.iter().all(|p| p.item.expires_at == two_days));
    let keys: std::collections::HashSet<&str> = out.iter().map(|p| p.item.sk.as_str()).collect();
    assert_eq!(keys.len(), out.len(), "each chunk its own key");
}
