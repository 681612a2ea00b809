//! The telemetry ports: the sink the `telemetry` function writes to, and the reader the
//! API queries, one page at a time ([`TelemetryQuery`], [`Page`]).
//!
//! Every reader pages the same way: the points of one message of one device in a time
//! window, ordered by `(time, seq)` (oldest or newest first), each `(time, seq)` once.
//! A page token is the [`TelemetryCursor`] of the page's last point, so the next page
//! starts right after it whatever was written in between.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{StoreResult, WriteReport};
use crate::domain::page::{encode_token, Page, PageRequest};
use crate::telemetry::TelemetryRecord;

#[async_trait]
pub trait TelemetrySink: Send + Sync {
    /// Writes a batch. Writing the same batch again (a redelivery) stores nothing new.
    async fn write(&self, records: &[TelemetryRecord]) -> StoreResult<WriteReport>;
}

/// Summary of one telemetry message of one device.
///
/// `count` is the number of points written: a redelivered batch is not counted again,
/// but the DynamoDB sink counts a point again when it comes back in another batch (it
/// writes chunks, not points); points removed by the retention are not subtracted there
/// either (the embedded store subtracts them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TelemetrySeries {
    pub measure: String,
    pub count: u64,
    pub last_time_ns: i64,
}

/// The order of a query's points (and so of its pages).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TelemetryOrder {
    /// Ascending `(time, seq)`: the first page starts at `since_ns`.
    #[default]
    OldestFirst,
    /// Descending `(time, seq)`: the first page ends at `until_ns` (or the newest point).
    NewestFirst,
}

/// Where a page ended: the `(time, seq)` of its last point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TelemetryCursor {
    #[serde(rename = "t")]
    pub time_ns: i64,
    #[serde(rename = "s")]
    pub seq: u64,
}

/// A point's place in the order: `(time, seq)`.
pub type PointKey = (i64, u64);

/// One page of the points of one telemetry message of one device, with
/// `since_ns <= time < until_ns`.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryQuery {
    pub device_id: String,
    /// The message full name.
    pub measure: String,
    /// From this time on (inclusive), in nanoseconds since the epoch.
    pub since_ns: i64,
    /// Before this time (exclusive); `None`: up to the newest point.
    pub until_ns: Option<i64>,
    pub order: TelemetryOrder,
    /// At most `page.limit` points (at least one), after the point `page.token` names.
    pub page: PageRequest,
}

impl TelemetryQuery {
    /// The first page, oldest first, of the points from `since_ns` on, of the default
    /// page size.
    pub fn new(device_id: impl Into<String>, measure: impl Into<String>, since_ns: i64) -> Self {
        Self {
            device_id: device_id.into(),
            measure: measure.into(),
            since_ns,
            until_ns: None,
            order: TelemetryOrder::OldestFirst,
            page: PageRequest::default(),
        }
    }

    /// Only points before `until_ns`.
    pub fn until(mut self, until_ns: i64) -> Self {
        self.until_ns = Some(until_ns);
        self
    }

    pub fn newest_first(mut self) -> Self {
        self.order = TelemetryOrder::NewestFirst;
        self
    }

    pub fn limit(mut self, limit: usize) -> Self {
        self.page.limit = limit;
        self
    }

    /// The page after the one that gave `token` (the first page when `None`).
    pub fn after(mut self, token: Option<String>) -> Self {
        self.page.token = token;
        self
    }

    /// The page size: `page.limit`, at least 1.
    pub fn page_limit(&self) -> usize {
        self.page.limit.max(1)
    }

    /// Where the previous page ended; a token no query gave is [`StoreError::BadPageToken`].
    pub fn cursor(&self) -> StoreResult<Option<TelemetryCursor>> {
        Ok(self.page.position()?)
    }

    /// The points still to read, as an inclusive range of `(time, seq)` (lowest,
    /// highest) whatever the order: the window less what pages before `cursor` gave.
    /// `None` when nothing is left.
    pub fn remaining(&self, cursor: Option<TelemetryCursor>) -> Option<(PointKey, PointKey)> {
        let mut lo: PointKey = (self.since_ns, 0);
        let mut hi: PointKey = match self.until_ns {
            Some(u) => (u.checked_sub(1)?, u64::MAX),
            None => (i64::MAX, u64::MAX),
        };
        if let Some(c) = cursor {
            match self.order {
                TelemetryOrder::OldestFirst => lo = lo.max(successor((c.time_ns, c.seq))?),
                TelemetryOrder::NewestFirst => hi = hi.min(predecessor((c.time_ns, c.seq))?),
            }
        }
        (lo <= hi).then_some((lo, hi))
    }

