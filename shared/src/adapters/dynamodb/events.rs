//! The audit trail on DynamoDB, write-sharded: the events of a day spread over
//! [`EVENT_SHARDS`] partitions `DAY#<yyyy-mm-dd>#<shard>` (the shard a hash of the event
//! id), so a burst is not capped by one partition's ~1,000 writes/s; `gsi1` by device; a
//! directory of the days. Lists merge the shards' pages newest first.
//!
//! An event's key is a function of the event alone (day and time from its time, shard
//! from its id, sort key `<time ns>:<id>`), so a redelivered event (same id and time)
//! lands on the same item: appends are plain BatchWriteItem puts, one item and one
//! write unit (plus one for `gsi1`) per event of up to 1 KB, no guard item, no
//! transaction. A page ends at a sort key; the next page reads below it in every shard.

use std::{
    collections::{BTreeSet, HashSet, VecDeque},
    sync::Mutex,
};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::query::Pages;
use super::table::{decode_all, encode, Item, Table};
use super::GSI1;
use crate::domain::page::{encode_token, BadPageToken};
use crate::domain::{Event, EventFilter, EventRetention, Page, PageRequest};
use crate::ports::*;

/// Partitions per day. Part of the stored layout: reads query this many shards of each
/// day, so changing it hides the events written under the old count.
pub const EVENT_SHARDS: u32 = 16;

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
struct DayItem {
    pk: String,
    sk: String,
    expires_at: i64,
}

const DAYS_PK: &str = "DAYS";

fn day_of(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// The shard of an event id: FNV-1a (64 bit) of its bytes, modulo [`EVENT_SHARDS`]. A
/// fixed function, so every process and version puts an event in the same shard.
fn shard_of(id: &str) -> u32 {
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    // The remainder is below EVENT_SHARDS.
    u32::try_from(hash % u64::from(EVENT_SHARDS)).unwrap_or(0)
}

fn day_pk(day: &str, shard: u32) -> String {
    format!("DAY#{day}#{shard:02}")
}

/// Offsets nanoseconds so that times before 1970 still sort (20 digits cover i64).
const KEY_OFFSET: i128 = i64::MIN as i128;

fn event_time_key(t: DateTime<Utc>, id: &str) -> String {
    let ns = i128::from(t.timestamp_nanos_opt().unwrap_or(i64::MIN)) - KEY_OFFSET;
    format!("{ns:020}:{id}")
}

/// The time of an [`event_time_key`], `None` when `key` is not one.
fn time_of_key(key: &str) -> Option<DateTime<Utc>> {
    let (digits, _) = key.split_once(':')?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ns = i64::try_from(digits.parse::<i128>().ok()? + KEY_OFFSET).ok()?;
    Some(DateTime::from_timestamp_nanos(ns))
}

/// The event of an item of the events table as its stream records carry it (a
/// DynamoDB Streams `NewImage`): `None` for the table's other items (its directory of
/// days), [`StoreError::Corrupt`] for an event item that does not decode.
pub fn event_of_image(image: serde_dynamo::Item) -> StoreResult<Option<Event>> {
    let is_event = matches!(
        image.get("pk"),
        Some(serde_dynamo::AttributeValue::S(pk)) if pk.starts_with("DAY#")
    );
    if !is_event {
        return Ok(None);
    }
    let item: EventItem = serde_dynamo::from_item(image)
        .map_err(|e| StoreError::Corrupt(format!("decoding an event stream image: {e}")))?;
    Ok(Some(item.event))
}

/// Where a page ended: the sort key of its last event.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Position {
    before: String,
}

/// The sort key range of a list: `from..=to`, and strictly below `before` (a page's
/// end).
#[derive(Debug, Clone, Copy)]
struct Range<'a> {
    from: Option<&'a str>,
    to: Option<&'a str>,
    before: Option<&'a str>,
}

/// One partition's pages, read ahead into `buffer`.
struct Shard<'a> {
    pages: Pages<'a>,
    buffer: VecDeque<EventItem>,
    done: bool,
}

impl Shard<'_> {
    /// Reads pages of up to `size` items until the buffer holds one or the partition
    /// ends.
    async fn refill(&mut self, size: usize) -> StoreResult<()> {
        while self.buffer.is_empty() && !self.done {
            match self.pages.next(Some(size)).await? {
                Some(items) => self.buffer.extend(decode_all::<EventItem>("event", items)?),
                None => self.done = true,
            }
        }
        Ok(())
    }
}

fn newest_sk<'s>(shard: &'s Shard<'_>) -> Option<&'s str> {
    shard.buffer.front().map(|e| e.sk.as_str())
}

/// The audit trail on DynamoDB (see the module docs): items expire by `retention`.
#[derive(Debug)]
pub struct DynamoEventStore {
    table: Table,
    retention: EventRetention,
    /// Days this process already registered in the `DAYS` directory.
    known_days: Mutex<HashSet<String>>,
}

impl DynamoEventStore {
    pub fn new(client: Client, table: &str, retention: EventRetention) -> Self {
        Self {
            table: Table::new(client, table),
            retention,
            known_days: Mutex::new(HashSet::new()),
        }
    }

    fn item(&self, e: &Event) -> EventItem {
        let expires_at = self.retention.expires_at(e).timestamp();
        let tk = event_time_key(e.time, &e.id);
        EventItem {
            pk: day_pk(&day_of(e.time), shard_of(&e.id)),
            sk: tk.clone(),
            gsi1pk: format!("DEV#{}", e.device_id),
            gsi1sk: tk,
            expires_at,
            event: Event {
                expires_at: Some(expires_at),
                ..e.clone()
            },
        }
    }

