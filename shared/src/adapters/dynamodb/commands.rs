//! Command records on DynamoDB: one item per command, found by device through `gsi1`,
//! completed once (conditional on `status = PENDING`), read many at once with
//! BatchGetItem (100 keys a call, unprocessed keys retried with backoff).

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use serde::{Deserialize, Serialize};

use super::table::{decode, decode_all, encode, values, Key, Table, Written};
use crate::domain::{command::CommandOutcome, CommandRecord};
use crate::ports::*;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CommandItem {
    pk: String,
    sk: String,
    gsi1pk: String,
    gsi1sk: String,
    /// The record's status, top level for the completion condition.
    status: String,
    expires_at: i64,
    record: CommandRecord,
}

const PENDING: &str = "PENDING";

fn command_key(id: &str) -> Key {
    Key::new(format!("CMD#{id}"), "CMD")
}

fn status_name(r: &CommandRecord) -> StoreResult<String> {
    match serde_json::to_value(r.status) {
        Ok(serde_json::Value::String(s)) => Ok(s),
        _ => Err(StoreError::Corrupt(format!("status of command {}", r.id))),
    }
}

/// Command records on DynamoDB. Completion is conditional on `status = PENDING`;
/// finished records expire `ttl` after they ended, pending ones `ttl` after their deadline.
#[derive(Clone, Debug)]
pub struct DynamoCommandStore {
    table: Table,
    ttl: chrono::Duration,
}

impl DynamoCommandStore {
    pub fn new(client: Client, table: &str, ttl: chrono::Duration) -> Self {
        Self {
            table: Table::new(client, table),
            ttl,
        }
    }

    fn item(&self, r: &CommandRecord) -> StoreResult<CommandItem> {
        let key = command_key(&r.id);
        let base = match r.completed_at {
            Some(t) if r.status.is_final() => t,
            _ if r.status.is_final() => r.created_at,
            _ => r.deadline.max(r.created_at),
        };
        Ok(CommandItem {
            pk: key.pk,
            sk: key.sk,
            gsi1pk: format!("DEV#{}", r.device_id),
            gsi1sk: format!(
                "{}#{}",
                r.created_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                r.id
            ),
            status: status_name(r)?,
            expires_at: (base + self.ttl).timestamp(),
            record: r.clone(),
        })
    }
}

#[async_trait]
impl CommandStore for DynamoCommandStore {
    async fn create(&self, record: &CommandRecord) -> StoreResult<()> {
        let item = self.item(record)?;
        let written = self
            .table
            .put_item(
                encode("command", &item)?,
                Some(("attribute_not_exists(pk)", &[], None)),
                false,
            )
            .await?;
        match written {
            Written::Done { .. } => Ok(()),
            Written::ConditionFailed => {
                Err(StoreError::AlreadyExists(format!("command {}", record.id)))
            }
        }
    }

    async fn get(&self, id: &str) -> StoreResult<Option<CommandRecord>> {
        match self.table.get(&command_key(id)).await? {
            Some(item) => Ok(Some(decode::<CommandItem>("command", item)?.record)),
            None => Ok(None),
        }
    }

    async fn get_many(&self, ids: &[String]) -> StoreResult<Vec<CommandRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys = ids.iter().map(|id| command_key(id)).collect();
        let items = self.table.batch_get(keys).await?;
        Ok(decode_all::<CommandItem>("command", items)?
            .into_iter()
            .map(|i| i.record)
            .collect())
    }

    async fn complete(
        &self,
        id: &str,
        outcome: CommandOutcome,
    ) -> StoreResult<(CommandRecord, bool)> {
        let Some(mut rec) = CommandStore::get(self, id).await? else {
            return Err(StoreError::NotFound(format!("command {id}")));
        };
        if !rec.complete(outcome) {
            return Ok((rec, false));
        }
        let item = self.item(&rec)?;
        let pending = values(serde_json::json!({ ":pending": PENDING }))?;
        let written = self
            .table
            .put_item(
                encode("command", &item)?,
                Some(("#s = :pending", &[("#s", "status")], Some(pending))),
                false,
            )
            .await?;
        match written {
            Written::Done { .. } => Ok((rec, true)),
            Written::ConditionFailed => {
                // Someone else completed it first: return what is stored.
                let stored = CommandStore::get(self, id)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("command {id}")))?;
                Ok((stored, false))
            }
        }
    }
}
