//! Command records in the embedded store: `commands` (id -> record); a batched read
//! is one read transaction.

use async_trait::async_trait;
use redb::ReadableTable;

use super::store::{get_json, to_json, unavailable, EmbeddedStore, COMMANDS};
use crate::domain::{command::CommandOutcome, CommandRecord};
use crate::ports::*;

#[async_trait]
impl CommandStore for EmbeddedStore {
    async fn create(&self, record: &CommandRecord) -> StoreResult<()> {
        let id = record.id.clone();
        let bytes = to_json(record)?;
        self.writing(move |tx| {
            let mut t = tx.open_table(COMMANDS).map_err(unavailable)?;
            if t.get(id.as_str()).map_err(unavailable)?.is_some() {
                return Err(StoreError::AlreadyExists(format!("command {id}")));
            }
            t.insert(id.as_str(), bytes.as_slice())
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn get(&self, id: &str) -> StoreResult<Option<CommandRecord>> {
        let id = id.to_string();
        self.reading(move |tx| {
            let t = tx.open_table(COMMANDS).map_err(unavailable)?;
            get_json(&t, &id)
        })
        .await
    }

    async fn complete(
        &self,
        id: &str,
        outcome: CommandOutcome,
    ) -> StoreResult<(CommandRecord, bool)> {
        let id = id.to_string();
        self.writing(move |tx| {
            let mut t = tx.open_table(COMMANDS).map_err(unavailable)?;
            let Some(mut rec) = get_json::<CommandRecord>(&t, &id)? else {
                return Err(StoreError::NotFound(format!("command {id}")));
            };
            let changed = rec.complete(outcome);
            if changed {
                let bytes = to_json(&rec)?;
                t.insert(id.as_str(), bytes.as_slice())
                    .map_err(unavailable)?;
            }
            Ok((rec, changed))
        })
        .await
    }

    async fn get_many(&self, ids: &[String]) -> StoreResult<Vec<CommandRecord>> {
        let ids = ids.to_vec();
        self.reading(move |tx| {
            let t = tx.open_table(COMMANDS).map_err(unavailable)?;
            let mut found = Vec::with_capacity(ids.len());
            let mut seen = std::collections::HashSet::with_capacity(ids.len());
            for id in ids.iter().filter(|id| seen.insert(id.as_str())) {
                if let Some(rec) = get_json::<CommandRecord>(&t, id)? {
                    found.push(rec);
                }
            }
            Ok(found)
        })
        .await
    }
}
