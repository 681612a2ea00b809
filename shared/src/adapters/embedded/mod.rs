//! Every store on one embedded, on-disk [redb](https://docs.rs/redb) database.
//!
//! Tables: `twins` (id -> version + twin JSON), `twin_names` (namespace/name -> id),
//! `twin_tombstones` (id -> tombstone of a deleted device),
//! `schemas` (id -> stored schema), `commands`, `events` (id -> event) with
//! `events_by_time` (time:id) and `events_by_expiry` (expiry|time:id), `telemetry` ((device, measure, time, seq) -> values) and
//! `telemetry_series` ((device, measure) -> count, last time).
//! All disk work runs on the blocking pool; each write is one transaction.
//!
//! Files: `store` (the database, its tables, transactions and row helpers), `retention`
//! (pruning like DynamoDB TTL), and one per port implementation: `twins`, `schemas`,
//! `commands`, `events`, `telemetry`; unit tests in `tests`.

mod commands;
mod events;
mod retention;
mod schemas;
mod store;
mod telemetry;
mod twins;

pub use retention::Retention;
pub use store::EmbeddedStore;

/// Largest twin document accepted (the same limit as a DynamoDB item).
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

#[cfg(test)]
mod tests;
