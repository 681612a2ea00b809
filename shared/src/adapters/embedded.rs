//! Every store on one embedded, on-disk [redb](https://docs.rs/redb) database.
//!
//! Tables: `twins` (id -> version + twin JSON), `twin_names` (namespace/name -> id),
//! `schemas` (id -> stored schema), `commands`, `events` (id -> event) with
//! `events_by_time` (time:id), `telemetry` ((device, measure, time, seq) -> values) and
//! `telemetry_series` ((device, measure) -> count, last time).
//! All disk work runs on the blocking pool; each write is one transaction.

use std::{path::Path, sync::Arc, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use redb::{Database, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::domain::{
    command::CommandOutcome, CommandRecord, Event, EventFilter, Targets, Twin, Versioned,
};
use crate::ports::*;
use crate::telemetry::{FieldValue, TelemetryRecord};

const TWINS: TableDefinition<&str, &[u8]> = TableDefinition::new("twins");
const TWIN_NAMES: TableDefinition<&str, &str> = TableDefinition::new("twin_names");
const SCHEMAS: TableDefinition<&str, &[u8]> = TableDefinition::new("schemas");
const COMMANDS: TableDefinition<&str, &[u8]> = TableDefinition::new("commands");
const EVENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("events");
const EVENTS_BY_TIME: TableDefinition<&str, ()> = TableDefinition::new("events_by_time");
const TELEMETRY: TableDefinition<(&str, &str, i64, u64), &[u8]> = TableDefinition::new("telemetry");
const SERIES: TableDefinition<(&str, &str), (u64, i64)> = TableDefinition::new("telemetry_series");

/// Largest twin document accepted (the same limit as a DynamoDB item).
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

/// How long finished records are kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub events: chrono::Duration,
    pub commands: chrono::Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            events: chrono::Duration::days(30),
            commands: chrono::Duration::days(7),
        }
    }
}

/// The embedded store: cheap to clone, one database behind.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    completed: broadcast::Sender<String>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").finish_non_exhaustive()
    }
}

fn unavailable(e: impl Into<redb::Error>) -> StoreError {
    let e: redb::Error = e.into();
    StoreError::unavailable("embedded database", e)
}

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(bytes).map_err(corrupt)
}

fn to_json<T: Serialize>(v: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(v).map_err(corrupt)
}

#[derive(Serialize, Deserialize)]
struct TwinRow {
    version: u64,
    twin: Twin,
}

#[derive(Serialize, Deserialize)]
struct SchemaRow {
    compressed: Vec<u8>,
    hash: String,
    package_names: Vec<String>,
    updated_at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
struct TelemetryRow {
    name: String,
    namespace: String,
    tags: Vec<(String, String)>,
    values: Vec<(String, FieldValue)>,
}

fn name_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

fn time_key(t: DateTime<Utc>, id: &str) -> String {
    let ns = t.timestamp_nanos_opt().unwrap_or(0).max(0);
    format!("{ns:020}:{id}")
}

impl EmbeddedStore {
    /// Opens (or creates) the database file at `path`.
    pub fn open(path: &Path) -> StoreResult<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::unavailable(format!("creating {}", dir.display()), e))?;
        }
        let db = Database::create(path).map_err(unavailable)?;
        let tx = db.begin_write().map_err(unavailable)?;
        {
            tx.open_table(TWINS).map_err(unavailable)?;
            tx.open_table(TWIN_NAMES).map_err(unavailable)?;
            tx.open_table(SCHEMAS).map_err(unavailable)?;
            tx.open_table(COMMANDS).map_err(unavailable)?;
            tx.open_table(EVENTS).map_err(unavailable)?;
            tx.open_table(EVENTS_BY_TIME).map_err(unavailable)?;
            tx.open_table(TELEMETRY).map_err(unavailable)?;
            tx.open_table(SERIES).map_err(unavailable)?;
        }
        tx.commit().map_err(unavailable)?;
        let (completed, _) = broadcast::channel(1024);
        Ok(Self {
            db: Arc::new(db),
            completed,
        })
    }

    async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> StoreResult<T> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StoreError::unavailable("embedded database task", e))?
    }

    /// Deletes events and finished commands older than the retention (the embedded
    /// equivalent of DynamoDB TTL). Returns how many items went.
    pub async fn prune(&self, now: DateTime<Utc>, retention: Retention) -> StoreResult<usize> {
        self.run(move |db| {
            let tx = db.begin_write().map_err(unavailable)?;
            let mut removed = 0;
            {
                let cutoff = time_key(now - retention.events, "");
                let mut by_time = tx.open_table(EVENTS_BY_TIME).map_err(unavailable)?;
                let mut events = tx.open_table(EVENTS).map_err(unavailable)?;
                let old: Vec<String> = by_time
                    .range(..cutoff.as_str())
                    .map_err(unavailable)?
                    .filter_map(Result::ok)
                    .map(|(k, _)| k.value().to_string())
                    .collect();
                for key in old {
                    by_time.remove(key.as_str()).map_err(unavailable)?;
                    if let Some((_, id)) = key.split_once(':') {
                        events.remove(id).map_err(unavailable)?;
                    }
                    removed += 1;
                }
                let mut commands = tx.open_table(COMMANDS).map_err(unavailable)?;
                let cutoff = now - retention.commands;
                let mut old = Vec::new();
                for row in commands.iter().map_err(unavailable)? {
                    let (k, v) = row.map_err(unavailable)?;
                    let rec: CommandRecord = from_json(v.value())?;
                    if rec.status.is_final() && rec.completed_at.unwrap_or(rec.created_at) < cutoff
                    {
                        old.push(k.value().to_string());
                    }
                }
                for id in old {
                    commands.remove(id.as_str()).map_err(unavailable)?;
                    removed += 1;
                }
            }
            tx.commit().map_err(unavailable)?;
            Ok(removed)
        })
        .await
    }
}

