//! The telemetry stream: every decoded point the hub's telemetry sink stores, with its
//! device's labels, to the watchers of `GET /v1/telemetry/watch` (server-sent events).
//!
//! - [`FeedTelemetry`], a decorator of the `TelemetrySink` port that [`super::Feed::wire`]
//!   puts in the hub's ports: after the sink's `write` succeeds it publishes each record
//!   the sink did not reject, as a [`TelemetryPoint`] (the values as the device's schema
//!   decodes them, as `GET /v1/telemetry/query` returns them);
//! - [`watch`]: the route; query `deviceId`, `message`, `namespace`, `labels`
//!   ([`TelemetryFilter`]); each message `id: <point id>`, `event: <message name>`,
//!   `data: <TelemetryPoint>`. There is no replay: a watcher that falls behind the
//!   channel ([`super::FEED_CAPACITY`] points) gets a `lagged` message (how many it
//!   missed) and the stream ends (the loop of [`super::live`]).
//!
//! At least once, like events: a batch written twice is published twice; consumers drop
//! a point id they saw. Nothing is read or sent while nobody watches.

use std::{convert::Infallible, sync::Arc};

use async_trait::async_trait;
use axum::{
    extract::{Query, State},
    response::{sse::Event as SseEvent, Response},
};
use futures::Stream;

use mir_shared::{
    domain::{TelemetryFilter, TelemetryPoint},
    ports::{StoreResult, TelemetrySink, WriteReport},
    telemetry::TelemetryRecord,
};

use super::{
    live::{live, LiveDocument},
    watch::{bad_request, sse_response},
    Feed,
};
use crate::http::HttpState;

/// The sink that publishes to the [`Feed`] what the inner sink wrote.
pub(super) struct FeedTelemetry {
    pub(super) inner: Arc<dyn TelemetrySink>,
    pub(super) feed: Feed,
}

#[async_trait]
impl TelemetrySink for FeedTelemetry {
    async fn write(&self, records: &[TelemetryRecord]) -> StoreResult<WriteReport> {
        let report = self.inner.write(records).await?;
        if self.feed.telemetry.receiver_count() > 0 {
            let written = report.stored(records);
            let mut labels = super::Labels::new(&self.feed);
            for r in written {
                let l = labels.of(&r.device_id).await;
                let _ = self
                    .feed
                    .telemetry
                    .send(Arc::new(TelemetryPoint::new(r, l)));
            }
        }
        Ok(report)
    }
}

/// `GET /v1/telemetry/watch`.
pub async fn watch(
    State(state): State<HttpState>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    match TelemetryFilter::from_query(params.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        Ok(filter) => sse_response(points(&state.feed, filter)),
        Err(e) => bad_request(&e),
    }
}

impl LiveDocument for TelemetryPoint {
    fn id(&self) -> &str {
        &self.id
    }
    fn event(&self) -> Option<&str> {
        Some(&self.message)
    }
}

/// The messages of one telemetry watcher, subscribed before this returns.
pub fn points(
    feed: &Feed,
    filter: TelemetryFilter,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let rx = feed.telemetry.subscribe();
    live(feed, rx, move |p| filter.matches(p), "telemetry")
}
