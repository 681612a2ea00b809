//! Twins on DynamoDB: the twin item, its name reservation and its label index items,
//! written together in one transaction; a deleted device's tombstone item (with a TTL)
//! is written in the delete's transaction and checked by auto-provisioning's.

use std::{collections::BTreeSet, time::Duration};

use async_trait::async_trait;
use aws_sdk_dynamodb::{types::TransactWriteItem, Client};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::table::{decode, decode_all, encode, values, Condition, Key, Table, TxError, Written};
use super::MAX_ITEM_BYTES;
use crate::adapters::aws::backoff;
use crate::domain::{presence::Beat, Page, PageRequest, Targets, Twin, Versioned};
use crate::ports::*;

#[path = "twins_pages.rs"]
mod pages;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TwinItem {
    pk: String,
    sk: String,
    gsi1pk: String,
    gsi1sk: String,
    /// While online: `ONLINE#<shard>` and the zero-padded `status.staleAt`, the sparse
    /// index the presence sweep reads (absent while offline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gsi2pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gsi2sk: Option<String>,
    /// `status.lastHeartbeat` in Unix ms, for the condition of the heartbeat write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    heartbeat_ms: Option<i64>,
    version: u64,
    device_id: String,
    twin: Twin,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NameItem {
    pk: String,
    sk: String,
    gsi1pk: String,
    gsi1sk: String,
    device_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LabelItem {
    pk: String,
    sk: String,
    device_id: String,
}

/// A deleted device (see [`Tombstone`]); expires with the table's TTL.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TombstoneItem {
    pk: String,
    sk: String,
    device_id: String,
    deleted_at: DateTime<Utc>,
    /// `deleted_at` in Unix ms, for the condition of a reviving hello.
    deleted_at_ms: i64,
    expires_at: i64,
}

const TWIN_SK: &str = "TWIN";
const NAME_SK: &str = "NAME";
const TOMBSTONE_SK: &str = "TOMBSTONE";

fn twin_key(id: &str) -> Key {
    Key::new(format!("DEV#{id}"), TWIN_SK)
}

fn tombstone_key(id: &str) -> Key {
    Key::new(format!("DEV#{id}"), TOMBSTONE_SK)
}

fn name_key(namespace: &str, name: &str) -> Key {
    Key::new(format!("NAME#{namespace}/{name}"), NAME_SK)
}

fn label_pk(k: &str, v: &str) -> String {
    format!("LABEL#{k}={v}")
}

/// Partitions of the online index: the sweep reads each, and no partition takes all
/// heartbeat writes of a fleet.
pub(super) const ONLINE_SHARDS: u64 = 8;

fn online_pk(id: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    format!("ONLINE#{}", h.finish() % ONLINE_SHARDS)
}

/// A time as a sort key: Unix ms offset so that every `i64` sorts, zero-padded.
fn stale_sk(t: DateTime<Utc>) -> String {
    let ms = i128::from(t.timestamp_millis()) - i128::from(i64::MIN);
    format!("{ms:020}")
}

/// The device id of a twin item's key (`DEV#<id>`).
fn id_of_pk(pk: &str) -> Option<&str> {
    pk.strip_prefix("DEV#")
}

impl TwinItem {
    fn new(twin: &Twin, version: u64) -> StoreResult<Self> {
        let id = twin.spec.device_id.clone();
        let size = serde_json::to_vec(twin)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?
            .len();
        if size > MAX_ITEM_BYTES - 1024 {
            return Err(StoreError::TooLarge(format!(
                "twin {id} would be {size} bytes; DynamoDB stores at most {MAX_ITEM_BYTES} per item"
            )));
        }
        let key = twin_key(&id);
        let status = &twin.status;
        let online = status.online.then(|| {
            // A twin written before `staleAt` existed is stale at once: the sweep reads
            // it and decides by its last heartbeat.
            let due = status.stale_at.unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
            (online_pk(&id), stale_sk(due))
        });
        let (gsi2pk, gsi2sk) = online.unzip();
        Ok(Self {
            pk: key.pk,
            sk: key.sk,
            gsi1pk: format!("NS#{}", twin.meta.namespace),
            gsi1sk: twin.meta.name.clone(),
            gsi2pk,
            gsi2sk,
            heartbeat_ms: status.last_heartbeat.map(|t| t.timestamp_millis()),
            version,
            device_id: id,
            twin: twin.clone(),
        })
    }
}

impl From<TwinItem> for Versioned<Twin> {
    fn from(i: TwinItem) -> Self {
        Versioned {
            version: i.version,
            value: i.twin,
        }
    }
}

fn name_item(twin: &Twin) -> NameItem {
    let key = name_key(&twin.meta.namespace, &twin.meta.name);
    NameItem {
        pk: key.pk,
        sk: key.sk,
        gsi1pk: format!("NAME#{}", twin.meta.name),
        gsi1sk: twin.meta.namespace.clone(),
        device_id: twin.spec.device_id.clone(),
    }
}

fn label_set(twin: &Twin) -> BTreeSet<(String, String)> {
    twin.meta
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Twins on DynamoDB (see the `dynamodb` module docs for the items).
#[derive(Clone, Debug)]
pub struct DynamoTwinStore {
    table: Table,
}

impl DynamoTwinStore {
    pub fn new(client: Client, table: &str) -> Self {
        Self {
            table: Table::new(client, table),
        }
    }

    async fn read(&self, id: &str) -> StoreResult<Option<TwinItem>> {
        match self.table.get(&twin_key(id)).await? {
            Some(item) => decode("twin", item).map(Some),
            None => Ok(None),
        }
    }

    async fn by_ids(&self, ids: impl IntoIterator<Item = String>) -> StoreResult<Vec<TwinItem>> {
        let keys: Vec<Key> = ids.into_iter().map(|id| twin_key(&id)).collect();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        decode_all("twin", self.table.batch_get(keys).await?)
    }
}

#[async_trait]
impl TwinStore for DynamoTwinStore {
    async fn get(&self, device_id: &str) -> StoreResult<Option<Versioned<Twin>>> {
        Ok(self.read(device_id).await?.map(Into::into))
    }

    async fn get_by_name(
        &self,
        name: &str,
        namespace: &str,
    ) -> StoreResult<Option<Versioned<Twin>>> {
        let Some(item) = self.table.get(&name_key(namespace, name)).await? else {
            return Ok(None);
        };
        let n: NameItem = decode("name reservation", item)?;
        self.get(&n.device_id).await
    }

    async fn create(&self, twin: &Twin) -> StoreResult<Versioned<Twin>> {
        let item = TwinItem::new(twin, 1)?;
        let mut actions = self.create_actions(twin, &item)?;
        actions.push(self.table.delete(&tombstone_key(&item.device_id), None)?);
        match self.table.transact(actions).await {
            Ok(()) => Ok(created(twin)),
            Err(TxError::Condition(failed)) => Err(already_exists(twin, &failed)),
            Err(TxError::Store(e)) => Err(e),
        }
    }

    async fn provision(
        &self,
        twin: &Twin,
        revive_after: Option<DateTime<Utc>>,
    ) -> StoreResult<Provisioned> {
        let item = TwinItem::new(twin, 1)?;
        let mut actions = self.create_actions(twin, &item)?;
        let tomb = tombstone_key(&item.device_id);
        let tomb_at = actions.len();
        actions.push(match revive_after {
            None => self
                .table
                .check(&tomb, ("attribute_not_exists(pk)", &[], None))?,
            Some(t) => {
                let after = values(serde_json::json!({ ":t": t.timestamp_millis() }))?;
                self.table.delete(
                    &tomb,
                    Some((
                        "attribute_not_exists(pk) OR #d < :t",
                        &[("#d", "deletedAtMs")],
                        Some(after),
                    )),
                )?
            }
        });
        match self.table.transact(actions).await {
            Ok(()) => Ok(Provisioned::Created(created(twin))),
            Err(TxError::Condition(failed))
                if failed.contains(&tomb_at) && !failed.contains(&0) =>
            {
                match self.tombstone(&item.device_id).await? {
                    Some(t) => Ok(Provisioned::Deleted(t)),
                    // Created again in between: the caller reads again.
                    None => Err(StoreError::Conflict(format!("device {}", item.device_id))),
                }
            }
            Err(TxError::Condition(failed)) => Err(already_exists(twin, &failed)),
            Err(TxError::Store(e)) => Err(e),
        }
    }

    async fn update(&self, twin: &Twin, expected_version: u64) -> StoreResult<Versioned<Twin>> {
        let id = twin.spec.device_id.clone();
        let Some(current) = self.read(&id).await? else {
            return Err(StoreError::NotFound(format!("device {id}")));
        };
        if current.version != expected_version {
            return Err(StoreError::Conflict(format!("device {id}")));
        }
        self.write(&current.twin, twin, expected_version).await
    }

    /// No read: the version condition proves `current` is what is stored.
    async fn replace(
        &self,
        current: &Versioned<Twin>,
        twin: &Twin,
    ) -> StoreResult<Versioned<Twin>> {
        self.write(&current.value, twin, current.version).await
    }

    async fn list_page(
        &self,
        targets: &Targets,
        page: &PageRequest,
    ) -> StoreResult<Page<Versioned<Twin>>> {
        self.page_of(targets, page).await
    }

    async fn beat(&self, device_id: &str, beat: &Beat) -> StoreResult<BeatWrite> {
        self.heartbeat(device_id, beat).await
    }

    async fn stale(&self, now: DateTime<Utc>, page: &PageRequest) -> StoreResult<Page<String>> {
        self.stale_page(now, page).await
    }

    async fn delete(&self, device_id: &str, at: DateTime<Utc>) -> StoreResult<Option<Twin>> {
        let key = tombstone_key(device_id);
        let tombstone = TombstoneItem {
            pk: key.pk,
            sk: key.sk,
            device_id: device_id.to_string(),
            deleted_at: at,
            deleted_at_ms: at.timestamp_millis(),
            expires_at: (at + chrono::Duration::days(TOMBSTONE_TTL_DAYS)).timestamp(),
        };
        for attempt in 1..=crate::service::MAX_TWIN_ATTEMPTS as u32 {
            let Some(current) = self.read(device_id).await? else {
                return Ok(None);
            };
            let t = &self.table;
            let expected = values(serde_json::json!({ ":v": current.version }))?;
            let mut actions = vec![
                t.delete(
                    &twin_key(device_id),
                    Some(("#v = :v", &[("#v", "version")], Some(expected))),
                )?,
                t.delete(
                    &name_key(&current.twin.meta.namespace, &current.twin.meta.name),
                    None,
                )?,
                t.put(encode("tombstone", &tombstone)?, None)?,
            ];
            for (k, v) in label_set(&current.twin) {
                actions.push(t.delete(&Key::new(label_pk(&k, &v), device_id), None)?);
            }
            match t.transact(actions).await {
                Ok(()) => return Ok(Some(current.twin)),
                Err(TxError::Condition(_)) => {
                    tokio::time::sleep(backoff(
                        attempt,
                        Duration::from_millis(10),
                        Duration::from_millis(500),
                    ))
                    .await;
                }
                Err(TxError::Store(e)) => return Err(e),
            }
        }
        Err(StoreError::Conflict(format!("device {device_id}")))
    }

    async fn tombstone(&self, device_id: &str) -> StoreResult<Option<Tombstone>> {
        let Some(item) = self.table.get(&tombstone_key(device_id)).await? else {
            return Ok(None);
        };
        let t: TombstoneItem = decode("tombstone", item)?;
        Ok(Some(Tombstone {
            device_id: t.device_id,
            deleted_at: t.deleted_at,
        }))
    }
}

impl DynamoTwinStore {
    /// Writes `twin` over `old`, stored at `expected_version`: one conditional PutItem
    /// when its name and labels stay, else a transaction with the name reservation and
    /// label index items.
    async fn write(
        &self,
        old: &Twin,
        twin: &Twin,
        expected_version: u64,
    ) -> StoreResult<Versioned<Twin>> {
        let id = twin.spec.device_id.clone();
        let item = TwinItem::new(twin, expected_version + 1)?;
        let t = &self.table;
        let expected = values(serde_json::json!({ ":v": expected_version }))?;
        let condition: Condition<'_> = ("#v = :v", &[("#v", "version")], Some(expected));
        let same_name =
            (&old.meta.namespace, &old.meta.name) == (&twin.meta.namespace, &twin.meta.name);
        if same_name && old.meta.labels == twin.meta.labels {
            return match t
                .put_item(encode("twin", &item)?, Some(condition), false)
                .await?
            {
                Written::Done { .. } => Ok(Versioned {
                    version: expected_version + 1,
                    value: twin.clone(),
                }),
                Written::ConditionFailed => Err(StoreError::Conflict(format!("device {id}"))),
            };
        }
        let mut actions = vec![t.put(encode("twin", &item)?, Some(condition))?];
        let mut new_name_at = None;
        if (&old.meta.namespace, &old.meta.name) != (&twin.meta.namespace, &twin.meta.name) {
            let owner = values(serde_json::json!({ ":id": id }))?;
            actions.push(t.delete(
                &name_key(&old.meta.namespace, &old.meta.name),
                Some(("#d = :id", &[("#d", "deviceId")], Some(owner))),
            )?);
            new_name_at = Some(actions.len());
            actions.push(t.put(
                encode("name reservation", &name_item(twin))?,
                Some(("attribute_not_exists(pk)", &[], None)),
            )?);
        }
        let (before, after) = (label_set(old), label_set(twin));
        for (k, v) in before.difference(&after) {
            actions.push(t.delete(&Key::new(label_pk(k, v), id.clone()), None)?);
        }
        for (k, v) in after.difference(&before) {
            let l = LabelItem {
                pk: label_pk(k, v),
                sk: id.clone(),
                device_id: id.clone(),
            };
            actions.push(t.put(encode("label index", &l)?, None)?);
        }
        match t.transact(actions).await {
            Ok(()) => Ok(Versioned {
                version: expected_version + 1,
                value: twin.clone(),
            }),
            Err(TxError::Condition(failed)) => {
                if new_name_at.is_some_and(|i| failed.contains(&i)) && !failed.contains(&0) {
                    Err(StoreError::AlreadyExists(format!(
                        "name {}",
                        twin.display_name()
                    )))
                } else {
                    Err(StoreError::Conflict(format!("device {id}")))
                }
            }
            Err(TxError::Store(e)) => Err(e),
        }
    }

    /// The twin item, its name reservation (both conditional on not existing: failed
    /// conditions 0 and 1) and its label index items.
    fn create_actions(&self, twin: &Twin, item: &TwinItem) -> StoreResult<Vec<TransactWriteItem>> {
        let t = &self.table;
        let mut actions = vec![
            t.put(
                encode("twin", item)?,
                Some(("attribute_not_exists(pk)", &[], None)),
            )?,
            t.put(
                encode("name reservation", &name_item(twin))?,
                Some(("attribute_not_exists(pk)", &[], None)),
            )?,
        ];
        for (k, v) in label_set(twin) {
            let l = LabelItem {
                pk: label_pk(&k, &v),
                sk: item.device_id.clone(),
                device_id: item.device_id.clone(),
            };
            actions.push(t.put(encode("label index", &l)?, None)?);
        }
        Ok(actions)
    }
}

fn created(twin: &Twin) -> Versioned<Twin> {
    Versioned {
        version: 1,
        value: twin.clone(),
    }
}

/// The `AlreadyExists` of a create whose conditions `failed` (see `create_actions`).
fn already_exists(twin: &Twin, failed: &[usize]) -> StoreError {
    if failed.contains(&0) {
        StoreError::AlreadyExists(format!("device {}", twin.spec.device_id))
    } else {
        StoreError::AlreadyExists(format!("name {}", twin.display_name()))
    }
}
