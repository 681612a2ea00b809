//! Device schemas on DynamoDB: one item per device, the compressed descriptor set as a
//! Binary attribute.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::table::{decode, encode, Key, Table};
use super::MAX_ITEM_BYTES;
use crate::ports::*;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaItem {
    pk: String,
    sk: String,
    device_id: String,
    /// zlib-compressed FileDescriptorSet, stored as Binary.
    #[serde(with = "serde_bytes")]
    compressed: Vec<u8>,
    hash: String,
    #[serde(default)]
    package_names: Vec<String>,
    updated_at: DateTime<Utc>,
}

fn schema_key(id: &str) -> Key {
    Key::new(format!("DEV#{id}"), "SCHEMA")
}

/// Device schemas on DynamoDB (compressed bytes as a Binary attribute).
#[derive(Clone, Debug)]
pub struct DynamoSchemaStore {
    table: Table,
}

impl DynamoSchemaStore {
    pub fn new(client: Client, table: &str) -> Self {
        Self {
            table: Table::new(client, table),
        }
    }
}

#[async_trait]
impl SchemaStore for DynamoSchemaStore {
    async fn get(&self, device_id: &str) -> StoreResult<Option<StoredSchema>> {
        let Some(item) = self.table.get(&schema_key(device_id)).await? else {
            return Ok(None);
        };
        let s: SchemaItem = decode("schema", item)?;
        Ok(Some(StoredSchema {
            device_id: s.device_id,
            compressed: Bytes::from(s.compressed),
            hash: s.hash,
            package_names: s.package_names,
            updated_at: s.updated_at,
        }))
    }

    async fn put(&self, schema: &StoredSchema) -> StoreResult<()> {
        let size =
            schema.compressed.len() + schema.package_names.iter().map(String::len).sum::<usize>();
        if size > MAX_ITEM_BYTES - 1024 {
            return Err(StoreError::TooLarge(format!(
                "schema of {} is {size} bytes compressed; DynamoDB stores at most {MAX_ITEM_BYTES} per item",
                schema.device_id
            )));
        }
        let key = schema_key(&schema.device_id);
        let item = SchemaItem {
            pk: key.pk,
            sk: key.sk,
            device_id: schema.device_id.clone(),
            compressed: schema.compressed.to_vec(),
            hash: schema.hash.clone(),
            package_names: schema.package_names.clone(),
            updated_at: schema.updated_at,
        };
        self.table
            .put_item(encode("schema", &item)?, None, false)
            .await?;
        Ok(())
    }

    async fn delete(&self, device_id: &str) -> StoreResult<()> {
        self.table.delete_item(&schema_key(device_id)).await
    }
}

#[cfg(test)]
#[path = "schemas_tests.rs"]
mod tests;
