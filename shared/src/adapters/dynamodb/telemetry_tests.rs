//! Unit tests of the DynamoDB telemetry items.

use super::*;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::adapters::dynamodb::table::decode;

#[test]
fn point_sort_keys_order_like_the_numbers() {
    assert!(point_sk(-5, 0) < point_sk(0, 0));
    assert!(point_sk(9, 0) < point_sk(10, 0));
    assert!(point_sk(10, 2) < point_sk(10, 11));
    assert!(point_sk(i64::MAX, u64::MAX) > point_sk(i64::MAX - 1, 0));
}

#[test]
fn items_convert_through_serde_dynamo_and_keep_value_types() {
    let r = TelemetryRecord {
        device_id: "d".into(),
        name: "n".into(),
        namespace: "ns".into(),
        measure: Arc::from("a.B"),
        time_ns: 5,
        seq: 2,
        tags: vec![(Arc::from("k"), Arc::from("v"))],
        values: vec![
            (Arc::from("d"), FieldValue::Double(3.0)),
            (Arc::from("i"), FieldValue::Int(3)),
            (Arc::from("b"), FieldValue::Bool(true)),
            (Arc::from("s"), FieldValue::Text("x".into())),
        ],
    };
    let item = encode("p", &PointItem::try_from(&r).expect("converts")).expect("encodes");
    assert!(matches!(item.get("pk"), Some(AttributeValue::S(s)) if s == "TLM#d#a.B"));
    let back: PointItem = decode("p", item).expect("decodes");
    assert_eq!(TelemetryRecord::from(back), r);
    let mut nan = r.clone();
    nan.values[0].1 = FieldValue::Double(f64::NAN);
    let e = PointItem::try_from(&nan).expect_err("NaN refused");
    assert!(
        matches!(&e, StoreError::Corrupt(m) if m.contains("is not a finite number")),
        "{e}"
    );
}
