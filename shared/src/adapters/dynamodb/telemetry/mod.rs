//! Telemetry on DynamoDB (the sink and reader for accounts without Timestream): points
//! in chunks, one item per (device, message, hour) of each batch, and a summary item
//! per series.
//!
//! Writing a batch of N points of one message within one hour costs one PutItem of
//! the chunk (one write unit per KB: about 20 bytes per point compressed) and one
//! UpdateItem of the series summary (two when the batch is older than the newest
//! point stored). A chunk's sort key is its hour and the hash of its content, so the
//! same batch delivered twice writes the same item again and is not counted again;
//! nothing is ever appended to an existing item. A batch is split into several chunks
//! when one would pass [`chunk::MAX_CHUNK_BYTES`] compressed (a point that alone does
//! is rejected). Every chunk gets `expiresAt` (the table's TTL) the retention after it
//! was written, the summary too (renewed by every write).
//!
//! Reading a window is one Query of the series' partition over the hours of the window
//! (see `reader`): a page costs the size of the chunks of the hours it covers, not one
//! read per point.
//!
//! Files: `chunk` (the item and the points' binary encoding), `reader` (the query),
//! unit tests in `tests` and `chunk_tests`.

mod chunk;
mod reader;

use std::{collections::BTreeMap, sync::Arc};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use futures::{stream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use self::chunk::{
    compress, content_hash, encode_points, hour_of, series_pk, ChunkItem, MAX_CHUNK_BYTES,
};
use super::table::{decode_all, encode, values, Key, Table, Written};
use crate::domain::Page;
use crate::ports::*;
use crate::telemetry::{FieldValue, TelemetryRecord};

/// Chunk writes (and summary updates) of one batch in flight at once.
const CONCURRENT_WRITES: usize = 8;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SeriesItem {
    pk: String,
    sk: String,
    measure: String,
    #[serde(default)]
    count: u64,
    #[serde(default)]
    last_time_ns: i64,
}

fn series_key(device: &str, measure: &str) -> Key {
    Key::new(format!("SERIES#{device}"), measure)
}

/// Telemetry on a DynamoDB table: chunks of points, a summary item per series.
#[derive(Clone, Debug)]
pub struct DynamoTelemetry {
    table: Table,
    retention: chrono::Duration,
}

/// A chunk to write, with the batch indexes of the records in it.
struct Pending {
    item: ChunkItem,
    indexes: Vec<usize>,
    /// Distinct points in the chunk.
    points: u64,
    device: String,
    measure: String,
}

/// Why a record is refused before anything is written.
fn unstorable(r: &TelemetryRecord) -> Option<String> {
    r.values
        .iter()
        .find(|(_, v)| matches!(v, FieldValue::Double(d) if !d.is_finite()))
        .map(|(name, _)| {
            format!("measure {name} is not a finite number, which DynamoDB cannot store")
        })
}

impl DynamoTelemetry {
    /// Chunks expire `retention` after they are written (the table's TTL).
    pub fn new(client: Client, table: &str, retention: chrono::Duration) -> Self {
        Self {
            table: Table::new(client, table),
            retention,
        }
    }

    /// The chunks of `group` (records of one series and hour, sorted by (time, seq),
    /// each (time, seq) once), split so that each stays under [`MAX_CHUNK_BYTES`];
    /// a record that alone does not is refused into `rejected`.
    fn chunks(
        &self,
        group: &[(usize, &TelemetryRecord, Vec<usize>)],
        now: chrono::DateTime<chrono::Utc>,
        out: &mut Vec<Pending>,
        rejected: &mut Vec<RejectedRecord>,
    ) {
        let Some((_, first, _)) = group.first() else {
            return;
        };
        let points: Vec<&TelemetryRecord> = group.iter().map(|(_, r, _)| *r).collect();
        let raw = encode_points(&points);
        let compressed = compress(&raw);
        if compressed.len() > MAX_CHUNK_BYTES {
            if group.len() == 1 {
                for &index in &group[0].2 {
                    rejected.push(RejectedRecord {
                        index,
                        reason: format!(
                            "the point is {} bytes compressed; a DynamoDB telemetry chunk holds at most {MAX_CHUNK_BYTES}",
                            compressed.len()
                        ),
                    });
                }
                return;
            }
            let (a, b) = group.split_at(group.len() / 2);
            self.chunks(a, now, out, rejected);
            self.chunks(b, now, out, rejected);
            return;
        }
        let last = points.last().map_or(first.time_ns, |r| r.time_ns);
        out.push(Pending {
            item: ChunkItem {
                pk: series_pk(&first.device_id, &first.measure),
                sk: format!("{}#{}", hour_of(first.time_ns), content_hash(&raw)),
                first_ns: first.time_ns,
                last_ns: last,
                written_ns: now.timestamp_nanos_opt().unwrap_or(i64::MAX),
                expires_at: (now + self.retention).timestamp(),
                points: compressed,
            },
            indexes: group
                .iter()
                .flat_map(|(_, _, i)| i.iter().copied())
                .collect(),
            points: group.len() as u64,
            device: first.device_id.clone(),
            measure: first.measure.to_string(),
        });
    }

    /// Writes a chunk: whether it replaced the same chunk (a redelivery), or the reason
    /// it was refused.
    async fn put_chunk(&self, p: Pending) -> StoreResult<(Pending, Result<bool, String>)> {
        let item = encode("telemetry chunk", &p.item)?;
        match self.table.put_item(item, None, true).await {
            Ok(w) => Ok((p, Ok(w == Written::Done { replaced: true }))),
            Err(e) if e.is_retryable() => Err(e),
            Err(e) => Ok((p, Err(e.to_string()))),
        }
    }

    /// Counts `added` points and moves the last time to `last` if it is later; the
    /// summary expires with the newest chunk.
    async fn bump_series(
        &self,
        device: &str,
        measure: &str,
        added: u64,
        last: i64,
        expires_at: i64,
    ) -> StoreResult<()> {
        let key = series_key(device, measure);
        let v = serde_json::json!({ ":n": added, ":m": measure, ":t": last, ":e": expires_at });
        let with_time = self
            .table
            .update_item(
                &key,
                "ADD #c :n SET #m = :m, #l = :t, #e = :e",
                Some("attribute_not_exists(#l) OR #l < :t"),
                &[
                    ("#c", "count"),
                    ("#m", "measure"),
                    ("#l", "lastTimeNs"),
                    ("#e", "expiresAt"),
                ],
                values(v)?,
            )
            .await?;
        if with_time == Written::ConditionFailed && added > 0 {
            // Older points: count them, keep the last time.
            self.table
                .update_item(
                    &key,
                    "ADD #c :n SET #m = :m, #e = :e",
                    None,
                    &[("#c", "count"), ("#m", "measure"), ("#e", "expiresAt")],
                    values(serde_json::json!({ ":n": added, ":m": measure, ":e": expires_at }))?,
                )
                .await?;
        }
        Ok(())
    }
}

/// Per series (device, message) and hour, the batch's records by (time, seq): the
/// index of the one that wins (the last in the batch) and every index with that key.
type Groups<'a> = BTreeMap<(&'a str, &'a str, String), BTreeMap<PointKey, (usize, Vec<usize>)>>;

#[async_trait]
impl TelemetrySink for DynamoTelemetry {
    async fn write(&self, records: &[TelemetryRecord]) -> StoreResult<WriteReport> {
        let mut report = WriteReport::default();
        let mut groups: Groups<'_> = BTreeMap::new();
        for (index, r) in records.iter().enumerate() {
            if let Some(reason) = unstorable(r) {
                report.rejected.push(RejectedRecord { index, reason });
                continue;
            }
            let point = groups
                .entry((&r.device_id, &r.measure, hour_of(r.time_ns)))
                .or_default()
                .entry((r.time_ns, r.seq))
                .or_insert((index, Vec::new()));
            point.0 = index;
            point.1.push(index);
        }
        let now = chrono::Utc::now();
        let mut pending = Vec::new();
        for points in groups.values() {
            let group: Vec<(usize, &TelemetryRecord, Vec<usize>)> = points
                .values()
                .map(|(winner, all)| (*winner, &records[*winner], all.clone()))
                .collect();
            self.chunks(&group, now, &mut pending, &mut report.rejected);
        }
        let mut puts = Vec::with_capacity(pending.len());
        for p in pending {
            puts.push(self.put_chunk(p));
        }
        let results: Vec<(Pending, Result<bool, String>)> = stream::iter(puts)
            .buffer_unordered(CONCURRENT_WRITES)
            .try_collect()
            .await?;
        // Per series: points added, last time, expiry.
        let mut series: BTreeMap<(String, String), (u64, i64, i64)> = BTreeMap::new();
        for (p, result) in results {
            match result {
                Ok(replaced) => {
                    report.written += p.indexes.len();
                    let s = series
                        .entry((p.device, p.measure))
                        .or_insert((0, i64::MIN, 0));
                    if !replaced {
                        s.0 += p.points;
                    }
                    s.1 = s.1.max(p.item.last_ns);
                    s.2 = s.2.max(p.item.expires_at);
                }
                Err(reason) => {
                    report
                        .rejected
                        .extend(p.indexes.into_iter().map(|index| RejectedRecord {
                            index,
                            reason: reason.clone(),
                        }))
                }
            }
        }
        report.rejected.sort_by_key(|r| r.index);
        let mut bumps = Vec::with_capacity(series.len());
        for ((device, measure), (added, last, exp)) in &series {
            bumps.push(self.bump_series(device, measure, *added, *last, *exp));
        }
        stream::iter(bumps)
            .buffer_unordered(CONCURRENT_WRITES)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(report)
    }
}

#[async_trait]
impl TelemetryReader for DynamoTelemetry {
    async fn series(&self, device_id: &str) -> StoreResult<Vec<TelemetrySeries>> {
        let pk = format!("SERIES#{device_id}");
        let items = self
            .table
            .partition(&pk)
            .eventually_consistent()
            .all()
            .await?;
        Ok(decode_all::<SeriesItem>("telemetry series", items)?
            .into_iter()
            .map(|s| TelemetrySeries {
                measure: s.measure,
                count: s.count,
                last_time_ns: s.last_time_ns,
            })
            .collect())
    }

    async fn query(&self, q: &TelemetryQuery) -> StoreResult<Page<TelemetryRecord>> {
        reader::query(&self.table, q, Arc::from(q.measure.as_str())).await
    }
}

#[cfg(test)]
mod tests;
