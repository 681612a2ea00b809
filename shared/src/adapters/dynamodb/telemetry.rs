//! Telemetry on DynamoDB (the sink and reader for accounts without Timestream): one
//! item per point, a summary item per series.

use std::{collections::BTreeMap, sync::Arc};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use futures::{stream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::table::{decode_all, encode, values, Key, Table, Written};
use crate::adapters::pairs;
use crate::ports::*;
use crate::telemetry::{FieldValue, TelemetryRecord};

/// A measure value with its type kept (a DOUBLE 3.0 stays a DOUBLE).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum StoredValue {
    B(bool),
    I(i64),
    /// A `uint64` above `i64::MAX`; a DynamoDB number holds it exactly.
    U(u64),
    D(f64),
    S(String),
}

impl From<&FieldValue> for StoredValue {
    fn from(v: &FieldValue) -> Self {
        match v {
            FieldValue::Bool(b) => StoredValue::B(*b),
            FieldValue::Int(i) => StoredValue::I(*i),
            FieldValue::Uint(u) => StoredValue::U(*u),
            FieldValue::Double(d) => StoredValue::D(*d),
            FieldValue::Text(s) => StoredValue::S(s.clone()),
        }
    }
}

impl From<StoredValue> for FieldValue {
    fn from(v: StoredValue) -> Self {
        match v {
            StoredValue::B(b) => FieldValue::Bool(b),
            StoredValue::I(i) => FieldValue::Int(i),
            StoredValue::U(u) => FieldValue::Uint(u),
            StoredValue::D(d) => FieldValue::Double(d),
            StoredValue::S(s) => FieldValue::Text(s),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PointItem {
    pk: String,
    sk: String,
    device_id: String,
    name: String,
    namespace: String,
    measure: String,
    time_ns: i64,
    seq: u64,
    #[serde(default)]
    tags: Vec<(String, String)>,
    #[serde(default)]
    values: Vec<(String, StoredValue)>,
}

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

fn point_pk(device: &str, measure: &str) -> String {
    format!("TLM#{device}#{measure}")
}

/// Sort key of a point: time (offset so negative times sort) and seq, zero-padded, so
/// the same (time, seq) written again replaces the point.
fn point_sk(time_ns: i64, seq: u64) -> String {
    let t = i128::from(time_ns) - i128::from(i64::MIN);
    format!("{t:020}#{seq:020}")
}

impl TryFrom<&TelemetryRecord> for PointItem {
    type Error = StoreError;

    fn try_from(r: &TelemetryRecord) -> Result<Self, Self::Error> {
        if let Some((name, _)) = r
            .values
            .iter()
            .find(|(_, v)| matches!(v, FieldValue::Double(d) if !d.is_finite()))
        {
            return Err(StoreError::Corrupt(format!(
                "measure {name} is not a finite number, which DynamoDB cannot store"
            )));
        }
        Ok(PointItem {
            pk: point_pk(&r.device_id, &r.measure),
            sk: point_sk(r.time_ns, r.seq),
            device_id: r.device_id.clone(),
            name: r.name.clone(),
            namespace: r.namespace.clone(),
            measure: r.measure.to_string(),
            time_ns: r.time_ns,
            seq: r.seq,
            tags: pairs::owned(&r.tags, |v| v.to_string()),
            values: pairs::owned(&r.values, |v| v.into()),
        })
    }
}

impl From<PointItem> for TelemetryRecord {
    fn from(p: PointItem) -> Self {
        TelemetryRecord {
            device_id: p.device_id,
            name: p.name,
            namespace: p.namespace,
            measure: Arc::from(p.measure),
            time_ns: p.time_ns,
            seq: p.seq,
            tags: pairs::shared(p.tags, Arc::from),
            values: pairs::shared(p.values, FieldValue::from),
        }
    }
}

/// Telemetry on a DynamoDB table: one item per point, a summary item per series.
#[derive(Clone, Debug)]
pub struct DynamoTelemetry {
    table: Table,
}

/// What happened to one point.
enum PointWrite {
    New,
    Replaced,
    Rejected(String),
}

impl DynamoTelemetry {
    pub fn new(client: Client, table: &str) -> Self {
        Self {
            table: Table::new(client, table),
        }
    }

    async fn put_point(&self, r: &TelemetryRecord) -> StoreResult<PointWrite> {
        let item = match PointItem::try_from(r).and_then(|p| encode("telemetry point", &p)) {
            Ok(i) => i,
            Err(e) => return Ok(PointWrite::Rejected(e.to_string())),
        };
        match self.table.put_item(item, None, true).await {
            Ok(Written::Done { replaced: true }) => Ok(PointWrite::Replaced),
            // Without a condition, a write cannot fail one.
            Ok(Written::Done { replaced: false } | Written::ConditionFailed) => Ok(PointWrite::New),
            Err(err) if err.is_retryable() => Err(err),
            Err(err) => Ok(PointWrite::Rejected(err.to_string())),
        }
    }

    async fn bump_series(
        &self,
        device: &str,
        measure: &str,
        added: u64,
        last: i64,
    ) -> StoreResult<()> {
        let key = Key::new(format!("SERIES#{device}"), measure);
        let with_time = self
            .table
            .update_item(
                &key,
                "ADD #c :n SET #m = :m, #l = :t",
                Some("attribute_not_exists(#l) OR #l < :t"),
                &[("#c", "count"), ("#m", "measure"), ("#l", "lastTimeNs")],
                values(serde_json::json!({ ":n": added, ":m": measure, ":t": last }))?,
            )
            .await?;
        if with_time == Written::ConditionFailed && added > 0 {
            // An older point: count it, keep the last time.
            self.table
                .update_item(
                    &key,
                    "ADD #c :n SET #m = :m",
                    None,
                    &[("#c", "count"), ("#m", "measure")],
                    values(serde_json::json!({ ":n": added, ":m": measure }))?,
                )
                .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl TelemetrySink for DynamoTelemetry {
    async fn write(&self, records: &[TelemetryRecord]) -> StoreResult<WriteReport> {
        let mut writes = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            writes.push(async move { self.put_point(r).await.map(|w| (i, w)) });
        }
        let results: Vec<(usize, PointWrite)> =
            stream::iter(writes).buffered(8).try_collect().await?;
        let mut report = WriteReport::default();
        let mut series: BTreeMap<(&str, &str), (u64, i64)> = BTreeMap::new();
        for (index, w) in results {
            let r = &records[index];
            let added = match w {
                PointWrite::Rejected(reason) => {
                    report.rejected.push(RejectedRecord { index, reason });
                    continue;
                }
                PointWrite::New => 1,
                PointWrite::Replaced => 0,
            };
            report.written += 1;
            let s = series
                .entry((&r.device_id, &r.measure))
                .or_insert((0, i64::MIN));
            s.0 += added;
            s.1 = s.1.max(r.time_ns);
        }
        for ((device, measure), (added, last)) in series {
            self.bump_series(device, measure, added, last).await?;
        }
        Ok(report)
    }
}

#[async_trait]
impl TelemetryReader for DynamoTelemetry {
    async fn series(&self, device_id: &str) -> StoreResult<Vec<TelemetrySeries>> {
        let pk = format!("SERIES#{device_id}");
        let items = self.table.partition(&pk).all().await?;
        Ok(decode_all::<SeriesItem>("telemetry series", items)?
            .into_iter()
            .map(|s| TelemetrySeries {
                measure: s.measure,
                count: s.count,
                last_time_ns: s.last_time_ns,
            })
            .collect())
    }

    async fn query(&self, q: &TelemetryQuery) -> StoreResult<Vec<TelemetryRecord>> {
        let from = point_sk(q.since_ns, 0);
        let pk = point_pk(&q.device_id, &q.measure);
        let items = self
            .table
            .partition(&pk)
            .sk_from(Some(&from))
            .newest_first()
            .first(q.limit.max(1))
            .await?;
        let mut out: Vec<TelemetryRecord> = decode_all::<PointItem>("telemetry point", items)?
            .into_iter()
            .map(Into::into)
            .collect();
        out.truncate(q.limit.max(1));
        out.reverse();
        Ok(out)
    }
}

#[cfg(test)]
#[path = "telemetry_tests.rs"]
mod tests;
