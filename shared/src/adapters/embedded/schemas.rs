//! Device schemas in the embedded store: `schemas` (id -> stored schema).

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::store::{get_json, to_json, unavailable, EmbeddedStore, SCHEMAS};
use crate::ports::*;

#[derive(Serialize, Deserialize)]
struct SchemaRow {
    compressed: Vec<u8>,
    hash: String,
    package_names: Vec<String>,
    updated_at: DateTime<Utc>,
}

#[async_trait]
impl SchemaStore for EmbeddedStore {
    async fn get(&self, device_id: &str) -> StoreResult<Option<StoredSchema>> {
        let id = device_id.to_string();
        self.reading(move |tx| {
            let t = tx.open_table(SCHEMAS).map_err(unavailable)?;
            let row: Option<SchemaRow> = get_json(&t, &id)?;
            Ok(row.map(|row| StoredSchema {
                device_id: id,
                compressed: Bytes::from(row.compressed),
                hash: row.hash,
                package_names: row.package_names,
                updated_at: row.updated_at,
            }))
        })
        .await
    }

    async fn put(&self, schema: &StoredSchema) -> StoreResult<()> {
        let id = schema.device_id.clone();
        let bytes = to_json(&SchemaRow {
            compressed: schema.compressed.to_vec(),
            hash: schema.hash.clone(),
            package_names: schema.package_names.clone(),
            updated_at: schema.updated_at,
        })?;
        self.writing(move |tx| {
            tx.open_table(SCHEMAS)
                .map_err(unavailable)?
                .insert(id.as_str(), bytes.as_slice())
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn delete(&self, device_id: &str) -> StoreResult<()> {
        let id = device_id.to_string();
        self.writing(move |tx| {
            tx.open_table(SCHEMAS)
                .map_err(unavailable)?
                .remove(id.as_str())
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }
}
