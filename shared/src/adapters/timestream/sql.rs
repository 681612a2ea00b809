//! The reader's SQL statements, with identifiers and strings quoted.

use crate::ports::TelemetryQuery;

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
}

impl Sql {
    pub fn new(database: &str, table: &str) -> Self {
        Self {
            table: format!("{}.{}", quote_ident(database), quote_ident(table)),
        }
    }

    /// Every measure of a device, with counts and the last time.
    pub fn series(&self, device_id: &str) -> String {
        format!(
            "SELECT measure_name, COUNT(*) AS n, MAX(time) AS last_time FROM {} WHERE deviceId = {} GROUP BY measure_name ORDER BY measure_name",
            self.table,
            quote_str(device_id)
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

    /// The newest `limit` records of a measure since a time.
    pub fn records(&self, q: &TelemetryQuery) -> String {
        format!(
            "SELECT * FROM {} WHERE deviceId = {} AND measure_name = {} AND time >= from_nanoseconds({}) ORDER BY time DESC LIMIT {}",
            self.table,
            quote_str(&q.device_id),
            quote_str(&q.measure),
            q.since_ns,
            q.limit.clamp(1, 10_000)
        )
    }
}
