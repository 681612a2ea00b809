//! Creating a Timestream database and table (for local endpoints and tests).

use crate::adapters::aws::store_error;
use crate::ports::{StoreError, StoreResult};

/// Creates a database and a table with magnetic store writes enabled (late replays),
/// unless they exist. For bootstrapping a local endpoint and for tests; the CDK app
/// creates them in AWS.
pub async fn create_database_and_table(
    client: &aws_sdk_timestreamwrite::Client,
    database: &str,
    table: &str,
) -> StoreResult<()> {
    match client
        .create_database()
        .database_name(database)
        .send()
        .await
    {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_conflict_exception()) => {}
        Err(e) => {
            return Err(store_error(
                format!("Timestream CreateDatabase {database}"),
                e,
            ))
        }
    }
    let retention = aws_sdk_timestreamwrite::types::RetentionProperties::builder()
        .memory_store_retention_period_in_hours(24)
        .magnetic_store_retention_period_in_days(365)
        .build()
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let magnetic = aws_sdk_timestreamwrite::types::MagneticStoreWriteProperties::builder()
        .enable_magnetic_store_writes(true)
        .build()
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    match client
        .create_table()
        .database_name(database)
        .table_name(table)
        .retention_properties(retention)
        .magnetic_store_write_properties(magnetic)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_conflict_exception()) =>
        {
            Ok(())
        }
        Err(e) => Err(store_error(
            format!("Timestream CreateTable {database}.{table}"),
            e,
        )),
    }
}
