//! The audit trail in the embedded store: `events` (id -> event), `events_by_time`
//! (time:id) and `events_by_expiry` (expiry|time:id), appended idempotently by id.
//! Pages end at a `events_by_time` key: the next page starts below it.

use async_trait::async_trait;
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::store::{
    expiry_key, get_json, time_key, to_json, unavailable, EmbeddedStore, EVENTS, EVENTS_BY_EXPIRY,
    EVENTS_BY_TIME,
};
use crate::domain::page::{encode_token, BadPageToken};
use crate::domain::{Event, EventFilter, Page, PageRequest};
use crate::ports::*;

/// Where a page ended: the `events_by_time` key of its last event.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Position {
    before: String,
}

/// The position in `page`'s token, checked to be a time key.
fn position(page: &PageRequest) -> StoreResult<Option<String>> {
    let Some(Position { before }) = page.position()? else {
        return Ok(None);
    };
    let is_time_key = before
        .split_once(':')
        .is_some_and(|(ns, _)| ns.len() == 20 && ns.bytes().all(|b| b.is_ascii_digit()));
    if !is_time_key {
        return Err(BadPageToken(format!("not an event position: {before:?}")).into());
    }
    Ok(Some(before))
}

#[async_trait]
impl EventStore for EmbeddedStore {
    async fn append(&self, events: &[Event]) -> StoreResult<()> {
        let rows: Vec<(String, String, String, Vec<u8>)> = events
            .iter()
            .map(|e| {
                let expires_at = self.event_retention.expires_at(e).timestamp();
                let stored = Event {
                    expires_at: Some(expires_at),
                    ..e.clone()
                };
                let tk = time_key(e.time, &e.id);
                let xk = expiry_key(expires_at, &tk);
                Ok((e.id.clone(), tk, xk, to_json(&stored)?))
            })
            .collect::<StoreResult<_>>()?;
        if rows.is_empty() {
            return Ok(());
        }
        self.writing(move |tx| {
            let mut t = tx.open_table(EVENTS).map_err(unavailable)?;
            let mut by_time = tx.open_table(EVENTS_BY_TIME).map_err(unavailable)?;
            let mut by_expiry = tx.open_table(EVENTS_BY_EXPIRY).map_err(unavailable)?;
            for (id, tk, xk, bytes) in &rows {
                if t.get(id.as_str()).map_err(unavailable)?.is_some() {
                    continue;
                }
                t.insert(id.as_str(), bytes.as_slice())
                    .map_err(unavailable)?;
                by_time.insert(tk.as_str(), ()).map_err(unavailable)?;
                by_expiry.insert(xk.as_str(), ()).map_err(unavailable)?;
            }
            Ok(())
        })
        .await
    }

    async fn list(&self, filter: &EventFilter, page: &PageRequest) -> StoreResult<Page<Event>> {
        let before = position(page)?;
        let filter = filter.clone();
        let limit = page.limit.max(1);
        self.reading(move |tx| {
            let by_time = tx.open_table(EVENTS_BY_TIME).map_err(unavailable)?;
            let events = tx.open_table(EVENTS).map_err(unavailable)?;
            let from = filter.since.map(|s| time_key(s, "")).unwrap_or_default();
            let to = [filter.until.map(|u| time_key(u, "")), before]
                .into_iter()
                .flatten()
                .min();
            let rows = match &to {
                Some(to) if to.as_str() <= from.as_str() => return Ok(Page::last(Vec::new())),
                Some(to) => by_time.range(from.as_str()..to.as_str()),
                None => by_time.range(from.as_str()..),
            }
            .map_err(unavailable)?;
            // One event past the page tells whether there is a next one.
            let mut out: Vec<(String, Event)> = Vec::with_capacity(limit + 1);
            for row in rows.rev() {
                let (k, _) = row.map_err(unavailable)?;
                let key = k.value();
                let Some((_, id)) = key.split_once(':') else {
                    continue;
                };
                let Some(e) = get_json::<Event>(&events, id)? else {
                    continue;
                };
                if filter.matches(&e) {
                    out.push((key.to_string(), e));
                    if out.len() > limit {
                        break;
                    }
                }
            }
            let more = out.len() > limit;
            out.truncate(limit);
            let next_token = more
                .then(|| out.last())
                .flatten()
                .map(|(k, _)| encode_token(&Position { before: k.clone() }));
            Ok(Page {
                items: out.into_iter().map(|(_, e)| e).collect(),
                next_token,
            })
        })
        .await
    }
}
