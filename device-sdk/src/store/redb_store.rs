//! [`Store`] on redb: one file, `store.redb`, in the store folder.
//!
//! Three tables: `records` (key -> 13-byte header + payload), `quarantine` (records
//! moved out of the queue, same layout) and `meta` (name -> bytes, including the
//! counters of `records` so that opening a large store reads nothing but them). Every
//! append, removal and expiry is one transaction committed with
//! [`Durability::Immediate`] (fsync): callers batch.
//!
//! A file redb finds corrupt at open is renamed `store.redb.corrupt-{unix ns}-{n}` and a
//! new one is started ([`RedbStore::moved_aside`]); a record that cannot be decoded is
//! skipped by [`Store::read_page`].

use std::path::{Path, PathBuf};

use bytes::Bytes;
use redb::{
    Database, Durability, ReadableTable, ReadableTableMetadata, Table, TableDefinition,
    WriteTransaction,
};

use super::{Page, Record, RecordKind, Store, StoreError, StoreStats, HEADER_LEN};

const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("records");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const QUARANTINE: TableDefinition<u64, &[u8]> = TableDefinition::new("quarantine");
/// The counters of `records` (records, messages, bytes), kept in `meta`.
const STATS_KEY: &str = "\0stats";

/// redb's page cache: small, so that memory does not grow with the queue on disk.
const CACHE_BYTES: usize = 4 * 1024 * 1024;

/// The file name of the database inside the store folder.
pub const STORE_FILE: &str = "store.redb";

/// The offline store of a device, in `{folder}/store.redb`.
pub struct RedbStore {
    db: Database,
    path: PathBuf,
    folder: PathBuf,
    stats: StoreStats,
    moved_aside: Option<PathBuf>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .field("stats", &self.stats)
            .finish()
    }
}

fn db_err(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Database {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn encode(r: &Record) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER_LEN + r.payload.len());
    v.push(r.kind as u8);
    v.extend_from_slice(&r.created_ns.to_be_bytes());
    v.extend_from_slice(&r.messages.to_be_bytes());
    v.extend_from_slice(&r.payload);
    v
}

/// kind, created_ns, messages.
fn header(key: u64, v: &[u8]) -> Result<(RecordKind, i64, u32), StoreError> {
    let corrupt = || StoreError::Corrupt { key };
    if v.len() < HEADER_LEN {
        return Err(corrupt());
    }
    let kind = RecordKind::from_u8(v[0]).ok_or_else(corrupt)?;
    let created = i64::from_be_bytes(v[1..9].try_into().map_err(|_| corrupt())?);
    let messages = u32::from_be_bytes(v[9..13].try_into().map_err(|_| corrupt())?);
    Ok((kind, created, messages))
}

/// Whether redb refused to open the file because its content is not a database.
fn is_corrupt(e: &redb::DatabaseError) -> bool {
    match e {
        redb::DatabaseError::UpgradeRequired(_) => true,
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(_)) => true,
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => matches!(
            io.kind(),
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData
        ),
        _ => false,
    }
}

fn decode(key: u64, v: &[u8]) -> Result<Record, StoreError> {
    let (kind, created_ns, messages) = header(key, v)?;
    Ok(Record {
        key,
        kind,
        created_ns,
        messages,
        payload: Bytes::copy_from_slice(&v[HEADER_LEN..]),
    })
}

fn stats_bytes(s: &StoreStats) -> [u8; 24] {
    let mut b = [0u8; 24];
    b[0..8].copy_from_slice(&s.records.to_be_bytes());
    b[8..16].copy_from_slice(&s.messages.to_be_bytes());
    b[16..24].copy_from_slice(&s.bytes.to_be_bytes());
    b
}

