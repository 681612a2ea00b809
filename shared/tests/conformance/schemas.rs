//! Schemas: put, get, replace, delete; the compressed bytes come back unchanged.

use bytes::Bytes;
use mir_shared::{ports::StoredSchema, testing::at_ms};

use crate::support::Ports;

fn schema(id: &str, bytes: &[u8], ms: i64) -> StoredSchema {
    StoredSchema {
        device_id: id.into(),
        compressed: Bytes::from(mir_shared::schema::compress(bytes)),
        hash: mir_shared::service::schema_hash(bytes),
        package_names: vec!["schema.v1".into(), "mir.device.v1".into()],
        updated_at: at_ms(ms),
    }
}

async fn put_get_replace_delete(p: &Ports) {
    assert!(p.schemas().get("w1").await.unwrap().is_none());
    let s1 = schema("w1", mir_proto::examples::weather::DESCRIPTOR_SET, 1_000);
    p.schemas().put(&s1).await.unwrap();
    assert_eq!(p.schemas().get("w1").await.unwrap(), Some(s1), "{}", p.kind);
    let mut s2 = schema("w1", b"another schema", 2_000);
    s2.package_names.clear();
    p.schemas().put(&s2).await.unwrap();
    assert_eq!(p.schemas().get("w1").await.unwrap(), Some(s2));
    p.schemas().delete("w1").await.unwrap();
    assert!(p.schemas().get("w1").await.unwrap().is_none());
    p.schemas().delete("w1").await.unwrap();
}

conformance!(put_get_replace_delete);
