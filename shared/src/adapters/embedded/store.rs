//! The embedded database: its tables, opening it, transactions on the blocking pool,
//! and the row helpers (JSON values, keys) every embedded store uses.

use std::{path::Path, sync::Arc};

use chrono::{DateTime, Utc};
use redb::{Database, ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use serde::{de::DeserializeOwned, Serialize};

use crate::domain::EventRetention;
use crate::ports::{StoreError, StoreResult};

pub(super) const TWINS: TableDefinition<&str, &[u8]> = TableDefinition::new("twins");
pub(super) const TWIN_NAMES: TableDefinition<&str, &str> = TableDefinition::new("twin_names");
pub(super) const TWIN_TOMBSTONES: TableDefinition<&str, &[u8]> =
    TableDefinition::new("twin_tombstones");
pub(super) const SCHEMAS: TableDefinition<&str, &[u8]> = TableDefinition::new("schemas");
pub(super) const COMMANDS: TableDefinition<&str, &[u8]> = TableDefinition::new("commands");
pub(super) const EVENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("events");
pub(super) const EVENTS_BY_TIME: TableDefinition<&str, ()> = TableDefinition::new("events_by_time");
pub(super) const EVENTS_BY_EXPIRY: TableDefinition<&str, ()> =
    TableDefinition::new("events_by_expiry");
pub(super) const TELEMETRY: TableDefinition<(&str, &str, i64, u64), &[u8]> =
    TableDefinition::new("telemetry");
pub(super) const SERIES: TableDefinition<(&str, &str), (u64, i64)> =
    TableDefinition::new("telemetry_series");

/// The embedded store: cheap to clone, one database behind.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    /// When appended events expire (see [`EmbeddedStore::prune`]).
    pub(super) event_retention: Arc<EventRetention>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").finish_non_exhaustive()
    }
}

pub(super) fn unavailable(e: impl Into<redb::Error>) -> StoreError {
    let e: redb::Error = e.into();
    StoreError::unavailable("embedded database", e)
}

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

pub(super) fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(bytes).map_err(corrupt)
}

pub(super) fn to_json<T: Serialize>(v: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(v).map_err(corrupt)
}

/// The JSON value stored under `key`, if any.
pub(super) fn get_json<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> StoreResult<Option<T>> {
    table
        .get(key)
        .map_err(unavailable)?
        .map(|v| from_json(v.value()))
        .transpose()
}

/// Key of `events_by_time`: the time in nanoseconds, zero-padded, and the id.
pub(super) fn time_key(t: DateTime<Utc>, id: &str) -> String {
    let ns = t.timestamp_nanos_opt().unwrap_or(0).max(0);
    format!("{ns:020}:{id}")
}

/// Key of `events_by_expiry`: the expiry in epoch seconds, zero-padded, then `|` and
/// the event's `events_by_time` key.
pub(super) fn expiry_key(expires_at: i64, time_key: &str) -> String {
    format!("{:020}|{time_key}", expires_at.max(0))
}

/// `f` in one read transaction.
pub(super) fn read<T>(
    db: &Database,
    f: impl FnOnce(&ReadTransaction) -> StoreResult<T>,
) -> StoreResult<T> {
    let tx = db.begin_read().map_err(unavailable)?;
    f(&tx)
}

/// `f` in one write transaction, committed when `f` succeeds (dropped, so aborted,
/// when it fails).
pub(super) fn write<T>(
    db: &Database,
    f: impl FnOnce(&WriteTransaction) -> StoreResult<T>,
) -> StoreResult<T> {
    let tx = db.begin_write().map_err(unavailable)?;
    let out = f(&tx)?;
    tx.commit().map_err(unavailable)?;
    Ok(out)
}

impl EmbeddedStore {
    /// Opens (or creates) the database file at `path`.
    pub fn open(path: &Path) -> StoreResult<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::unavailable(format!("creating {}", dir.display()), e))?;
        }
        let db = Database::create(path).map_err(unavailable)?;
        write(&db, |tx| {
            tx.open_table(TWINS).map_err(unavailable)?;
            tx.open_table(TWIN_NAMES).map_err(unavailable)?;
            tx.open_table(TWIN_TOMBSTONES).map_err(unavailable)?;
            tx.open_table(SCHEMAS).map_err(unavailable)?;
            tx.open_table(COMMANDS).map_err(unavailable)?;
            tx.open_table(EVENTS).map_err(unavailable)?;
            tx.open_table(EVENTS_BY_TIME).map_err(unavailable)?;
            tx.open_table(EVENTS_BY_EXPIRY).map_err(unavailable)?;
            tx.open_table(TELEMETRY).map_err(unavailable)?;
            tx.open_table(SERIES).map_err(unavailable)?;
            Ok(())
        })?;
        Ok(Self {
            db: Arc::new(db),
            event_retention: Arc::new(EventRetention::default()),
        })
    }

    /// This store with events appended from now on expiring by `policy` (default:
    /// [`EventRetention::default`]).
    pub fn with_event_retention(mut self, policy: EventRetention) -> Self {
        self.event_retention = Arc::new(policy);
        self
    }

    /// The database, for the unit tests.
    #[cfg(test)]
    pub(super) fn db(&self) -> &Database {
        &self.db
    }

    /// `f` on the database, on the blocking pool.
    pub(super) async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> StoreResult<T> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StoreError::unavailable("embedded database task", e))?
    }

    /// `f` in one read transaction, on the blocking pool.
    pub(super) async fn reading<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&ReadTransaction) -> StoreResult<T> + Send + 'static,
    {
        self.run(move |db| read(db, f)).await
    }

    /// `f` in one write transaction (see [`write`]), on the blocking pool.
    pub(super) async fn writing<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> StoreResult<T> + Send + 'static,
    {
        self.run(move |db| write(db, f)).await
    }
}
