//! Telemetry in the embedded store: `telemetry` ((device, measure, time, seq) -> point)
//! and `telemetry_series` ((device, measure) -> count, last time). A query is one range
//! read of the key order; [`EmbeddedStore::prune`] removes points older than the
//! telemetry retention (by their time) and subtracts them from the series count.

use std::sync::Arc;

use async_trait::async_trait;
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::store::{from_json, to_json, unavailable, EmbeddedStore, SERIES, TELEMETRY};
use crate::adapters::pairs;
use crate::domain::Page;
use crate::ports::*;
use crate::telemetry::{FieldValue, TelemetryRecord};

#[derive(Serialize, Deserialize)]
struct TelemetryRow {
    name: String,
    namespace: String,
    tags: Vec<(String, String)>,
    values: Vec<(String, FieldValue)>,
}

#[async_trait]
impl TelemetrySink for EmbeddedStore {
    async fn write(&self, records: &[TelemetryRecord]) -> StoreResult<WriteReport> {
        let mut rows = Vec::with_capacity(records.len());
        let mut report = WriteReport::default();
        for (index, r) in records.iter().enumerate() {
            let row = TelemetryRow {
                name: r.name.clone(),
                namespace: r.namespace.clone(),
                tags: pairs::owned(&r.tags, |v| v.to_string()),
                values: pairs::owned(&r.values, FieldValue::clone),
            };
            match to_json(&row) {
                Ok(bytes) => rows.push((
                    r.device_id.clone(),
                    r.measure.to_string(),
                    r.time_ns,
                    r.seq,
                    bytes,
                )),
                Err(e) => report.rejected.push(RejectedRecord {
                    index,
                    reason: e.to_string(),
                }),
            }
        }
        let written = self
            .writing(move |tx| {
                let n = rows.len();
                {
                    let mut t = tx.open_table(TELEMETRY).map_err(unavailable)?;
                    let mut series = tx.open_table(SERIES).map_err(unavailable)?;
                    for (device, measure, time, seq, bytes) in &rows {
                        let replaced = t
                            .insert(
                                (device.as_str(), measure.as_str(), *time, *seq),
                                bytes.as_slice(),
                            )
                            .map_err(unavailable)?
                            .is_some();
                        let key = (device.as_str(), measure.as_str());
                        let (count, last) = series
                            .get(key)
                            .map_err(unavailable)?
                            .map(|v| v.value())
                            .unwrap_or((0, i64::MIN));
                        let count = if replaced { count } else { count + 1 };
                        series
                            .insert(key, (count, last.max(*time)))
                            .map_err(unavailable)?;
                    }
                }
                Ok(n)
            })
            .await?;
        report.written = written;
        Ok(report)
    }
}

#[async_trait]
impl TelemetryReader for EmbeddedStore {
    async fn series(&self, device_id: &str) -> StoreResult<Vec<TelemetrySeries>> {
        let id = device_id.to_string();
        self.reading(move |tx| {
            let t = tx.open_table(SERIES).map_err(unavailable)?;
            let mut out = Vec::new();
            for row in t.range((id.as_str(), "")..).map_err(unavailable)? {
                let (k, v) = row.map_err(unavailable)?;
                let (device, measure) = k.value();
                if device != id {
                    break;
                }
                let (count, last) = v.value();
                out.push(TelemetrySeries {
                    measure: measure.to_string(),
                    count,
                    last_time_ns: last,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn query(&self, q: &TelemetryQuery) -> StoreResult<Page<TelemetryRecord>> {
        let q = q.clone();
        let Some((lo, hi)) = q.remaining(q.cursor()?) else {
            return Ok(Page::last(Vec::new()));
        };
        self.reading(move |tx| {
            let t = tx.open_table(TELEMETRY).map_err(unavailable)?;
            let (device, measure) = (q.device_id.as_str(), q.measure.as_str());
            let range = t
                .range((device, measure, lo.0, lo.1)..=(device, measure, hi.0, hi.1))
                .map_err(unavailable)?;
            let rows: Box<dyn Iterator<Item = _>> = match q.order {
                TelemetryOrder::OldestFirst => Box::new(range),
                TelemetryOrder::NewestFirst => Box::new(range.rev()),
            };
            let shared: Arc<str> = Arc::from(measure);
            let mut out = Vec::new();
            for row in rows.take(q.page_limit() + 1) {
                let (k, v) = row.map_err(unavailable)?;
                let (_, _, time_ns, seq) = k.value();
                let row: TelemetryRow = from_json(v.value())?;
                out.push(TelemetryRecord {
                    device_id: q.device_id.clone(),
                    name: row.name,
                    namespace: row.namespace,
                    measure: shared.clone(),
                    time_ns,
                    seq,
                    tags: pairs::shared(row.tags, Arc::from),
                    values: pairs::shared(row.values, |v| v),
                });
            }
            Ok(q.page_of(out))
        })
        .await
    }
}