fn read_twin(db: &Database, id: &str) -> StoreResult<Option<Versioned<Twin>>> {
    let tx = db.begin_read().map_err(unavailable)?;
    let t = tx.open_table(TWINS).map_err(unavailable)?;
    let Some(v) = t.get(id).map_err(unavailable)? else {
        return Ok(None);
    };
    let row: TwinRow = from_json(v.value())?;
    Ok(Some(Versioned {
        version: row.version,
        value: row.twin,
    }))
}

fn check_size(id: &str, bytes: &[u8]) -> StoreResult<()> {
    if bytes.len() > MAX_ITEM_BYTES {
        return Err(StoreError::TooLarge(format!(
            "twin {id} would be {} bytes; at most {MAX_ITEM_BYTES} are allowed",
            bytes.len()
        )));
    }
    Ok(())
}

#[async_trait]
impl TwinStore for EmbeddedStore {
    async fn get(&self, device_id: &str) -> StoreResult<Option<Versioned<Twin>>> {
        let id = device_id.to_string();
        self.run(move |db| read_twin(db, &id)).await
    }

    async fn get_by_name(
        &self,
        name: &str,
        namespace: &str,
    ) -> StoreResult<Option<Versioned<Twin>>> {
        let key = name_key(namespace, name);
        self.run(move |db| {
            let id = {
                let tx = db.begin_read().map_err(unavailable)?;
                let t = tx.open_table(TWIN_NAMES).map_err(unavailable)?;
                let found = t.get(key.as_str()).map_err(unavailable)?;
                match found {
                    Some(v) => v.value().to_string(),
                    None => return Ok(None),
                }
            };
            read_twin(db, &id)
        })
        .await
    }

    async fn list(&self, targets: &Targets) -> StoreResult<Vec<Versioned<Twin>>> {
        let targets = targets.clone();
        self.run(move |db| {
            let tx = db.begin_read().map_err(unavailable)?;
            let t = tx.open_table(TWINS).map_err(unavailable)?;
            let mut out = Vec::new();
            for row in t.iter().map_err(unavailable)? {
                let (_, v) = row.map_err(unavailable)?;
                let row: TwinRow = from_json(v.value())?;
                if targets.matches(&row.twin) {
                    out.push(Versioned {
                        version: row.version,
                        value: row.twin,
                    });
                }
            }
            Ok(out)
        })
        .await
    }

