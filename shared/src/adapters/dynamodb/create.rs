//! Creating a table with the contract key schema (for tests and local endpoints; the
//! CDK app creates them in AWS).

use std::time::Duration;

use aws_sdk_dynamodb::{
    error::ProvideErrorMetadata,
    types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
        Projection, ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
    },
    Client,
};

use super::{table::build_err, GSI1, GSI2};
use crate::adapters::aws::store_error;
use crate::ports::{StoreError, StoreResult};

/// Creates a table with the contract key schema (pk/sk, GSI gsi1 with all attributes,
/// sparse GSI gsi2 with keys only, TTL on expiresAt), unless it exists, and waits until
/// it is active.
pub async fn create_table(client: &Client, name: &str) -> StoreResult<()> {
    let attr = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(build_err)
    };
    let key = |n: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(t)
            .build()
            .map_err(build_err)
    };
    let gsi = GlobalSecondaryIndex::builder()
        .index_name(GSI1)
        .key_schema(key("gsi1pk", KeyType::Hash)?)
        .key_schema(key("gsi1sk", KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .map_err(build_err)?;
    // Sparse: only the items that carry gsi2pk/gsi2sk (online twins, for the presence sweep).
    let gsi2 = GlobalSecondaryIndex::builder()
        .index_name(GSI2)
        .key_schema(key("gsi2pk", KeyType::Hash)?)
        .key_schema(key("gsi2sk", KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::KeysOnly)
                .build(),
        )
        .build()
        .map_err(build_err)?;
    let created = client
        .create_table()
        .table_name(name)
        .attribute_definitions(attr("pk")?)
        .attribute_definitions(attr("sk")?)
        .attribute_definitions(attr("gsi1pk")?)
        .attribute_definitions(attr("gsi1sk")?)
        .attribute_definitions(attr("gsi2pk")?)
        .attribute_definitions(attr("gsi2sk")?)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .global_secondary_indexes(gsi)
        .global_secondary_indexes(gsi2)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) => {}
        Err(e) => return Err(store_error(format!("DynamoDB CreateTable {name}"), e)),
    }
    for attempt in 1..=120u32 {
        let d = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| store_error(format!("DynamoDB DescribeTable {name}"), e))?;
        if d.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            break;
        }
        if attempt == 120 {
            return Err(StoreError::Unavailable {
                message: format!("table {name} did not become active"),
                source: None,
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let ttl = TimeToLiveSpecification::builder()
        .enabled(true)
        .attribute_name("expiresAt")
        .build()
        .map_err(build_err)?;
    match client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(ttl)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        // Already enabled.
        Err(e) if e.message().is_some_and(|m| m.contains("already enabled")) => Ok(()),
        Err(e) => Err(store_error(format!("DynamoDB UpdateTimeToLive {name}"), e)),
    }
}
