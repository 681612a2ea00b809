//! `GET /v1/events/watch`: the [`Feed`] as server-sent events, the hub's own route
//! (like `/healthz`; behind the same bearer token as `/v1/*`).
//!
//! - query: the filters of `GET /v1/events` and `mir evt ls` (`deviceId`, `reason`) and
//!   `namespace`, `labels=k=v,k2=v2` ([`FeedFilter::from_query`]);
//! - each message: `id: <event id>`, `event: <reason>`, `data: <FeedEvent JSON>`; a
//!   comment every [`KEEP_ALIVE`];
//! - `Last-Event-ID`: the stored events from [`REPLAY_MARGIN`](super::REPLAY_MARGIN)
//!   before that event's time are sent first (oldest first), then the live ones;
//! - a watcher that lags behind the channel gets the events it missed from the store; if
//!   that fails (or there are too many), a [`LAGGED`] message with the count of missed
//!   events, and the stream ends, so that the client reconnects with `Last-Event-ID`;
//! - the stream ends when the hub shuts down or the client goes;
//! - `group=<name>`: worker mode, each event to one member of the group (see
//!   [`super::group`]); `Last-Event-ID` is then ignored.
//!
//! One connection sends an id once (among its last [`RECENT_IDS`]); across connections
//! an event may come again (see [`super`]).

use std::{convert::Infallible, time::Duration};

use axum::{
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{
        sse::{Event as SseEvent, KeepAlive, Sse},
        IntoResponse, Response,
    },
};
use chrono::{DateTime, Utc};
use futures::Stream;
use tokio::sync::{broadcast::error::RecvError, mpsc};

use mir_shared::domain::{
    feed::{LAGGED, WATCH_PATH},
    FeedEvent, FeedFilter, RecentIds,
};

use super::{Feed, REPLAY_MARGIN};
use crate::http::HttpState;

/// How often an idle stream sends a comment (keeps proxies and clients from timing out).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// How many of the ids it sent one connection remembers.
pub const RECENT_IDS: usize = 4096;

/// The route's path (from `mir_shared::domain::feed`).
pub const PATH: &str = WATCH_PATH;

/// The most characters of a worker group's name.
pub const MAX_GROUP_NAME: usize = 128;

/// The handler.
pub async fn watch(
    State(state): State<HttpState>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let filter = match FeedFilter::from_query(params.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    {
        Ok(f) => f,
        Err(e) => return bad_request(&e),
    };
    let group = params
        .iter()
        .find(|(k, _)| k == "group")
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty());
    if let Some(group) = group {
        if group.chars().count() > MAX_GROUP_NAME {
            return bad_request(&format!(
                "a group name is at most {MAX_GROUP_NAME} characters"
            ));
        }
        return sse_response(member(&state.feed, group, filter));
    }
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(String::from);
    sse_response(events(&state.feed, filter, last_id))
}

/// A 400 answer with `{"error": ...}`.
pub(super) fn bad_request(e: &dyn std::fmt::Display) -> Response {
    let body = serde_json::json!({ "error": e.to_string() }).to_string();
    (
        StatusCode::BAD_REQUEST,
        [("content-type", "application/json")],
        body,
    )
        .into_response()
}

