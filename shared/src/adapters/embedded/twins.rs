//! Twins in the embedded store: `twins` (id -> version and twin), `twin_names`
//! (namespace/name -> id) and `twin_tombstones` (id -> tombstone of a deleted device),
//! written together in one transaction.

use std::ops::Bound;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redb::{Database, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::store::{
    from_json, get_json, read, to_json, unavailable, EmbeddedStore, TWINS, TWIN_NAMES,
    TWIN_TOMBSTONES,
};
use super::MAX_ITEM_BYTES;
use crate::domain::{
    page::{encode_token, Page, PageRequest},
    Targets, Twin, Versioned,
};
use crate::ports::*;

#[derive(Serialize, Deserialize)]
struct TwinRow {
    version: u64,
    twin: Twin,
}

impl From<TwinRow> for Versioned<Twin> {
    fn from(row: TwinRow) -> Self {
        Versioned {
            version: row.version,
            value: row.twin,
        }
    }
}

fn name_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

fn read_twin(db: &Database, id: &str) -> StoreResult<Option<Versioned<Twin>>> {
    read(db, |tx| {
        let t = tx.open_table(TWINS).map_err(unavailable)?;
        Ok(get_json::<TwinRow>(&t, id)?.map(Into::into))
    })
}

/// The row of `twin` at `version`, refused when over [`MAX_ITEM_BYTES`].
fn twin_row(twin: &Twin, version: u64) -> StoreResult<Vec<u8>> {
    let bytes = to_json(&TwinRow {
        version,
        twin: twin.clone(),
    })?;
    if bytes.len() > MAX_ITEM_BYTES {
        return Err(StoreError::TooLarge(format!(
            "twin {} would be {} bytes; at most {MAX_ITEM_BYTES} are allowed",
            twin.spec.device_id,
            bytes.len()
        )));
    }
    Ok(bytes)
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
            let id = read(db, |tx| {
                let t = tx.open_table(TWIN_NAMES).map_err(unavailable)?;
                let found = t.get(key.as_str()).map_err(unavailable)?;
                Ok(found.map(|v| v.value().to_string()))
            })?;
            match id {
                Some(id) => read_twin(db, &id),
                None => Ok(None),
            }
        })
        .await
    }

    /// Pages in device id order; the token is the last id of the page.
    async fn list_page(
        &self,
        targets: &Targets,
        page: &PageRequest,
    ) -> StoreResult<Page<Versioned<Twin>>> {
        let targets = targets.clone();
        let after: Option<String> = page.position()?;
        let limit = page.limit.max(1);
        self.reading(move |tx| {
            let t = tx.open_table(TWINS).map_err(unavailable)?;
            let rows = match &after {
                Some(id) => t.range::<&str>((Bound::Excluded(id.as_str()), Bound::Unbounded)),
                None => t.range::<&str>(..),
            }
            .map_err(unavailable)?;
            let mut items: Vec<Versioned<Twin>> = Vec::new();
            for row in rows {
                let (_, v) = row.map_err(unavailable)?;
                let row: TwinRow = from_json(v.value())?;
                if targets.matches(&row.twin) {
                    if items.len() == limit {
                        let last = items.last().map(|t| t.value.spec.device_id.clone());
                        return Ok(Page {
                            items,
                            next_token: last.map(|id| encode_token(&id)),
                        });
                    }
                    items.push(row.into());
                }
            }
            Ok(Page::last(items))
        })
        .await
    }

    async fn stale(&self, now: DateTime<Utc>, page: &PageRequest) -> StoreResult<Page<String>> {
        let after: Option<String> = page.position()?;
        let limit = page.limit.max(1);
        self.reading(move |tx| {
            let t = tx.open_table(TWINS).map_err(unavailable)?;
            let rows = match &after {
                Some(id) => t.range::<&str>((Bound::Excluded(id.as_str()), Bound::Unbounded)),
                None => t.range::<&str>(..),
            }
            .map_err(unavailable)?;
            let mut ids = Vec::new();
            for row in rows {
                let (_, v) = row.map_err(unavailable)?;
                let row: TwinRow = from_json(v.value())?;
                let status = &row.twin.status;
                if status.online && status.stale_at.is_none_or(|t| t < now) {
                    if ids.len() == limit {
                        let next_token = ids.last().map(encode_token);
                        return Ok(Page {
                            items: ids,
                            next_token,
                        });
                    }
                    ids.push(row.twin.spec.device_id);
                }
            }
            Ok(Page::last(ids))
        })
        .await
    }

    async fn create(&self, twin: &Twin) -> StoreResult<Versioned<Twin>> {
        let twin = twin.clone();
        let bytes = twin_row(&twin, 1)?;
        self.writing(move |tx| {
            let created = insert_new(tx, twin, &bytes)?;
            let mut tombstones = tx.open_table(TWIN_TOMBSTONES).map_err(unavailable)?;
            tombstones
                .remove(created.value.spec.device_id.as_str())
                .map_err(unavailable)?;
            Ok(created)
        })
        .await
    }

    async fn provision(
        &self,
        twin: &Twin,
        revive_after: Option<DateTime<Utc>>,
    ) -> StoreResult<Provisioned> {
        let twin = twin.clone();
        let bytes = twin_row(&twin, 1)?;
        self.writing(move |tx| {
            let id = twin.spec.device_id.clone();
            let mut tombstones = tx.open_table(TWIN_TOMBSTONES).map_err(unavailable)?;
            if let Some(t) = get_json::<Tombstone>(&tombstones, &id)? {
                if revive_after.is_none_or(|r| r <= t.deleted_at) {
                    return Ok(Provisioned::Deleted(t));
                }
                tombstones.remove(id.as_str()).map_err(unavailable)?;
            }
            drop(tombstones);
            insert_new(tx, twin, &bytes).map(Provisioned::Created)
        })
        .await
    }

    async fn update(&self, twin: &Twin, expected_version: u64) -> StoreResult<Versioned<Twin>> {
        let twin = twin.clone();
        let version = expected_version + 1;
        let bytes = twin_row(&twin, version)?;
        self.writing(move |tx| {
            let id = twin.spec.device_id.as_str();
            let mut twins = tx.open_table(TWINS).map_err(unavailable)?;
            let mut names = tx.open_table(TWIN_NAMES).map_err(unavailable)?;
            let Some(current) = get_json::<TwinRow>(&twins, id)? else {
                return Err(StoreError::NotFound(format!("device {id}")));
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
                names.insert(new_key.as_str(), id).map_err(unavailable)?;
            }
            twins.insert(id, bytes.as_slice()).map_err(unavailable)?;
            Ok(Versioned {
                version,
                value: twin,
            })
        })
        .await
    }

    async fn delete(&self, device_id: &str, at: DateTime<Utc>) -> StoreResult<Option<Twin>> {
        let id = device_id.to_string();
        let tombstone = to_json(&Tombstone {
            device_id: id.clone(),
            deleted_at: at,
        })?;
        self.writing(move |tx| {
            let mut twins = tx.open_table(TWINS).map_err(unavailable)?;
            let mut names = tx.open_table(TWIN_NAMES).map_err(unavailable)?;
            let row: Option<TwinRow> = {
                let found = twins.remove(id.as_str()).map_err(unavailable)?;
                found.map(|v| from_json(v.value())).transpose()?
            };
            if let Some(row) = &row {
                let nk = name_key(&row.twin.meta.namespace, &row.twin.meta.name);
                names.remove(nk.as_str()).map_err(unavailable)?;
                let mut tombstones = tx.open_table(TWIN_TOMBSTONES).map_err(unavailable)?;
                tombstones
                    .insert(id.as_str(), tombstone.as_slice())
                    .map_err(unavailable)?;
            }
            Ok(row.map(|r| r.twin))
        })
        .await
    }

    async fn tombstone(&self, device_id: &str) -> StoreResult<Option<Tombstone>> {
        let id = device_id.to_string();
        self.reading(move |tx| {
            let t = tx.open_table(TWIN_TOMBSTONES).map_err(unavailable)?;
            get_json(&t, &id)
        })
        .await
    }
}

/// Inserts a new twin (version 1) and its name, refusing a taken id or name.
fn insert_new(tx: &WriteTransaction, twin: Twin, bytes: &[u8]) -> StoreResult<Versioned<Twin>> {
    let id = twin.spec.device_id.as_str();
    let mut twins = tx.open_table(TWINS).map_err(unavailable)?;
    let mut names = tx.open_table(TWIN_NAMES).map_err(unavailable)?;
    if twins.get(id).map_err(unavailable)?.is_some() {
        return Err(StoreError::AlreadyExists(format!("device {id}")));
    }
    let nk = name_key(&twin.meta.namespace, &twin.meta.name);
    if names.get(nk.as_str()).map_err(unavailable)?.is_some() {
        return Err(StoreError::AlreadyExists(format!(
            "name {}",
            twin.display_name()
        )));
    }
    twins.insert(id, bytes).map_err(unavailable)?;
    names.insert(nk.as_str(), id).map_err(unavailable)?;
    drop((twins, names));
    Ok(Versioned {
        version: 1,
        value: twin,
    })
}