    /// The directory item of the day of `t`: it lives as long as the day's events can.
    fn day_item(&self, t: DateTime<Utc>) -> DayItem {
        let day_end = t
            .date_naive()
            .and_hms_opt(23, 59, 59)
            .map(|d| d.and_utc())
            .unwrap_or(t);
        DayItem {
            pk: DAYS_PK.into(),
            sk: day_of(t),
            expires_at: (day_end + chrono::Duration::days(self.retention.max_days().into()))
                .timestamp(),
        }
    }

    fn known(&self, day: &str) -> bool {
        self.known_days
            .lock()
            .map(|d| d.contains(day))
            .unwrap_or(false)
    }

    /// Merges the partitions `pks` (of `index`, or of the table) newest first into
    /// `out`, keeping the events in `range` that `filter` matches, until `out` holds
    /// `want`.
    async fn merge(
        &self,
        index: Option<&str>,
        pks: &[String],
        range: Range<'_>,
        filter: &EventFilter,
        want: usize,
        out: &mut Vec<EventItem>,
    ) -> StoreResult<()> {
        let mut shards = Vec::with_capacity(pks.len());
        for pk in pks {
            let mut q = self
                .table
                .partition(pk)
                .sk_from(range.from)
                .sk_to(range.to)
                .newest_first()
                .eventually_consistent();
            if let Some(index) = index {
                q = q.index(index);
            }
            shards.push(Shard {
                pages: q.pages()?,
                buffer: VecDeque::new(),
                done: false,
            });
        }
        while out.len() < want {
            // Each shard holds about 1/n of the events: ask each for a little more than
            // its share (what a page does not return, the next one reads again).
            let missing = want - out.len();
            let size = match shards.len() {
                0 | 1 => missing,
                n => missing * 5 / (4 * n) + 4,
            }
            .clamp(1, 1000);
            futures::future::try_join_all(
                shards
                    .iter_mut()
                    .filter(|s| s.buffer.is_empty() && !s.done)
                    .map(|s| s.refill(size)),
            )
            .await?;
            let newest = shards
                .iter_mut()
                .filter(|s| !s.buffer.is_empty())
                .max_by(|a, b| newest_sk(a).cmp(&newest_sk(b)))
                .and_then(|s| s.buffer.pop_front());
            let Some(e) = newest else {
                return Ok(());
            };
            if range.before.is_none_or(|b| e.sk.as_str() < b) && filter.matches(&e.event) {
                out.push(e);
            }
        }
        Ok(())
    }
}

/// The position in `page`'s token, checked to be a sort key.
fn position(page: &PageRequest) -> StoreResult<Option<String>> {
    let Some(Position { before }) = page.position()? else {
        return Ok(None);
    };
    if time_of_key(&before).is_none() {
        return Err(BadPageToken(format!("not an event position: {before:?}")).into());
    }
    Ok(Some(before))
}

#[async_trait]
impl EventStore for DynamoEventStore {
    /// Puts the events (each key once), with the directory item of each day this
    /// process has not registered yet, in BatchWriteItem calls.
    async fn append(&self, events: &[Event]) -> StoreResult<()> {
        let mut keys = HashSet::new();
        let mut new_days = BTreeSet::new();
        let mut days: Vec<Item> = Vec::new();
        let mut items: Vec<Item> = Vec::with_capacity(events.len());
        for e in events {
            let item = self.item(e);
            if !keys.insert((item.pk.clone(), item.sk.clone())) {
                continue;
            }
            let day = day_of(e.time);
            if !self.known(&day) && new_days.insert(day) {
                days.push(encode("day", &self.day_item(e.time))?);
            }
            items.push(encode("event", &item)?);
        }
        days.append(&mut items);
        self.table.batch_put(days).await?;
        if let Ok(mut known) = self.known_days.lock() {
            known.extend(new_days);
        }
        Ok(())
    }

    async fn list(&self, filter: &EventFilter, page: &PageRequest) -> StoreResult<Page<Event>> {
        let before = position(page)?;
        let from = filter.since.map(|s| event_time_key(s, ""));
        // "<until ns>:" sorts above every event before `until` and below those at it.
        let until = filter.until.map(|u| event_time_key(u, ""));
        let to = [until, before.clone()].into_iter().flatten().min();
        let range = Range {
            from: from.as_deref(),
            to: to.as_deref(),
            before: before.as_deref(),
        };
        if let (Some(f), Some(t)) = (range.from, range.to) {
            if f > t {
                return Ok(Page::last(Vec::new()));
            }
        }
        let limit = page.limit.max(1);
        // One event past the page tells whether there is a next one.
        let want = limit + 1;
        let mut out = Vec::with_capacity(want);
        if let Some(dev) = &filter.device_id {
            let pks = [format!("DEV#{dev}")];
            self.merge(Some(GSI1), &pks, range, filter, want, &mut out)
                .await?;
        } else {
            let from_day = filter.since.map(day_of);
            let to_day = range.to.and_then(time_of_key).map(day_of);
            let days = self
                .table
                .partition(DAYS_PK)
                .sk_from(from_day.as_deref())
                .sk_to(to_day.as_deref())
                .newest_first()
                .all()
                .await?;
            for day in decode_all::<DayItem>("day", days)? {
                let pks: Vec<String> = (0..EVENT_SHARDS).map(|s| day_pk(&day.sk, s)).collect();
                self.merge(None, &pks, range, filter, want, &mut out)
                    .await?;
                if out.len() >= want {
                    break;
                }
            }
        }
        let more = out.len() > limit;
        out.truncate(limit);
        let next_token = more.then(|| out.last()).flatten().map(|e| {
            encode_token(&Position {
                before: e.sk.clone(),
            })
        });
        Ok(Page {
            items: out.into_iter().map(|e| e.event).collect(),
            next_token,
        })
    }
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
