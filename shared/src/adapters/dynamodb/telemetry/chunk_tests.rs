//! Unit tests of the chunk encoding and keys.

use super::*;

fn point(time_ns: i64, seq: u64, temp: i64) -> TelemetryRecord {
    TelemetryRecord {
        device_id: "d".into(),
        name: "weather".into(),
        namespace: "default".into(),
        measure: Arc::from("schema.v1.Env"),
        time_ns,
        seq,
        tags: vec![(Arc::from("site"), Arc::from("north"))],
        values: vec![
            (Arc::from("temperature"), FieldValue::Int(temp)),
            (Arc::from("humidity"), FieldValue::Double(40.5)),
            (Arc::from("raining"), FieldValue::Bool(false)),
        ],
    }
}

fn round_trip(points: &[TelemetryRecord]) -> Vec<TelemetryRecord> {
    let refs: Vec<&TelemetryRecord> = points.iter().collect();
    let measure: Arc<str> = Arc::from("schema.v1.Env");
    decode_points(&compress(&encode_points(&refs)), "d", &measure).expect("decodes")
}

#[test]
fn points_read_back_exactly_with_their_types_and_shapes() {
    let mut odd = point(-5, u64::MAX, i64::MIN);
    odd.name = "renamed".into();
    odd.tags.clear();
    odd.values = vec![
        (Arc::from("big"), FieldValue::Uint(u64::MAX)),
        (Arc::from("max"), FieldValue::Int(i64::MAX)),
        (Arc::from("three"), FieldValue::Double(3.0)),
        (Arc::from("tiny"), FieldValue::Double(f64::MIN_POSITIVE)),
        (Arc::from("neg0"), FieldValue::Double(-0.0)),
        (Arc::from("yes"), FieldValue::Bool(true)),
        (Arc::from("text"), FieldValue::Text("é \u{0}".into())),
    ];
    let points = vec![point(i64::MIN, 0, 1), odd, point(i64::MAX, 7, -1)];
    let back = round_trip(&points);
    assert_eq!(back, points);
    let FieldValue::Double(neg0) = back[1].values[4].1 else {
        panic!("a double: {:?}", back[1].values[4]);
    };
    assert!(neg0.is_sign_negative(), "the bits are kept");
}

#[test]
fn a_point_of_three_fields_costs_about_ten_bytes_compressed() {
    let points: Vec<TelemetryRecord> = (0..1000)
        .map(|i| {
            point(
                1_700_000_000_000_000_000 + i * 1_000_000_000,
                i as u64,
                20 + i % 5,
            )
        })
        .collect();
    let refs: Vec<&TelemetryRecord> = points.iter().collect();
    let raw = encode_points(&refs);
    let compressed = compress(&raw);
    let per_point = compressed.len() as f64 / 1000.0;
    assert!(raw.len() / 1000 <= 20, "raw {} bytes", raw.len());
    assert!(per_point < 12.0, "{per_point} bytes per point compressed");
}

#[test]
fn the_same_points_hash_the_same_and_other_points_do_not() {
    let a = [point(1, 1, 20), point(2, 2, 21)];
    let b = [point(1, 1, 20), point(2, 2, 22)];
    let enc = |p: &[TelemetryRecord]| encode_points(&p.iter().collect::<Vec<_>>());
    assert_eq!(content_hash(&enc(&a)), content_hash(&enc(&a)));
    assert_ne!(content_hash(&enc(&a)), content_hash(&enc(&b)));
    assert_eq!(content_hash(&enc(&a)).len(), 24);
}

#[test]
fn hours_sort_like_the_times() {
    assert_eq!(hour_of(0), "1970-01-01T00");
    assert_eq!(hour_of(3_600_000_000_000 - 1), "1970-01-01T00");
    assert_eq!(hour_of(-1), "1969-12-31T23");
    assert!(hour_of(i64::MIN) < hour_of(-1));
    assert!(hour_of(-1) < hour_of(0));
    assert!(hour_of(i64::MAX - 1) <= hour_of(i64::MAX));
    assert_eq!(hour_of(i64::MIN).len(), hour_of(i64::MAX).len());
    let item = ChunkItem {
        pk: series_pk("d", "m"),
        sk: format!("{}#abc", hour_of(0)),
        first_ns: 0,
        last_ns: 0,
        written_ns: 0,
        expires_at: 0,
        points: vec![],
    };
    assert_eq!(item.hour(), "1970-01-01T00");
    assert_eq!(item.pk, "TLM#d#m");
}

#[test]
fn a_damaged_chunk_is_refused_with_the_reason() {
    let measure: Arc<str> = Arc::from("m");
    let raw = encode_points(&[&point(1, 1, 1)]);
    let e = decode_points(&compress(&raw[..raw.len() - 3]), "d", &measure).expect_err("short");
    assert!(matches!(e, ChunkError::Truncated), "{e}");
    let mut v2 = raw.clone();
    v2[0] = 2;
    let e = decode_points(&compress(&v2), "d", &measure).expect_err("version");
    assert!(matches!(e, ChunkError::Version(2)), "{e}");
    let mut tag = raw.clone();
    let last_tag = tag.len() - 1;
    tag[last_tag] = 9;
    let e = decode_points(&compress(&tag), "d", &measure).expect_err("tag");
    assert!(matches!(e, ChunkError::Tag(9)), "{e}");
    let e = decode_points(b"not zlib", "d", &measure).expect_err("zlib");
    assert!(matches!(e, ChunkError::Inflate(_)), "{e}");
}
