//! The Timestream telemetry sink: records in WriteRecords calls of at most 100,
//! rejections reported by index, throttling retried with backoff.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_timestreamwrite::{operation::write_records::WriteRecordsError, types::Record};

use super::{discovery::Endpoint, TimestreamRecord, MAX_RECORDS_PER_WRITE};
use crate::adapters::aws::{backoff, is_retryable_sdk, store_error};
use crate::ports::*;
use crate::telemetry::TelemetryRecord;

/// Attempts of one WriteRecords call under throttling.
const WRITE_ATTEMPTS: u32 = 6;

/// Writes telemetry to a Timestream table.
pub struct TimestreamSink {
    endpoint: Endpoint<aws_sdk_timestreamwrite::Client>,
    database: String,
    table: String,
}

impl std::fmt::Debug for TimestreamSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimestreamSink")
            .field("database", &self.database)
            .field("table", &self.table)
            .finish()
    }
}

impl TimestreamSink {
    /// `discover`: run Timestream's endpoint discovery (AWS); false with an endpoint
    /// override (moto, LocalStack), which is then used as is.
    pub fn new(
        client: aws_sdk_timestreamwrite::Client,
        database: &str,
        table: &str,
        discover: bool,
    ) -> Self {
        Self {
            endpoint: Endpoint::new(client, discover),
            database: database.into(),
            table: table.into(),
        }
    }

    /// Writes one chunk (at most 100 records); `index` maps chunk positions to batch
    /// indexes.
    async fn write_chunk(
        &self,
        records: Vec<Record>,
        index: &[usize],
        report: &mut WriteReport,
    ) -> StoreResult<()> {
        let client = self.endpoint.client().await?;
        let n = records.len();
        for attempt in 1..=WRITE_ATTEMPTS {
            let result = client
                .write_records()
                .database_name(&self.database)
                .table_name(&self.table)
                .set_records(Some(records.clone()))
                .send()
                .await;
            let err = match result {
                Ok(_) => {
                    report.written += n;
                    return Ok(());
                }
                Err(e) => e,
            };
            if let Some(WriteRecordsError::RejectedRecordsException(rej)) = err.as_service_error() {
                let mut rejected = 0;
                for r in rej.rejected_records() {
                    let i = usize::try_from(r.record_index()).unwrap_or(usize::MAX);
                    let mut reason = r.reason().unwrap_or("rejected by Timestream").to_string();
                    if let Some(v) = r.existing_version() {
                        reason.push_str(&format!(" (existing version {v})"));
                    }
                    report.rejected.push(RejectedRecord {
                        index: index.get(i).copied().unwrap_or(i),
                        reason,
                    });
                    rejected += 1;
                }
                // The other records of the call were written.
                report.written += n.saturating_sub(rejected);
                return Ok(());
            }
            if is_retryable_sdk(&err) && attempt < WRITE_ATTEMPTS {
                tracing::debug!(attempt, error = %err, "Timestream WriteRecords throttled; backing off");
                tokio::time::sleep(backoff(
                    attempt,
                    Duration::from_millis(100),
                    Duration::from_secs(5),
                ))
                .await;
                continue;
            }
            return Err(store_error(
                format!("Timestream WriteRecords {}.{}", self.database, self.table),
                err,
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl TelemetrySink for TimestreamSink {
    async fn write(&self, records: &[TelemetryRecord]) -> StoreResult<WriteReport> {
        let mut report = WriteReport::default();
        let mut ready: Vec<(usize, Record)> = Vec::with_capacity(records.len());
        for (index, r) in records.iter().enumerate() {
            match TimestreamRecord::try_from(r) {
                Ok(rec) => ready.push((index, rec.0)),
                Err(e) => report.rejected.push(RejectedRecord {
                    index,
                    reason: e.to_string(),
                }),
            }
        }
        for chunk in ready.chunks(MAX_RECORDS_PER_WRITE) {
            let index: Vec<usize> = chunk.iter().map(|(i, _)| *i).collect();
            let recs: Vec<Record> = chunk.iter().map(|(_, r)| r.clone()).collect();
            self.write_chunk(recs, &index, &mut report).await?;
        }
        report.rejected.sort_by_key(|r| r.index);
        Ok(report)
    }
}