    /// Whether `key` comes before `other` in this query's order.
    pub fn precedes(&self, key: PointKey, other: PointKey) -> bool {
        match self.order {
            TelemetryOrder::OldestFirst => key < other,
            TelemetryOrder::NewestFirst => key > other,
        }
    }

    /// The page of `points`, which are in this query's order, of at least
    /// [`page_limit`](Self::page_limit) + 1 points when more follow: the first
    /// `page_limit`, and the token of the last one when more follow.
    pub fn page_of(&self, mut points: Vec<TelemetryRecord>) -> Page<TelemetryRecord> {
        let limit = self.page_limit();
        if points.len() <= limit {
            return Page::last(points);
        }
        points.truncate(limit);
        let next_token = points.last().map(|r| {
            encode_token(&TelemetryCursor {
                time_ns: r.time_ns,
                seq: r.seq,
            })
        });
        Page {
            items: points,
            next_token,
        }
    }
}

fn successor((t, s): PointKey) -> Option<PointKey> {
    match s.checked_add(1) {
        Some(s) => Some((t, s)),
        None => Some((t.checked_add(1)?, 0)),
    }
}

fn predecessor((t, s): PointKey) -> Option<PointKey> {
    match s.checked_sub(1) {
        Some(s) => Some((t, s)),
        None => Some((t.checked_sub(1)?, u64::MAX)),
    }
}

#[async_trait]
pub trait TelemetryReader: Send + Sync {
    /// The telemetry messages stored for a device.
    async fn series(&self, device_id: &str) -> StoreResult<Vec<TelemetrySeries>>;
    /// One page of the query's points, in its order, each `(time, seq)` once (the one
    /// written last), at most `page.limit`; `next_token` is set when more follow.
    async fn query(&self, query: &TelemetryQuery) -> StoreResult<Page<TelemetryRecord>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::StoreError;
    use std::sync::Arc;

    fn point(time_ns: i64, seq: u64) -> TelemetryRecord {
        TelemetryRecord {
            device_id: "d".into(),
            name: "d".into(),
            namespace: "default".into(),
            measure: Arc::from("m"),
            time_ns,
            seq,
            tags: vec![],
            values: vec![],
        }
    }

    #[test]
    fn the_remaining_range_starts_after_the_cursor_in_either_order() {
        let q = TelemetryQuery::new("d", "m", 10).until(20);
        assert_eq!(q.remaining(None), Some(((10, 0), (19, u64::MAX))));
        let c = TelemetryCursor {
            time_ns: 12,
            seq: u64::MAX,
        };
        assert_eq!(q.remaining(Some(c)), Some(((13, 0), (19, u64::MAX))));
        let back = q.clone().newest_first();
        let c = TelemetryCursor {
            time_ns: 12,
            seq: 0,
        };
        assert_eq!(back.remaining(Some(c)), Some(((10, 0), (11, u64::MAX))));
        assert_eq!(
            TelemetryQuery::new("d", "m", 10).until(10).remaining(None),
            None
        );
        let end = TelemetryCursor {
            time_ns: i64::MAX,
            seq: u64::MAX,
        };
        assert_eq!(TelemetryQuery::new("d", "m", 0).remaining(Some(end)), None);
    }

    #[test]
    fn a_page_of_more_than_the_limit_ends_with_the_token_of_its_last_point() {
        let q = TelemetryQuery::new("d", "m", 0).limit(2);
        let page = q.page_of(vec![point(1, 0), point(2, 5), point(3, 0)]);
        assert_eq!(page.items, [point(1, 0), point(2, 5)]);
        let next = q.clone().after(page.next_token);
        assert_eq!(
            next.cursor().expect("ours"),
            Some(TelemetryCursor { time_ns: 2, seq: 5 })
        );
        assert_eq!(q.page_of(vec![point(1, 0), point(2, 0)]).next_token, None);
    }

    #[test]
    fn a_token_that_is_not_a_cursor_is_a_bad_page_token() {
        let q = TelemetryQuery::new("d", "m", 0).after(Some(encode_token(&"x")));
        let e = q.cursor().expect_err("not a cursor");
        assert!(
            matches!(&e, StoreError::BadPageToken(t) if t.0.starts_with("not a position")),
            "{e}"
        );
        assert_eq!(e.http_status(), 400);
    }
}
