//! Command records in the embedded store: `commands` (id -> record), and the waiting
//! for a final status through the store's completion channel.

use std::time::Duration;

use async_trait::async_trait;
use redb::ReadableTable;
use tokio::sync::broadcast;

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
        let result = self
            .writing(move |tx| {
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
