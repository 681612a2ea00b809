//! Timestream for LiveAnalytics: the telemetry sink (timestream-write) and reader
//! (timestream-query).
//!
//! One multi-measure record per telemetry message: measure name = message full name,
//! dimensions `deviceId`, `name`, `namespace` and the message's tags, measure values
//! typed BIGINT/DOUBLE/BOOLEAN/VARCHAR, time in nanoseconds, plus the SDK sequence
//! number as the BIGINT measure `seq` and as the record `Version` (seq + 1). Timestream
//! keeps one record per (dimensions, time, measure name): a redelivered message writes
//! the same record again, which Timestream accepts without change (idempotent); a
//! different message at the very same timestamp replaces it only with a higher seq, and
//! is otherwise reported as rejected with Timestream's reason.
//!
//! At most 100 records per WriteRecords; rejected records come back in
//! `WriteReport::rejected` with their index in the batch; throttling is retried with
//! exponential backoff and full jitter.
//!
//! Endpoint discovery (required by Timestream) runs on first use, unless an endpoint
//! override (`AWS_ENDPOINT_URL`, e.g. moto) is configured, which is used as is.
//!
//! Files: `create` (database and table), `record` (a telemetry record as a Timestream
//! record), `sink` (WriteRecords), `sql` (the reader's statements), `rows` (query results
//! as cells, series and records), `wire` (the Query API's JSON shape, for fixtures),
//! `reader` (Query), `discovery` (endpoint discovery for both clients), `tests`.

mod create;
mod discovery;
mod reader;
mod record;
mod rows;
mod sink;
mod sql;
mod wire;

pub use aws_sdk_timestreamquery;
pub use aws_sdk_timestreamwrite;
pub use create::create_database_and_table;
pub use reader::TimestreamReader;
pub use record::{InvalidRecord, TimestreamRecord};
pub use rows::{parse_time_ns, Cell, QueryTable};
pub use sink::TimestreamSink;
pub use sql::{quote_ident, quote_str, Sql};
pub use wire::{WireColumn, WireDatum, WireQueryResponse, WireRow, WireType};

/// Most records in one WriteRecords call.
pub const MAX_RECORDS_PER_WRITE: usize = 100;
/// Name of the measure holding the SDK sequence number.
pub const SEQ_MEASURE: &str = "seq";
const CORE_DIMENSIONS: [&str; 3] = ["deviceId", "name", "namespace"];

#[cfg(test)]
mod tests;
