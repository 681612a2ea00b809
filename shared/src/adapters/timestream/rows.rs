//! Query results as a table of cells, and the table as telemetry series, dimension
//! names and records.

use std::{collections::HashSet, sync::Arc};

use chrono::NaiveDateTime;

use super::{CORE_DIMENSIONS, SEQ_MEASURE};
use crate::ports::*;
use crate::telemetry::{FieldValue, TelemetryRecord};

/// One cell of a query result.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Scalar(String),
    Array(Vec<Cell>),
    Row(Vec<Cell>),
}

/// A query result: column names and scalar types (`None` for arrays, rows, series), rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryTable {
    pub columns: Vec<(String, Option<String>)>,
    pub rows: Vec<Vec<Cell>>,
}

impl From<&aws_sdk_timestreamquery::types::Datum> for Cell {
    fn from(d: &aws_sdk_timestreamquery::types::Datum) -> Self {
        if d.null_value() == Some(true) {
            Cell::Null
        } else if let Some(s) = d.scalar_value() {
            Cell::Scalar(s.to_string())
        } else if let Some(r) = d.row_value() {
            Cell::Row(r.data().iter().map(Cell::from).collect())
        } else if !d.array_value().is_empty() {
            Cell::Array(d.array_value().iter().map(Cell::from).collect())
        } else {
            Cell::Null
        }
    }
}

impl From<&aws_sdk_timestreamquery::operation::query::QueryOutput> for QueryTable {
    fn from(out: &aws_sdk_timestreamquery::operation::query::QueryOutput) -> Self {
        QueryTable {
            columns: out
                .column_info()
                .iter()
                .map(|c| {
                    (
                        c.name().unwrap_or_default().to_string(),
                        c.r#type()
                            .and_then(|t| t.scalar_type())
                            .map(|s| s.as_str().to_string()),
                    )
                })
                .collect(),
            rows: out
                .rows()
                .iter()
                .map(|r| r.data().iter().map(Cell::from).collect())
                .collect(),
        }
    }
}

/// Timestream's TIMESTAMP text (`2023-11-14 22:13:20.000000000`) as nanoseconds.
pub fn parse_time_ns(s: &str) -> Option<i64> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .and_then(|t| t.and_utc().timestamp_nanos_opt())
}

fn corrupt(msg: impl Into<String>) -> StoreError {
    StoreError::Corrupt(format!("Timestream result: {}", msg.into()))
}

impl QueryTable {
    fn col(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|(n, _)| n == name)
    }

    fn scalar(row: &[Cell], i: usize) -> Option<&str> {
        match row.get(i) {
            Some(Cell::Scalar(s)) => Some(s),
            _ => None,
        }
    }

    /// Rows of the series statement.
    pub fn to_series(&self) -> StoreResult<Vec<TelemetrySeries>> {
        let (m, n, t) = match (
            self.col("measure_name"),
            self.col("n"),
            self.col("last_time"),
        ) {
            (Some(m), Some(n), Some(t)) => (m, n, t),
            _ => return Err(corrupt("series result lacks measure_name, n or last_time")),
        };
        self.rows
            .iter()
            .map(|row| {
                let measure =
                    Self::scalar(row, m).ok_or_else(|| corrupt("measure_name is null"))?;
                let count = Self::scalar(row, n)
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(0);
                let last = Self::scalar(row, t)
                    .and_then(parse_time_ns)
                    .ok_or_else(|| corrupt("last_time is not a timestamp"))?;
                Ok(TelemetrySeries {
                    measure: measure.to_string(),
                    count,
                    last_time_ns: last,
                })
            })
            .collect()
    }

    /// Dimension names from the SHOW MEASURES statement (`dimensions` is an array of
    /// rows (dimension_name, data_type)).
    pub fn to_dimensions(&self) -> HashSet<String> {
        let mut out: HashSet<String> = CORE_DIMENSIONS.iter().map(|s| s.to_string()).collect();
        let Some(d) = self.col("dimensions") else {
            return out;
        };
        for row in &self.rows {
            if let Some(Cell::Array(items)) = row.get(d) {
                for item in items {
                    if let Cell::Row(fields) = item {
                        if let Some(Cell::Scalar(name)) = fields.first() {
                            out.insert(name.clone());
                        }
                    }
                }
            }
        }
        out
    }

    /// Rows of the records statement, oldest first. `dimensions`: which VARCHAR columns
    /// are dimensions (tags) rather than measure values.
    pub fn to_records(&self, dimensions: &HashSet<String>) -> StoreResult<Vec<TelemetryRecord>> {
        let time = self.col("time").ok_or_else(|| corrupt("no time column"))?;
        let measure = self
            .col("measure_name")
            .ok_or_else(|| corrupt("no measure_name column"))?;
        let mut out = Vec::with_capacity(self.rows.len());
        for row in &self.rows {
            let time_ns = Self::scalar(row, time)
                .and_then(parse_time_ns)
                .ok_or_else(|| corrupt("time is not a timestamp"))?;
            let mut rec = TelemetryRecord {
                device_id: String::new(),
                name: String::new(),
                namespace: String::new(),
                measure: Arc::from(Self::scalar(row, measure).unwrap_or_default()),
                time_ns,
                seq: 0,
                tags: Vec::new(),
                values: Vec::new(),
            };
            for (i, (col, ty)) in self.columns.iter().enumerate() {
                if i == time || i == measure {
                    continue;
                }
                let Some(s) = Self::scalar(row, i) else {
                    continue;
                };
                match col.as_str() {
                    "deviceId" => rec.device_id = s.to_string(),
                    "name" => rec.name = s.to_string(),
                    "namespace" => rec.namespace = s.to_string(),
                    SEQ_MEASURE => rec.seq = s.parse().unwrap_or(0),
                    c if dimensions.contains(c) => rec.tags.push((Arc::from(c), Arc::from(s))),
                    c => {
                        let v = match ty.as_deref() {
                            Some("BIGINT") | Some("INTEGER") => s
                                .parse::<i64>()
                                .map(FieldValue::Int)
                                .map_err(|_| corrupt(format!("{c} is not a BIGINT: {s}")))?,
                            Some("DOUBLE") => s
                                .parse::<f64>()
                                .map(FieldValue::Double)
                                .map_err(|_| corrupt(format!("{c} is not a DOUBLE: {s}")))?,
                            Some("BOOLEAN") => FieldValue::Bool(s == "true"),
                            _ => FieldValue::Text(s.to_string()),
                        };
                        rec.values.push((Arc::from(c), v));
                    }
                }
            }
            out.push(rec);
        }
        out.sort_by_key(|r| (r.time_ns, r.seq));
        Ok(out)
    }
}
