//! The audit trail in the embedded store: `events` (id -> event) and `events_by_time`
//! (time:id), appended idempotently by id.

use async_trait::async_trait;
use redb::ReadableTable;

use super::store::{
    get_json, time_key, to_json, unavailable, EmbeddedStore, EVENTS, EVENTS_BY_TIME,
};
use crate::domain::{Event, EventFilter};
use crate::ports::*;

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
        self.writing(move |tx| {
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
            Ok(())
        })
        .await
    }

    async fn list(&self, filter: &EventFilter) -> StoreResult<Vec<Event>> {
        let filter = filter.clone();
        self.reading(move |tx| {
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
                let Some(e) = get_json::<Event>(&events, id)? else {
                    continue;
                };
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