    async fn create(&self, twin: &Twin) -> StoreResult<Versioned<Twin>> {
        let twin = twin.clone();
        self.run(move |db| {
            let id = twin.spec.device_id.clone();
            let bytes = to_json(&TwinRow {
                version: 1,
                twin: twin.clone(),
            })?;
            check_size(&id, &bytes)?;
            let tx = db.begin_write().map_err(unavailable)?;
            {
                let mut twins = tx.open_table(TWINS).map_err(unavailable)?;
                let mut names = tx.open_table(TWIN_NAMES).map_err(unavailable)?;
                if twins.get(id.as_str()).map_err(unavailable)?.is_some() {
                    return Err(StoreError::AlreadyExists(format!("device {id}")));
                }
                let nk = name_key(&twin.meta.namespace, &twin.meta.name);
                if names.get(nk.as_str()).map_err(unavailable)?.is_some() {
                    return Err(StoreError::AlreadyExists(format!(
                        "name {}",
                        twin.display_name()
                    )));
                }
                twins
                    .insert(id.as_str(), bytes.as_slice())
                    .map_err(unavailable)?;
                names
                    .insert(nk.as_str(), id.as_str())
                    .map_err(unavailable)?;
            }
            tx.commit().map_err(unavailable)?;
            Ok(Versioned {
                version: 1,
                value: twin,
            })
        })
        .await
    }

    async fn update(&self, twin: &Twin, expected_version: u64) -> StoreResult<Versioned<Twin>> {
        let twin = twin.clone();
        self.run(move |db| {
            let id = twin.spec.device_id.clone();
            let version = expected_version + 1;
            let bytes = to_json(&TwinRow {
                version,
                twin: twin.clone(),
            })?;
            check_size(&id, &bytes)?;
            let tx = db.begin_write().map_err(unavailable)?;
            {
                let mut twins = tx.open_table(TWINS).map_err(unavailable)?;
                let mut names = tx.open_table(TWIN_NAMES).map_err(unavailable)?;
                let current: TwinRow = {
                    let found = twins.get(id.as_str()).map_err(unavailable)?;
                    match found {
                        Some(v) => from_json(v.value())?,
                        None => return Err(StoreError::NotFound(format!("device {id}"))),
                    }
                };
                if current.version != expected_version {
                    return Err(StoreError::Conflict(format!("device {id}")));
                }
                let old_key = name_key(&current.twin.meta.namespace, &current.twin.meta.name);
                let new_key = name_key(&twin.meta.namespace, &twin.meta.name);
                if old_key != new_key {
                    let taken = names
                        .get(new_key.as_str())
                        .map_err(unavailable)?
                        .map(|v| v.value().to_string());
                    if taken.is_some_and(|owner| owner != id) {
                        return Err(StoreError::AlreadyExists(format!(
                            "name {}",
                            twin.display_name()
                        )));
                    }
                    names.remove(old_key.as_str()).map_err(unavailable)?;
                    names
                        .insert(new_key.as_str(), id.as_str())
                        .map_err(unavailable)?;
                }
                twins
                    .insert(id.as_str(), bytes.as_slice())
                    .map_err(unavailable)?;
            }
            tx.commit().map_err(unavailable)?;
            Ok(Versioned {
                version,
                value: twin,
            })
        })
        .await
    }

    async fn delete(&self, device_id: &str) -> StoreResult<Option<Twin>> {
        let id = device_id.to_string();
        self.run(move |db| {
            let tx = db.begin_write().map_err(unavailable)?;
            let removed = {
                let mut twins = tx.open_table(TWINS).map_err(unavailable)?;
                let mut names = tx.open_table(TWIN_NAMES).map_err(unavailable)?;
                let row: Option<TwinRow> = {
                    let found = twins.remove(id.as_str()).map_err(unavailable)?;
                    match found {
                        Some(v) => Some(from_json(v.value())?),
                        None => None,
                    }
                };
                if let Some(row) = &row {
                    let nk = name_key(&row.twin.meta.namespace, &row.twin.meta.name);
                    names.remove(nk.as_str()).map_err(unavailable)?;
                }
                row.map(|r| r.twin)
            };
            tx.commit().map_err(unavailable)?;
            Ok(removed)
        })
        .await
    }
}