impl RedbStore {
    /// Opens (or creates) the store in `folder`.
    pub fn open(folder: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(folder).map_err(|source| StoreError::CreateDir {
            path: folder.to_path_buf(),
            source,
        })?;
        let path = folder.join(STORE_FILE);
        let create = || {
            Database::builder()
                .set_cache_size(CACHE_BYTES)
                .create(&path)
        };
        let mut moved_aside = None;
        let db = match create() {
            Ok(db) => db,
            Err(e) if is_corrupt(&e) => {
                // Never over an earlier one: the first free name.
                let ns = crate::session::unix_ns();
                let aside = (0u32..1000)
                    .map(|n| folder.join(format!("{STORE_FILE}.corrupt-{ns}-{n}")))
                    .find(|p| !p.exists())
                    .unwrap_or_else(|| folder.join(format!("{STORE_FILE}.corrupt")));
                std::fs::rename(&path, &aside).map_err(|source| StoreError::MoveAside {
                    path: path.clone(),
                    source,
                })?;
                tracing::error!(
                    file = %path.display(),
                    moved_to = %aside.display(),
                    "the offline store is corrupt ({e}): moved aside, starting a new one"
                );
                moved_aside = Some(aside);
                create().map_err(|e| db_err(&path, e))?
            }
            Err(e) => return Err(db_err(&path, e)),
        };
        let mut store = Self {
            db,
            path,
            folder: folder.to_path_buf(),
            stats: StoreStats::default(),
            moved_aside,
        };
        // Create the tables and read the counters.
        let tx = store.begin()?;
        {
            let records = tx.open_table(RECORDS).map_err(|e| db_err(&store.path, e))?;
            let meta = tx.open_table(META).map_err(|e| db_err(&store.path, e))?;
            let counters = meta
                .get(STATS_KEY)
                .map_err(|e| db_err(&store.path, e))?
                .map(|v| v.value().to_vec());
            store.stats = match counters {
                Some(c) if c.len() == 24 => StoreStats {
                    records: u64::from_be_bytes(c[0..8].try_into().unwrap_or_default()),
                    messages: u64::from_be_bytes(c[8..16].try_into().unwrap_or_default()),
                    bytes: u64::from_be_bytes(c[16..24].try_into().unwrap_or_default()),
                    ..StoreStats::default()
                },
                _ => StoreStats::default(),
            };
            store.stats.records = records.len().map_err(|e| db_err(&store.path, e))?;
            store.stats.first_key = records
                .first()
                .map_err(|e| db_err(&store.path, e))?
                .map(|(k, _)| k.value());
            store.stats.last_key = records
                .last()
                .map_err(|e| db_err(&store.path, e))?
                .map(|(k, _)| k.value());
        }
        tx.commit().map_err(|e| db_err(&store.path, e))?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where a corrupt file found at open was moved (a new one was started).
    pub fn moved_aside(&self) -> Option<&Path> {
        self.moved_aside.as_deref()
    }

    /// Records in the quarantine.
    pub fn quarantined(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read().map_err(|e| db_err(&self.path, e))?;
        match tx.open_table(QUARANTINE) {
            Ok(table) => table.len().map_err(|e| db_err(&self.path, e)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(e) => Err(db_err(&self.path, e)),
        }
    }

    fn begin(&self) -> Result<WriteTransaction, StoreError> {
        let mut tx = self.db.begin_write().map_err(|e| db_err(&self.path, e))?;
        tx.set_durability(Durability::Immediate);
        Ok(tx)
    }

    /// Commits `tx` after saving the counters `next` in it; adopts them on success.
    fn commit(&mut self, tx: WriteTransaction, mut next: StoreStats) -> Result<(), StoreError> {
        {
            let mut meta = tx.open_table(META).map_err(|e| db_err(&self.path, e))?;
            meta.insert(STATS_KEY, &stats_bytes(&next)[..])
                .map_err(|e| db_err(&self.path, e))?;
            let records = tx.open_table(RECORDS).map_err(|e| db_err(&self.path, e))?;
            next.records = records.len().map_err(|e| db_err(&self.path, e))?;
            next.first_key = records
                .first()
                .map_err(|e| db_err(&self.path, e))?
                .map(|(k, _)| k.value());
            next.last_key = records
                .last()
                .map_err(|e| db_err(&self.path, e))?
                .map(|(k, _)| k.value());
        }
        tx.commit().map_err(|e| db_err(&self.path, e))?;
        self.stats = next;
        Ok(())
    }

    /// Removes the first record of `table`, adding it to `removed`.
    fn pop_first(
        &self,
        table: &mut Table<u64, &[u8]>,
        removed: &mut StoreStats,
    ) -> Result<bool, StoreError> {
        let first = table
            .first()
            .map_err(|e| db_err(&self.path, e))?
            .map(|(k, v)| (k.value(), header(k.value(), v.value()), v.value().len()));
        let Some((key, head, len)) = first else {
            return Ok(false);
        };
        // A corrupt record is dropped with the old ones.
        let messages = head.map_or(0, |(_, _, messages)| messages);
        table.remove(key).map_err(|e| db_err(&self.path, e))?;
        removed.records += 1;
        removed.messages += u64::from(messages);
        removed.bytes += len as u64 + 8;
        Ok(true)
    }

    fn minus(&self, removed: &StoreStats) -> StoreStats {
        StoreStats {
            records: self.stats.records.saturating_sub(removed.records),
            messages: self.stats.messages.saturating_sub(removed.messages),
            bytes: self.stats.bytes.saturating_sub(removed.bytes),
            ..self.stats
        }
    }
}

impl Store for RedbStore {
    fn append(&mut self, records: &[Record]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let tx = self.begin()?;
        let mut next = self.stats;
        {
            let mut table = tx.open_table(RECORDS).map_err(|e| db_err(&self.path, e))?;
            for r in records {
                table
                    .insert(r.key, encode(r).as_slice())
                    .map_err(|e| db_err(&self.path, e))?;
                next.messages += u64::from(r.messages);
                next.bytes += r.stored_len();
            }
        }
        self.commit(tx, next)
    }

    fn read_after(&self, after: Option<u64>, max: usize) -> Result<Vec<Record>, StoreError> {
        let start = match after {
            Some(u64::MAX) => return Ok(Vec::new()),
            Some(a) => a + 1,
            None => 0,
        };
        let tx = self.db.begin_read().map_err(|e| db_err(&self.path, e))?;
        let table = tx.open_table(RECORDS).map_err(|e| db_err(&self.path, e))?;
        let mut out = Vec::new();
        for entry in table.range(start..).map_err(|e| db_err(&self.path, e))? {
            if out.len() >= max {
                break;
            }
            let (k, v) = entry.map_err(|e| db_err(&self.path, e))?;
            out.push(decode(k.value(), v.value())?);
        }
        Ok(out)
    }

    fn read_page(&self, after: Option<u64>, max: usize) -> Result<Page, StoreError> {
        let start = match after {
            Some(u64::MAX) => return Ok(Page::default()),
            Some(a) => a + 1,
            None => 0,
        };
        let tx = self.db.begin_read().map_err(|e| db_err(&self.path, e))?;
        let table = tx.open_table(RECORDS).map_err(|e| db_err(&self.path, e))?;
        let mut page = Page::default();
        for entry in table.range(start..).map_err(|e| db_err(&self.path, e))? {
            if page.len() >= max {
                break;
            }
            let (k, v) = entry.map_err(|e| db_err(&self.path, e))?;
            match decode(k.value(), v.value()) {
                Ok(record) => page.records.push(record),
                Err(_) => page.corrupt.push(k.value()),
            }
        }
        Ok(page)
    }

    fn quarantine(&mut self, key: u64) -> Result<(), StoreError> {
        let tx = self.begin()?;
        let mut removed = StoreStats::default();
        {
            let mut table = tx.open_table(RECORDS).map_err(|e| db_err(&self.path, e))?;
            let mut quarantine = tx
                .open_table(QUARANTINE)
                .map_err(|e| db_err(&self.path, e))?;
            let value = table
                .remove(key)
                .map_err(|e| db_err(&self.path, e))?
                .map(|v| v.value().to_vec());
            if let Some(v) = value {
                removed.records = 1;
                removed.messages = u64::from(header(key, &v).map(|h| h.2).unwrap_or(0));
                removed.bytes = v.len() as u64 + 8;
                quarantine
                    .insert(key, v.as_slice())
                    .map_err(|e| db_err(&self.path, e))?;
            }
        }
        let next = self.minus(&removed);
        self.commit(tx, next)
    }

    fn remove(&mut self, keys: &[u64]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let tx = self.begin()?;
        let mut removed = StoreStats::default();
        {
            let mut table = tx.open_table(RECORDS).map_err(|e| db_err(&self.path, e))?;
            for k in keys {
                let gone = table
                    .remove(*k)
                    .map_err(|e| db_err(&self.path, e))?
                    .map(|v| {
                        (
                            header(*k, v.value()).map(|h| h.2).unwrap_or(0),
                            v.value().len(),
                        )
                    });
                if let Some((messages, len)) = gone {
                    removed.records += 1;
                    removed.messages += u64::from(messages);
                    removed.bytes += len as u64 + 8;
                }
            }
        }
        let next = self.minus(&removed);
        self.commit(tx, next)
    }

    fn expire(&mut self, cutoff_ns: i64) -> Result<StoreStats, StoreError> {
        if self.stats.records == 0 {
            return Ok(StoreStats::default());
        }
        let tx = self.begin()?;
        let mut removed = StoreStats::default();
        {
            let mut table = tx.open_table(RECORDS).map_err(|e| db_err(&self.path, e))?;
            let mut old = Vec::new();
            for entry in table.iter().map_err(|e| db_err(&self.path, e))? {
                let (k, v) = entry.map_err(|e| db_err(&self.path, e))?;
                let len = v.value().len() as u64 + 8;
                match header(k.value(), v.value()) {
                    // Written before the clock was set: never too old.
                    Ok((_, created, _)) if created < crate::clock::CLOCK_FLOOR_NS => {}
                    Ok((_, created, messages)) if created < cutoff_ns => {
                        old.push((k.value(), u64::from(messages), len));
                    }
                    Ok(_) => break,
                    // A corrupt record is dropped with the old ones.
                    Err(_) => old.push((k.value(), 0, len)),
                }
            }
            for (key, messages, len) in old {
                table.remove(key).map_err(|e| db_err(&self.path, e))?;
                removed.records += 1;
                removed.messages += messages;
                removed.bytes += len;
            }
        }
        if removed.records == 0 {
            tx.abort().map_err(|e| db_err(&self.path, e))?;
            return Ok(removed);
        }
        let next = self.minus(&removed);
        self.commit(tx, next)?;
        Ok(removed)
    }

    fn drop_oldest(&mut self, bytes: u64) -> Result<StoreStats, StoreError> {
        let tx = self.begin()?;
        let mut removed = StoreStats::default();
        {
            let mut table = tx.open_table(RECORDS).map_err(|e| db_err(&self.path, e))?;
            while removed.bytes < bytes && self.pop_first(&mut table, &mut removed)? {}
        }
        let next = self.minus(&removed);
        self.commit(tx, next)?;
        Ok(removed)
    }

    fn stats(&self) -> StoreStats {
        self.stats
    }

    fn disk_used_percent(&self) -> Option<f64> {
        super::disk_used_percent(&self.folder)
    }

    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| db_err(&self.path, e))?;
        let table = tx.open_table(META).map_err(|e| db_err(&self.path, e))?;
        let value = table
            .get(key)
            .map_err(|e| db_err(&self.path, e))?
            .map(|v| v.value().to_vec());
        Ok(value)
    }

    fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let tx = self.begin()?;
        {
            let mut table = tx.open_table(META).map_err(|e| db_err(&self.path, e))?;
            table
                .insert(key, value)
                .map_err(|e| db_err(&self.path, e))?;
        }
        tx.commit().map_err(|e| db_err(&self.path, e))
    }

    fn scan_meta(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| db_err(&self.path, e))?;
        let table = tx.open_table(META).map_err(|e| db_err(&self.path, e))?;
        let mut out = Vec::new();
        for entry in table.range(prefix..).map_err(|e| db_err(&self.path, e))? {
            let (k, v) = entry.map_err(|e| db_err(&self.path, e))?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }
}
