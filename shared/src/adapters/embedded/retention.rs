//! Pruning the embedded store like DynamoDB TTL would: events past their `expiresAt`
//! (the store's [`crate::domain::EventRetention`] per reason), finished commands older
//! than the retention, telemetry points whose time is older than the telemetry
//! retention, tombstones older than [`TOMBSTONE_TTL_DAYS`].

use chrono::{DateTime, Utc};
use redb::{ReadableTable, Table};

use super::store::{
    expiry_key, from_json, get_json, time_key, unavailable, COMMANDS, EVENTS, EVENTS_BY_EXPIRY,
    EVENTS_BY_TIME, SERIES, TELEMETRY, TWIN_TOMBSTONES,
};
use super::EmbeddedStore;
use crate::domain::{CommandRecord, Event};
use crate::ports::{StoreResult, Tombstone, TOMBSTONE_TTL_DAYS};

/// How long finished commands are kept (events expire by the store's event retention).
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub commands: chrono::Duration,
    /// Points whose time is older than this go (the embedded store keeps no arrival
    /// time; DynamoDB's chunks expire this long after they were written).
    pub telemetry: chrono::Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            commands: chrono::Duration::days(7),
            telemetry: chrono::Duration::days(365),
        }
    }
}

/// The event tables, open in one write transaction.
struct EventTables<'tx> {
    events: Table<'tx, &'static str, &'static [u8]>,
    by_time: Table<'tx, &'static str, ()>,
    by_expiry: Table<'tx, &'static str, ()>,
}

impl EventTables<'_> {
    /// Removes the event of the `events_by_time` key `tk` from every table.
    fn remove(&mut self, tk: &str) -> StoreResult<()> {
        self.by_time.remove(tk).map_err(unavailable)?;
        let Some((_, id)) = tk.split_once(':') else {
            return Ok(());
        };
        let stored: Option<Event> = get_json(&self.events, id)?;
        if let Some(at) = stored.and_then(|e| e.expires_at) {
            self.by_expiry
                .remove(expiry_key(at, tk).as_str())
                .map_err(unavailable)?;
        }
        self.events.remove(id).map_err(unavailable)?;
        Ok(())
    }

    /// Removes the events whose `expiresAt` is `now` or earlier, and any event older
    /// than the longest retention of `max_days` (such as events stored before they had
    /// an `expiresAt`). Returns how many went.
    fn prune(&mut self, now: DateTime<Utc>, max_days: u32) -> StoreResult<usize> {
        let until = expiry_key(now.timestamp().saturating_add(1), "");
        let expired: Vec<String> = self
            .by_expiry
            .range(..until.as_str())
            .map_err(unavailable)?
            .map(|row| row.map(|(k, _)| k.value().to_string()))
            .collect::<Result<_, _>>()
            .map_err(unavailable)?;
        let mut removed = 0;
        for xk in expired {
            self.by_expiry.remove(xk.as_str()).map_err(unavailable)?;
            if let Some((_, tk)) = xk.split_once('|') {
                self.remove(tk)?;
                removed += 1;
            }
        }
        let cutoff = time_key(now - chrono::Duration::days(max_days.into()), "");
        let old: Vec<String> = self
            .by_time
            .range(..cutoff.as_str())
            .map_err(unavailable)?
            .map(|row| row.map(|(k, _)| k.value().to_string()))
            .collect::<Result<_, _>>()
            .map_err(unavailable)?;
        for tk in old {
            self.remove(&tk)?;
            removed += 1;
        }
        Ok(removed)
    }
}

impl EmbeddedStore {
    /// Deletes expired events, finished commands older than the retention and expired
    /// tombstones (the embedded equivalent of DynamoDB TTL). Returns how many items went.
    pub async fn prune(&self, now: DateTime<Utc>, retention: Retention) -> StoreResult<usize> {
        let max_days = self.event_retention.max_days();
        self.writing(move |tx| {
            let mut removed = EventTables {
                events: tx.open_table(EVENTS).map_err(unavailable)?,
                by_time: tx.open_table(EVENTS_BY_TIME).map_err(unavailable)?,
                by_expiry: tx.open_table(EVENTS_BY_EXPIRY).map_err(unavailable)?,
            }
            .prune(now, max_days)?;
            let mut commands = tx.open_table(COMMANDS).map_err(unavailable)?;
            let cutoff = now - retention.commands;
            let mut old = Vec::new();
            for row in commands.iter().map_err(unavailable)? {
                let (k, v) = row.map_err(unavailable)?;
                let rec: CommandRecord = from_json(v.value())?;
                if rec.status.is_final() && rec.completed_at.unwrap_or(rec.created_at) < cutoff {
                    old.push(k.value().to_string());
                }
            }
            for id in old {
                commands.remove(id.as_str()).map_err(unavailable)?;
                removed += 1;
            }
            let cutoff_ns = (now - retention.telemetry)
                .timestamp_nanos_opt()
                .unwrap_or(i64::MIN);
            let mut points = tx.open_table(TELEMETRY).map_err(unavailable)?;
            let mut series = tx.open_table(SERIES).map_err(unavailable)?;
            let mut all = Vec::new();
            for row in series.iter().map_err(unavailable)? {
                let (k, v) = row.map_err(unavailable)?;
                let (device, measure) = k.value();
                all.push((device.to_string(), measure.to_string(), v.value()));
            }
            for (device, measure, (count, last)) in all {
                let (d, m) = (device.as_str(), measure.as_str());
                let old: Vec<(i64, u64)> = points
                    .range((d, m, i64::MIN, 0)..(d, m, cutoff_ns, 0))
                    .map_err(unavailable)?
                    .map(|row| row.map(|(k, _)| (k.value().2, k.value().3)))
                    .collect::<Result<_, _>>()
                    .map_err(unavailable)?;
                if old.is_empty() {
                    continue;
                }
                for (t, s) in &old {
                    points.remove((d, m, *t, *s)).map_err(unavailable)?;
                }
                removed += old.len();
                let left = count.saturating_sub(old.len() as u64);
                if left == 0 {
                    series.remove((d, m)).map_err(unavailable)?;
                } else {
                    series.insert((d, m), (left, last)).map_err(unavailable)?;
                }
            }
            let mut tombstones = tx.open_table(TWIN_TOMBSTONES).map_err(unavailable)?;
            let cutoff = now - chrono::Duration::days(TOMBSTONE_TTL_DAYS);
            let mut old = Vec::new();
            for row in tombstones.iter().map_err(unavailable)? {
                let (k, v) = row.map_err(unavailable)?;
                let t: Tombstone = from_json(v.value())?;
                if t.deleted_at < cutoff {
                    old.push(k.value().to_string());
                }
            }
            for id in old {
                tombstones.remove(id.as_str()).map_err(unavailable)?;
                removed += 1;
            }
            Ok(removed)
        })
        .await
    }
}
