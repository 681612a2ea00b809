//! The query of a window: one Query of the series' partition between the hours of the
//! window's ends (oldest or newest hour first), eventually consistent (half the price
//! of a consistent read; a point may show a moment after it was written).
//!
//! The chunks of one hour may overlap in time (late and out-of-order batches) and hold
//! the same (time, seq) more than once (a point sent again in another batch), so an
//! hour is merged as a whole: its chunks' points sorted by (time, seq), each once (the
//! one of the chunk written last). Hours come in order, so the page is complete once
//! the merged hours hold one point more than it; the next page starts after its last
//! point (re-reading that hour's chunks).

use std::{collections::BTreeMap, sync::Arc};

use super::chunk::{decode_points, hour_of, series_pk, ChunkItem};
use crate::adapters::dynamodb::table::{decode_all, Table};
use crate::domain::Page;
use crate::ports::{PointKey, StoreError, StoreResult, TelemetryOrder, TelemetryQuery};
use crate::telemetry::TelemetryRecord;

/// The points of one hour's chunks by (time, seq): the winner's (written time, sort
/// key) and the point.
type Merged = BTreeMap<PointKey, ((i64, String), TelemetryRecord)>;

/// Merges `chunks` (of one hour) into `out`, in the query's order, keeping only the
/// points of `lo..=hi`.
fn merge(
    chunks: &mut Vec<ChunkItem>,
    (lo, hi): (PointKey, PointKey),
    device: &str,
    measure: &Arc<str>,
    order: TelemetryOrder,
    out: &mut Vec<TelemetryRecord>,
) -> StoreResult<()> {
    let mut merged = Merged::new();
    for c in chunks.drain(..) {
        if c.last_ns < lo.0 || c.first_ns > hi.0 {
            continue;
        }
        let points = decode_points(&c.points, device, measure)
            .map_err(|e| StoreError::Corrupt(format!("telemetry chunk {} {}: {e}", c.pk, c.sk)))?;
        let rank = (c.written_ns, c.sk);
        for p in points {
            let key = (p.time_ns, p.seq);
            if key < lo || key > hi {
                continue;
            }
            match merged.get(&key) {
                Some((r, _)) if *r >= rank => {}
                _ => {
                    merged.insert(key, (rank.clone(), p));
                }
            }
        }
    }
    let points = merged.into_values().map(|(_, p)| p);
    match order {
        TelemetryOrder::OldestFirst => out.extend(points),
        TelemetryOrder::NewestFirst => out.extend(points.rev()),
    }
    Ok(())
}

/// One page of `q` (see the module documentation).
pub(super) async fn query(
    table: &Table,
    q: &TelemetryQuery,
    measure: Arc<str>,
) -> StoreResult<Page<TelemetryRecord>> {
    let Some(range) = q.remaining(q.cursor()?) else {
        return Ok(Page::last(Vec::new()));
    };
    let pk = series_pk(&q.device_id, &q.measure);
    let from = hour_of(range.0 .0);
    // Past every `<hour>#<hash>` of the last hour.
    let to = format!("{}~", hour_of(range.1 .0));
    let mut read = table
        .partition(&pk)
        .sk_from(Some(&from))
        .sk_to(Some(&to))
        .eventually_consistent();
    if q.order == TelemetryOrder::NewestFirst {
        read = read.newest_first();
    }
    let mut pages = read.pages()?;
    let want = q.page_limit() + 1;
    let mut out = Vec::new();
    let mut hour: Vec<ChunkItem> = Vec::new();
    'pages: while let Some(items) = pages.next(None).await? {
        for c in decode_all::<ChunkItem>("telemetry chunk", items)? {
            if hour.first().is_some_and(|h| h.hour() != c.hour()) {
                merge(&mut hour, range, &q.device_id, &measure, q.order, &mut out)?;
                if out.len() >= want {
                    break 'pages;
                }
            }
            hour.push(c);
        }
    }
    merge(&mut hour, range, &q.device_id, &measure, q.order, &mut out)?;
    Ok(q.page_of(out))
}
