//! DynamoDB adapters: twins, schemas, commands, events, and the DynamoDB telemetry sink.
//!
//! Every table has the key schema of the CDK app (`infra/cdk/lib/data-stack.ts`):
//! partition key `pk` (S), sort key `sk` (S), GSI `gsi1` on `gsi1pk`/`gsi1sk` (S; all
//! attributes projected, but keys only on the twins table, whose reads of it take only
//! keys and then BatchGetItem), TTL attribute `expiresAt` (epoch seconds). The twins
//! table also has the sparse `gsi2` on `gsi2pk`/`gsi2sk` (keys only): only online twins
//! carry them, so the presence sweep reads online devices only. Items are converted with
//! `serde_dynamo` from each file's item structs; no attribute map is built by hand.
//!
//! | table | item | pk | sk | gsi1pk / gsi1sk |
//! |---|---|---|---|---|
//! | twins | twin (online: `gsi2pk` `ONLINE#<shard 0..8>`, `gsi2sk` its `staleAt` in ms) | `DEV#<id>` | `TWIN` | `NS#<namespace>` / `<name>` |
//! | twins | name reservation | `NAME#<namespace>/<name>` | `NAME` | `NAME#<name>` / `<namespace>` |
//! | twins | label index | `LABEL#<k>=<v>` | `<id>` | - |
//! | twins | tombstone of a deleted device (TTL 30 days) | `DEV#<id>` | `TOMBSTONE` | - |
//! | schemas | schema | `DEV#<id>` | `SCHEMA` | - |
//! | commands | command | `CMD#<id>` | `CMD` | `DEV#<device>` / `<created time>#<id>` |
//! | events | event (TTL by reason) | `DAY#<yyyy-mm-dd>#<shard 00..15>` (shard: FNV-1a of the id) | `<time ns>:<id>` | `DEV#<device>` / `<time ns>:<id>` |
//! | events | day directory | `DAYS` | `<yyyy-mm-dd>` | - |
//! | telemetry | chunk: a batch's points of one series and hour, compressed in `points` (B); TTL from `MIR_TELEMETRY_RETENTION_DAYS` | `TLM#<device>#<measure>` | `<hour, yyyy-mm-ddThh>#<content hash>` | - |
//! | telemetry | series summary (count, last time; TTL renewed by every write) | `SERIES#<device>` | `<measure>` | - |
//!
//! Telemetry is written a chunk per batch, never appended to (see `telemetry`): the same
//! batch delivered twice has the same content hash, so writes the same item again. A
//! window is read with one Query over its hours; a page is the merge of whole hours.
//!
//! Events are write-sharded: a day's events spread over [`EVENT_SHARDS`] partitions, so
//! a burst is not capped by one partition; a list merges the day's shards newest first.
//! An event's key is a function of the event, so a redelivered event overwrites its own
//! item: one item (and one `gsi1` entry) per event, written in BatchWriteItem calls.
//!
//! Twin writes that change a name or labels are transactions (TransactWriteItems): the
//! twin item conditional on its `version`, its name reservation and its label index
//! items together, so name/namespace uniqueness and the label index can never disagree
//! with the twins. Other twin writes are one PutItem conditional on the `version`, and a
//! heartbeat is one UpdateItem (`twins_pages.rs`).
//!
//! Files: `table` (the table helper: items through serde_dynamo, keys, single-item
//! writes, transactions), `query` (the one Query/Scan builder and its pages), `create`
//! (the contract table), and one per port implementation: `twins`, `schemas`,
//! `commands`, `events` (each with its unit tests in `<x>_tests.rs`), `telemetry` (a
//! directory: the sink, `chunk`, `reader`, and their tests).

mod commands;
mod create;
mod events;
mod query;
mod schemas;
mod table;
mod telemetry;
mod twins;

pub use aws_sdk_dynamodb;
pub use commands::DynamoCommandStore;
pub use create::create_table;
pub use events::{event_of_image, DynamoEventStore, EVENT_SHARDS};
pub use schemas::DynamoSchemaStore;
pub use telemetry::DynamoTelemetry;
pub use twins::DynamoTwinStore;

/// Largest item DynamoDB stores.
pub const MAX_ITEM_BYTES: usize = crate::ports::MAX_STORED_ITEM_BYTES;
/// The global secondary index of every table (see the table above).
pub const GSI1: &str = "gsi1";
/// The sparse index of online twins (keys only), which the presence sweep reads.
pub const GSI2: &str = "gsi2";
