//! The audit trail on DynamoDB: per-day partitions, `gsi1` by device, an id guard per
//! event and a directory of the days.

use std::{collections::HashSet, sync::Mutex};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::table::{decode_all, encode, Table, TxError};
use super::GSI1;
use crate::domain::{Event, EventFilter};
use crate::ports::*;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventItem {
    pk: String,
    sk: String,
    gsi1pk: String,
    gsi1sk: String,
    expires_at: i64,
    event: Event,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MarkerItem {
    pk: String,
    sk: String,
    expires_at: i64,
}

const DAYS_PK: &str = "DAYS";

/// Events of one `append` written at once.
const APPEND_CONCURRENCY: usize = 16;

fn day_of(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

fn event_time_key(t: DateTime<Utc>, id: &str) -> String {
    // Offset so that times before 1970 still sort (20 digits cover the whole i64 range).
    let ns = i128::from(t.timestamp_nanos_opt().unwrap_or(i64::MIN)) - i128::from(i64::MIN);
    format!("{ns:020}:{id}")
}

/// The audit trail on DynamoDB: per-day partitions `DAY#<date>` (time order, newest
/// first), `gsi1` by device, an id guard per event for idempotent appends, and items
/// that expire `ttl` after the event.
#[derive(Debug)]
pub struct DynamoEventStore {
    table: Table,
    ttl: chrono::Duration,
    /// Days this process already registered in the `DAYS` directory.
    known_days: Mutex<HashSet<String>>,
}

impl DynamoEventStore {
    pub fn new(client: Client, table: &str, ttl: chrono::Duration) -> Self {
        Self {
            table: Table::new(client, table),
            ttl,
            known_days: Mutex::new(HashSet::new()),
        }
    }

    async fn append_one(&self, e: &Event) -> StoreResult<()> {
        let t = &self.table;
        let expires_at = (e.time + self.ttl).timestamp();
        let tk = event_time_key(e.time, &e.id);
        let day = day_of(e.time);
        let guard = MarkerItem {
            pk: format!("EVT#{}", e.id),
            sk: "EVT".into(),
            expires_at,
        };
        let item = EventItem {
            pk: format!("DAY#{day}"),
            sk: tk.clone(),
            gsi1pk: format!("DEV#{}", e.device_id),
            gsi1sk: tk,
            expires_at,
            event: e.clone(),
        };
        let mut actions = vec![
            t.put(
                encode("event guard", &guard)?,
                Some(("attribute_not_exists(pk)", &[], None)),
            )?,
            t.put(encode("event", &item)?, None)?,
        ];
        let new_day = self
            .known_days
            .lock()
            .map(|d| !d.contains(&day))
            .unwrap_or(true);
        if new_day {
            let day_end = e
                .time
                .date_naive()
                .and_hms_opt(23, 59, 59)
                .map(|d| d.and_utc())
                .unwrap_or(e.time);
            let marker = MarkerItem {
                pk: DAYS_PK.into(),
                sk: day.clone(),
                expires_at: (day_end + self.ttl).timestamp(),
            };
            actions.push(t.put(encode("day marker", &marker)?, None)?);
        }
        match t.transact(actions).await {
            // A duplicate: the event is already stored.
            Ok(()) | Err(TxError::Condition(_)) => {
                if new_day {
                    if let Ok(mut d) = self.known_days.lock() {
                        d.insert(day);
                    }
                }
                Ok(())
            }
            Err(TxError::Store(e)) => Err(e),
        }
    }

    /// Reads a partition newest first, keeping the events `filter` matches, until `out`
    /// holds `limit`.
    async fn collect(
        &self,
        index: Option<&str>,
        pk: &str,
        from: Option<&str>,
        filter: &EventFilter,
        out: &mut Vec<Event>,
    ) -> StoreResult<()> {
        let limit = filter.limit();
        let mut query = self.table.partition(pk).sk_from(from).newest_first();
        if let Some(index) = index {
            query = query.index(index);
        }
        let mut pages = query.eventually_consistent().pages()?;
        while let Some(items) = pages
            .next(Some((limit - out.len()).clamp(25, 1000)))
            .await?
        {
            for e in decode_all::<EventItem>("event", items)? {
                if filter.matches(&e.event) {
                    out.push(e.event);
                    if out.len() >= limit {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl EventStore for DynamoEventStore {
    /// Appends [`APPEND_CONCURRENCY`] events at once (a fan-out's events must not take
    /// a transaction round trip each in turn). The first event of a day this process has
    /// not registered goes alone first: its transaction also writes the day's directory
    /// item, which concurrent transactions would conflict on.
    async fn append(&self, events: &[Event]) -> StoreResult<()> {
        let mut new_days = HashSet::new();
        let mut rest = Vec::with_capacity(events.len());
        for e in events {
            let day = day_of(e.time);
            let known = self
                .known_days
                .lock()
                .map(|d| d.contains(&day))
                .unwrap_or(false);
            if !known && new_days.insert(day) {
                self.append_one(e).await?;
            } else {
                rest.push(e);
            }
        }
        futures::stream::iter(rest.into_iter().map(Ok))
            .try_for_each_concurrent(APPEND_CONCURRENCY, |e| self.append_one(e))
            .await
    }

    async fn list(&self, filter: &EventFilter) -> StoreResult<Vec<Event>> {
        let from = filter.since.map(|s| event_time_key(s, ""));
        let mut out = Vec::new();
        if let Some(dev) = &filter.device_id {
            self.collect(
                Some(GSI1),
                &format!("DEV#{dev}"),
                from.as_deref(),
                filter,
                &mut out,
            )
            .await?;
            return Ok(out);
        }
        let since_day = filter.since.map(day_of);
        let days = self
            .table
            .partition(DAYS_PK)
            .sk_from(since_day.as_deref())
            .newest_first()
            .all()
            .await?;
        let days: Vec<MarkerItem> = decode_all("day marker", days)?;
        for d in days {
            self.collect(
                None,
                &format!("DAY#{}", d.sk),
                from.as_deref(),
                filter,
                &mut out,
            )
            .await?;
            if out.len() >= filter.limit() {
                break;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
