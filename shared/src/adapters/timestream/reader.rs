//! The Timestream telemetry reader: the SQL statements through the Query API, pages
//! followed.

use async_trait::async_trait;

use super::{discovery::Endpoint, QueryTable, Sql};
use crate::adapters::aws::store_error;
use crate::domain::Page;
use crate::ports::*;
use crate::telemetry::TelemetryRecord;

/// Reads telemetry back through the Timestream Query API.
pub struct TimestreamReader {
    endpoint: Endpoint<aws_sdk_timestreamquery::Client>,
    sql: Sql,
}

impl std::fmt::Debug for TimestreamReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimestreamReader")
            .field("table", &self.sql.table)
            .finish()
    }
}

impl TimestreamReader {
    /// `discover`: as for [`TimestreamSink::new`].
    pub fn new(
        client: aws_sdk_timestreamquery::Client,
        database: &str,
        table: &str,
        discover: bool,
    ) -> Self {
        Self {
            endpoint: Endpoint::new(client, discover),
            sql: Sql::new(database, table),
        }
    }

    /// The series statement looks back `days` (the telemetry retention) rather than
    /// the default 365.
    pub fn with_retention_days(mut self, days: u32) -> Self {
        self.sql = self.sql.with_retention_days(days);
        self
    }

    /// Runs a statement, following the pages.
    async fn run(&self, sql: &str) -> StoreResult<QueryTable> {
        let client = self.endpoint.client().await?;
        let mut table = QueryTable::default();
        let mut token: Option<String> = None;
        loop {
            let out = client
                .query()
                .query_string(sql)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| store_error("Timestream Query", e))?;
            let page = QueryTable::from(&out);
            if table.columns.is_empty() {
                table.columns = page.columns;
            }
            table.rows.extend(page.rows);
            match out.next_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(table),
            }
        }
    }
}

#[async_trait]
impl TelemetryReader for TimestreamReader {
    async fn series(&self, device_id: &str) -> StoreResult<Vec<TelemetrySeries>> {
        let t = self.run(&self.sql.series(device_id)).await?;
        if t.columns.is_empty() {
            return Ok(Vec::new());
        }
        t.to_series()
    }

    async fn query(&self, q: &TelemetryQuery) -> StoreResult<Page<TelemetryRecord>> {
        let Some(range) = q.remaining(q.cursor()?) else {
            return Ok(Page::last(Vec::new()));
        };
        let dims = self
            .run(&self.sql.dimensions(&q.measure))
            .await?
            .to_dimensions();
        let t = self.run(&self.sql.records(q, range)).await?;
        if t.columns.is_empty() {
            return Ok(Page::last(Vec::new()));
        }
        let mut records = t.to_records(&dims)?;
        if q.order == TelemetryOrder::NewestFirst {
            records.reverse();
        }
        Ok(q.page_of(records))
    }
}
