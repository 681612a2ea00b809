//! Unit tests of the DynamoDB schema item.

use super::*;
use aws_sdk_dynamodb::types::AttributeValue;

#[test]
fn schema_bytes_are_a_binary_attribute() {
    let item = SchemaItem {
        pk: "DEV#d".into(),
        sk: "SCHEMA".into(),
        device_id: "d".into(),
        compressed: vec![1, 2, 3],
        hash: "h".into(),
        package_names: vec![],
        updated_at: Utc::now(),
    };
    let av = encode("s", &item).expect("encodes");
    assert!(matches!(av.get("compressed"), Some(AttributeValue::B(_))));
}