#[async_trait]
impl SchemaStore for EmbeddedStore {
    async fn get(&self, device_id: &str) -> StoreResult<Option<StoredSchema>> {
        let id = device_id.to_string();
        self.run(move |db| {
            let tx = db.begin_read().map_err(unavailable)?;
            let t = tx.open_table(SCHEMAS).map_err(unavailable)?;
            let Some(v) = t.get(id.as_str()).map_err(unavailable)? else {
                return Ok(None);
            };
            let row: SchemaRow = from_json(v.value())?;
            Ok(Some(StoredSchema {
                device_id: id,
                compressed: Bytes::from(row.compressed),
                hash: row.hash,
                package_names: row.package_names,
                updated_at: row.updated_at,
            }))
        })
        .await
    }

    async fn put(&self, schema: &StoredSchema) -> StoreResult<()> {
        let id = schema.device_id.clone();
        let bytes = to_json(&SchemaRow {
            compressed: schema.compressed.to_vec(),
            hash: schema.hash.clone(),
            package_names: schema.package_names.clone(),
            updated_at: schema.updated_at,
        })?;
        self.run(move |db| {
            let tx = db.begin_write().map_err(unavailable)?;
            tx.open_table(SCHEMAS)
                .map_err(unavailable)?
                .insert(id.as_str(), bytes.as_slice())
                .map_err(unavailable)?;
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn delete(&self, device_id: &str) -> StoreResult<()> {
        let id = device_id.to_string();
        self.run(move |db| {
            let tx = db.begin_write().map_err(unavailable)?;
            tx.open_table(SCHEMAS)
                .map_err(unavailable)?
                .remove(id.as_str())
                .map_err(unavailable)?;
            tx.commit().map_err(unavailable)
        })
        .await
    }
}

#[async_trait]
impl CommandStore for EmbeddedStore {
    async fn create(&self, record: &CommandRecord) -> StoreResult<()> {
        let id = record.id.clone();
        let bytes = to_json(record)?;
        self.run(move |db| {
            let tx = db.begin_write().map_err(unavailable)?;
            {
                let mut t = tx.open_table(COMMANDS).map_err(unavailable)?;
                if t.get(id.as_str()).map_err(unavailable)?.is_some() {
                    return Err(StoreError::AlreadyExists(format!("command {id}")));
                }
                t.insert(id.as_str(), bytes.as_slice())
                    .map_err(unavailable)?;
            }
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn get(&self, id: &str) -> StoreResult<Option<CommandRecord>> {
        let id = id.to_string();
        self.run(move |db| {
            let tx = db.begin_read().map_err(unavailable)?;
            let t = tx.open_table(COMMANDS).map_err(unavailable)?;
            let found = t.get(id.as_str()).map_err(unavailable)?;
            found.map(|v| from_json(v.value())).transpose()
        })
        .await
    }

    async fn complete(
        &self,
        id: &str,
        outcome: CommandOutcome,
    ) -> StoreResult<(CommandRecord, bool)> {
        let id = id.to_string();
        let result = self
            .run(move |db| {
                let tx = db.begin_write().map_err(unavailable)?;
                let result = {
                    let mut t = tx.open_table(COMMANDS).map_err(unavailable)?;
                    let mut rec: CommandRecord = {
                        let found = t.get(id.as_str()).map_err(unavailable)?;
                        match found {
                            Some(v) => from_json(v.value())?,
                            None => return Err(StoreError::NotFound(format!("command {id}"))),
                        }
                    };
                    let changed = rec.complete(outcome);
                    if changed {
                        let bytes = to_json(&rec)?;
                        t.insert(id.as_str(), bytes.as_slice())
                            .map_err(unavailable)?;
                    }
                    (rec, changed)
                };
                tx.commit().map_err(unavailable)?;
                Ok(result)
            })
            .await?;
        if result.1 {
            // No receiver is fine: nobody is waiting.
            let _ = self.completed.send(result.0.id.clone());
        }
        Ok(result)
    }

    async fn wait_final(&self, id: &str, timeout: Duration) -> StoreResult<Option<CommandRecord>> {
        let mut done = self.completed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let rec = CommandStore::get(self, id).await?;
            match &rec {
                Some(r) if r.status.is_final() => return Ok(rec),
                None => return Ok(None),
                _ => {}
            }
            // Wait for this id, or re-read after a lag or the deadline.
            loop {
                match tokio::time::timeout_at(deadline, done.recv()).await {
                    Err(_) => return CommandStore::get(self, id).await,
                    Ok(Ok(done_id)) if done_id == id => break,
                    Ok(Ok(_)) => continue,
                    Ok(Err(broadcast::error::RecvError::Lagged(_))) => break,
                    Ok(Err(broadcast::error::RecvError::Closed)) => {
                        tokio::time::sleep_until(deadline).await;
                        break;
                    }
                }
            }
        }
    }
}

#[async_trait]
impl EventStore for EmbeddedStore {
    async fn append(&self, events: &[Event]) -> StoreResult<()> {
        let rows: Vec<(String, String, Vec<u8>)> = events
            .iter()
            .map(|e| Ok((e.id.clone(), time_key(e.time, &e.id), to_json(e)?)))
            .collect::<StoreResult<_>>()?;
        if rows.is_empty() {
            return Ok(());
        }
        self.run(move |db| {
            let tx = db.begin_write().map_err(unavailable)?;
            {
                let mut t = tx.open_table(EVENTS).map_err(unavailable)?;
                let mut by_time = tx.open_table(EVENTS_BY_TIME).map_err(unavailable)?;
                for (id, tk, bytes) in &rows {
                    if t.get(id.as_str()).map_err(unavailable)?.is_some() {
                        continue;
                    }
                    t.insert(id.as_str(), bytes.as_slice())
                        .map_err(unavailable)?;
                    by_time.insert(tk.as_str(), ()).map_err(unavailable)?;
                }
            }
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn list(&self, filter: &EventFilter) -> StoreResult<Vec<Event>> {
        let filter = filter.clone();
        self.run(move |db| {
            let tx = db.begin_read().map_err(unavailable)?;
            let by_time = tx.open_table(EVENTS_BY_TIME).map_err(unavailable)?;
            let events = tx.open_table(EVENTS).map_err(unavailable)?;
            let from = filter.since.map(|s| time_key(s, "")).unwrap_or_default();
            let limit = filter.limit();
            let mut out = Vec::new();
            for row in by_time.range(from.as_str()..).map_err(unavailable)?.rev() {
                let (k, _) = row.map_err(unavailable)?;
                let key = k.value();
                let Some((_, id)) = key.split_once(':') else {
                    continue;
                };
                let Some(v) = events.get(id).map_err(unavailable)? else {
                    continue;
                };
                let e: Event = from_json(v.value())?;
                if filter.matches(&e) {
                    out.push(e);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            Ok(out)
        })
        .await
    }
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
                tags: r
                    .tags
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                values: r
                    .values
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
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
            .run(move |db| {
                let tx = db.begin_write().map_err(unavailable)?;
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
                tx.commit().map_err(unavailable)?;
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
        self.run(move |db| {
            let tx = db.begin_read().map_err(unavailable)?;
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

    async fn query(&self, q: &TelemetryQuery) -> StoreResult<Vec<TelemetryRecord>> {
        let q = q.clone();
        self.run(move |db| {
            let tx = db.begin_read().map_err(unavailable)?;
            let t = tx.open_table(TELEMETRY).map_err(unavailable)?;
            let from = (q.device_id.as_str(), q.measure.as_str(), q.since_ns, 0u64);
            let to = (q.device_id.as_str(), q.measure.as_str(), i64::MAX, u64::MAX);
            let measure: Arc<str> = Arc::from(q.measure.as_str());
            let mut out = Vec::new();
            for row in t.range(from..=to).map_err(unavailable)?.rev() {
                let (k, v) = row.map_err(unavailable)?;
                let (device, _, time_ns, seq) = k.value();
                let row: TelemetryRow = from_json(v.value())?;
                out.push(TelemetryRecord {
                    device_id: device.to_string(),
                    name: row.name,
                    namespace: row.namespace,
                    measure: measure.clone(),
                    time_ns,
                    seq,
                    tags: row
                        .tags
                        .into_iter()
                        .map(|(k, v)| (Arc::from(k), Arc::from(v)))
                        .collect(),
                    values: row
                        .values
                        .into_iter()
                        .map(|(k, v)| (Arc::from(k), v))
                        .collect(),
                });
                if out.len() >= q.limit.max(1) {
                    break;
                }
            }
            out.reverse();
            Ok(out)
        })
        .await
    }
}