/// The SSE answer of a stream, with a comment every [`KEEP_ALIVE`].
pub(super) fn sse_response(
    stream: impl Stream<Item = Result<SseEvent, Infallible>> + Send + 'static,
) -> Response {
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

/// The messages a watcher task sends on `out`, as the response's stream.
pub(super) fn receiver_stream(
    out: mpsc::Receiver<SseEvent>,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    futures::stream::unfold(out, |mut out| async move {
        out.recv().await.map(|e| (Ok(e), out))
    })
}

/// Sends one message unless the hub shuts down; false when the stream is over.
pub(super) async fn send_or_stop(feed: &Feed, tx: &mpsc::Sender<SseEvent>, m: SseEvent) -> bool {
    tokio::select! {
        _ = feed.shutdown().cancelled() => false,
        sent = tx.send(m) => sent.is_ok(),
    }
}

/// The SSE message of an event: `id`, `event: <reason>`, `data: <FeedEvent>`.
fn message_of(e: &FeedEvent) -> Option<SseEvent> {
    match SseEvent::default()
        .id(&e.id)
        .event(e.reason.as_str())
        .json_data(e)
    {
        Ok(m) => Some(m),
        Err(err) => {
            tracing::warn!(id = %e.id, error = %err, "event feed: cannot encode an event");
            None
        }
    }
}

/// The messages of one member of the worker group `group`; it joins before this
/// returns and leaves when the stream is dropped or the hub shuts down.
pub fn member(
    feed: &Feed,
    group: &str,
    filter: FeedFilter,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let mut membership = feed.join(group, filter);
    let (tx, out) = mpsc::channel(64);
    let feed = feed.clone();
    tokio::spawn(async move {
        loop {
            let e = tokio::select! {
                _ = feed.shutdown().cancelled() => return,
                _ = tx.closed() => return,
                e = membership.rx.recv() => e,
            };
            let Some(e) = e else { return };
            let Some(message) = message_of(&e) else {
                continue;
            };
            membership.sent(e);
            if !send_or_stop(&feed, &tx, message).await {
                return;
            }
        }
    });
    receiver_stream(out)
}

/// The messages of one watcher. It is subscribed before this returns, so an event
/// stored after the call is in the stream.
pub fn events(
    feed: &Feed,
    filter: FeedFilter,
    last_id: Option<String>,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let rx = feed.subscribe();
    let (tx, out) = mpsc::channel(64);
    let watcher = Watcher {
        feed: feed.clone(),
        filter,
        sent: RecentIds::new(RECENT_IDS),
        seen_until: Utc::now(),
        tx,
    };
    tokio::spawn(watcher.run(rx, last_id));
    receiver_stream(out)
}

struct Watcher {
    feed: Feed,
    filter: FeedFilter,
    sent: RecentIds,
    /// The latest event time the watcher saw on the channel (where a lag replay starts).
    seen_until: DateTime<Utc>,
    tx: mpsc::Sender<SseEvent>,
}

impl Watcher {
    async fn run(
        mut self,
        mut rx: tokio::sync::broadcast::Receiver<std::sync::Arc<FeedEvent>>,
        last_id: Option<String>,
    ) {
        if let Some(id) = last_id {
            match self.feed.time_of(&self.filter, &id).await {
                Ok(Some(time)) => {
                    self.sent.insert(&id);
                    if !self.replay(time, 0).await {
                        return;
                    }
                }
                Ok(None) => {
                    tracing::info!(last_event_id = %id, "event feed: Last-Event-ID not among the stored events; live events only")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "event feed: cannot replay after Last-Event-ID");
                    self.lagged(0).await;
                    return;
                }
            }
        }
        loop {
            let item = tokio::select! {
                _ = self.feed.shutdown().cancelled() => return,
                _ = self.tx.closed() => return,
                r = rx.recv() => r,
            };
            let more = match item {
                Ok(e) => {
                    self.seen_until = self.seen_until.max(e.time);
                    self.forward(&e).await
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::info!(
                        missed,
                        "event feed: a watcher lagged; replaying from the store"
                    );
                    self.replay(self.seen_until, missed).await
                }
                Err(RecvError::Closed) => false,
            };
            if !more {
                return;
            }
        }
    }

    /// Sends the stored events from [`REPLAY_MARGIN`] before `from`; on failure a
    /// [`LAGGED`] message. False when the stream is over.
    async fn replay(&mut self, from: DateTime<Utc>, missed: u64) -> bool {
        match self.feed.replay(&self.filter, from - REPLAY_MARGIN).await {
            Ok(events) => {
                for e in &events {
                    if !self.forward(e).await {
                        return false;
                    }
                }
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, missed, "event feed: cannot replay; telling the watcher it lagged");
                self.lagged(missed).await;
                false
            }
        }
    }

    /// Sends `e` if the filter takes it and it was not sent already. False when the
    /// stream is over.
    async fn forward(&mut self, e: &FeedEvent) -> bool {
        if !self.filter.matches(e) || !self.sent.insert(&e.id) {
            return true;
        }
        match message_of(e) {
            Some(message) => self.send(message).await,
            None => true,
        }
    }

    async fn lagged(&self, missed: u64) {
        let message = SseEvent::default().event(LAGGED).data(missed.to_string());
        self.send(message).await;
    }

    async fn send(&self, message: SseEvent) -> bool {
        send_or_stop(&self.feed, &self.tx, message).await
    }
}
