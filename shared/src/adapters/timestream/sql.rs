//! The reader's SQL statements, with identifiers and strings quoted. Every statement
//! that reads records has a time predicate, so Timestream never scans the whole table:
//! the records statement the query's window, the series statement the retention.

use crate::ports::{PointKey, TelemetryOrder, TelemetryQuery};

/// `"identifier"`, with embedded quotes doubled.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `'string'`, with embedded quotes doubled.
pub fn quote_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The SQL statements of the reader.
#[derive(Debug, Clone)]
pub struct Sql {
    /// `"database"."table"`, quoted.
    pub(super) table: String,
    /// How far back the series statement looks, in days.
    retention_days: u32,
}

impl Sql {
    pub fn new(database: &str, table: &str) -> Self {
        Self {
            table: format!("{}.{}", quote_ident(database), quote_ident(table)),
            retention_days: crate::adapters::aws::DEFAULT_TELEMETRY_RETENTION_DAYS,
        }
    }

    /// The series statement looks back `days` (the telemetry retention).
    pub fn with_retention_days(mut self, days: u32) -> Self {
        self.retention_days = days.max(1);
        self
    }

    /// Every measure of a device within the retention, with counts and the last time.
    pub fn series(&self, device_id: &str) -> String {
        format!(
            "SELECT measure_name, COUNT(*) AS n, MAX(time) AS last_time FROM {} WHERE deviceId = {} AND time > ago({}d) GROUP BY measure_name ORDER BY measure_name",
            self.table,
            quote_str(device_id),
            self.retention_days
        )
    }

    /// The dimensions of a measure.
    pub fn dimensions(&self, measure: &str) -> String {
        format!(
            "SHOW MEASURES FROM {} LIKE {}",
            self.table,
            quote_str(measure)
        )
    }

    /// One page of records of a measure: the `(time, seq)` range `lo..=hi` (from
    /// [`TelemetryQuery::remaining`]) in the query's order, one record more than the page
    /// so that the reader knows whether another page follows.
    pub fn records(&self, q: &TelemetryQuery, (lo, hi): (PointKey, PointKey)) -> String {
        let seq = |s: u64| i64::try_from(s).unwrap_or(i64::MAX);
        let mut filter = format!("time >= from_nanoseconds({})", lo.0);
        if hi.0 != i64::MAX {
            filter.push_str(&format!(" AND time <= from_nanoseconds({})", hi.0));
        }
        if lo.1 > 0 {
            filter.push_str(&format!(
                " AND (time > from_nanoseconds({}) OR seq >= {})",
                lo.0,
                seq(lo.1)
            ));
        }
        if hi.1 != u64::MAX {
            filter.push_str(&format!(
                " AND (time < from_nanoseconds({}) OR seq <= {})",
                hi.0,
                seq(hi.1)
            ));
        }
        let dir = match q.order {
            TelemetryOrder::OldestFirst => "ASC",
            TelemetryOrder::NewestFirst => "DESC",
        };
        format!(
            "SELECT * FROM {} WHERE deviceId = {} AND measure_name = {} AND {filter} ORDER BY time {dir}, seq {dir} LIMIT {}",
            self.table,
            quote_str(&q.device_id),
            quote_str(&q.measure),
            q.page_limit() + 1
        )
    }
}
