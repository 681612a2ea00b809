//! The local event feed: every event the hub stores is published, with its device's
//! labels, to the watchers of `GET /v1/events/watch` (server-sent events).
//!
//! - this module: [`Feed`] (a broadcast channel of [`FeedEvent`]s; labels read from the
//!   twins; replays from the store) and [`Feed::wire`], which puts [`FeedEvents`], a
//!   decorator of the `EventStore` port, in the hub's [`Ports`]: after the store's
//!   `append` succeeds, it publishes each event. Both profiles go through it;
//! - [`watch`]: the SSE route, its filters, `Last-Event-ID` and lag replays;
//! - [`group`]: worker mode (`?group=<name>`), each event to one member of the group;
//! - [`telemetry`]: the telemetry stream (`GET /v1/telemetry/watch`), a decorator of the
//!   `TelemetrySink` port that [`Feed::wire`] also puts in the ports;
//! - [`devices`]: the heartbeat and schema streams (`GET /v1/heartbeats/watch`,
//!   `GET /v1/schemas/watch`), published by the hub's core after the `heartbeat` or
//!   `hello` function handled a device's message;
//! - `live`: the watcher loop the telemetry, heartbeat and schema streams share (no
//!   replay; a watcher behind the channel is told it lagged).
//!
//! **At least once.** An event is published after it is stored, so a watcher never sees
//! one the store does not hold. The store's `append` is idempotent but does not say
//! which events were new, so an event appended twice (a redelivered invocation) is
//! published twice; one SSE connection drops the ids it sent recently, and a replay
//! (after `Last-Event-ID`, or when a watcher lags behind the channel's
//! [`FEED_CAPACITY`]) starts [`REPLAY_MARGIN`] before the last event the watcher saw, so
//! duplicates are possible across reconnects: consumers deduplicate by `id`. An event
//! whose `time` is more than that margin older than when it was appended may be missed by
//! a replay. With nobody watching, nothing is published (no twin reads).

pub mod devices;
pub mod group;
mod live;
pub mod telemetry;
pub mod watch;

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use mir_shared::{
    domain::{
        page, twin::Meta, Event, EventFilter, FeedEvent, FeedFilter, Page, PageRequest,
        TelemetryPoint,
    },
    ports::{EventStore, MissingPort, Ports, StoreError, StoreResult, TelemetrySink, TwinStore},
};

/// How many events the channel holds for a watcher that reads slower than they come.
pub const FEED_CAPACITY: usize = 1024;

/// How far before the last event a watcher saw a replay starts.
pub const REPLAY_MARGIN: chrono::Duration = chrono::Duration::seconds(60);

/// At most this many events in one replay; past it the watcher is told it lagged.
pub const REPLAY_LIMIT: usize = 10_000;

/// The feed of one hub. Cloning shares the channel.
#[derive(Clone)]
pub struct Feed {
    tx: broadcast::Sender<Arc<FeedEvent>>,
    /// The telemetry stream ([`telemetry`]).
    telemetry: broadcast::Sender<Arc<TelemetryPoint>>,
    /// Worker mode ([`group`]).
    groups: Arc<group::Groups>,
    /// The undecorated store: replays read it.
    store: Arc<dyn EventStore>,
    twins: Option<Arc<dyn TwinStore>>,
    /// The hub's shutdown: every watch stream ends with it.
    shutdown: CancellationToken,
}

/// Why a replay could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("more than {REPLAY_LIMIT} events to replay")]
    TooMany,
}

impl Feed {
    /// Replaces the events port of `ports` by one that publishes what it stores, and
    /// returns the feed; the streams end when `shutdown` is cancelled.
    pub fn wire(
        ports: Ports,
        capacity: usize,
        shutdown: CancellationToken,
    ) -> Result<(Ports, Feed), MissingPort> {
        let store = ports.events.clone().ok_or(MissingPort { port: "events" })?;
        let (tx, _) = broadcast::channel(capacity.max(1));
        let (telemetry, _) = broadcast::channel(capacity.max(1));
        let feed = Feed {
            tx,
            telemetry,
            groups: Arc::default(),
            store: store.clone(),
            twins: ports.twins.clone(),
            shutdown,
        };
        let events: Arc<dyn EventStore> = Arc::new(FeedEvents {
            inner: store,
            feed: feed.clone(),
        });
        let telemetry_sink = ports.telemetry_sink.clone().map(|inner| {
            let sink: Arc<dyn TelemetrySink> = Arc::new(telemetry::FeedTelemetry {
                inner,
                feed: feed.clone(),
            });
            sink
        });
        Ok((
            Ports {
                events: Some(events),
                telemetry_sink,
                ..ports
            },
            feed,
        ))
    }

    /// Joins the worker group `name` ([`group`]).
    pub fn join(&self, name: &str, filter: FeedFilter) -> group::Membership {
        self.groups.join(name, filter)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<FeedEvent>> {
        self.tx.subscribe()
    }

    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Publishes stored events to the current watchers (none: nothing to do).
    async fn publish(&self, events: &[Event]) {
        if self.tx.receiver_count() == 0 && self.groups.is_empty() {
            return;
        }
        for e in self.labelled(events.to_vec()).await {
            let e = Arc::new(e);
            self.groups.dispatch(&e);
            // No receiver left between the check and now: nobody to tell.
            let _ = self.tx.send(e);
        }
    }

    /// The events with their devices' labels (one twin read per device); an event
    /// recorded without its device's name gets the twin's name and namespace.
    async fn labelled(&self, events: Vec<Event>) -> Vec<FeedEvent> {
        let unlabelled = |events: Vec<Event>| {
            events
                .into_iter()
                .map(|e| FeedEvent::new(e, Default::default()))
                .collect()
        };
        let Some(twins) = self.twins.as_deref() else {
            return unlabelled(events);
        };
        // The same labelling as the event-feed function on AWS.
        match mir_shared::service::feed::labelled(twins, events.clone()).await {
            Ok(labelled) => labelled,
            Err(e) => {
                tracing::warn!(error = %e, "event feed: publishing without labels, the twins cannot be read");
                unlabelled(events)
            }
        }
    }

    /// The stored events `filter` selects from `since` on, oldest first, with labels.
    pub async fn replay(
        &self,
        filter: &FeedFilter,
        since: DateTime<Utc>,
    ) -> Result<Vec<FeedEvent>, ReplayError> {
        let (mut events, complete) = self.read(&filter.store_filter(Some(since))).await?;
        if !complete {
            return Err(ReplayError::TooMany);
        }
        events.reverse();
        let labelled = self.labelled(events).await;
        Ok(labelled.into_iter().filter(|e| filter.matches(e)).collect())
    }

    /// The time of the stored event `id` among those `filter` selects (None: not found
    /// among the newest [`REPLAY_LIMIT`]).
    pub async fn time_of(
        &self,
        filter: &FeedFilter,
        id: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let (events, _) = self.read(&filter.store_filter(None)).await?;
        Ok(events.iter().find(|e| e.id == id).map(|e| e.time))
    }

    /// Newest first, at most [`REPLAY_LIMIT`], and whether that was all of them.
    async fn read(&self, f: &EventFilter) -> Result<(Vec<Event>, bool), StoreError> {
        let store = &self.store;
        let mut events = page::collect_up_to(REPLAY_LIMIT + 1, |p: PageRequest| async move {
            store.list(f, &p).await
        })
        .await?;
        let complete = events.len() <= REPLAY_LIMIT;
        events.truncate(REPLAY_LIMIT);
        Ok((events, complete))
    }
}

/// The device's name, namespace and labels; none for a deleted device or when the twin
/// cannot be read (the document is published all the same).
async fn meta_of(twins: Option<&dyn TwinStore>, device_id: &str) -> Option<Meta> {
    match twins?.get(device_id).await {
        Ok(t) => t.map(|t| t.value.meta),
        Err(e) => {
            tracing::warn!(device_id, error = %e, "feed: publishing without labels, the twin cannot be read");
            None
        }
    }
}

/// The devices' name, namespace and labels, read once per device (one batch).
struct Labels<'a> {
    feed: &'a Feed,
    metas: HashMap<String, Option<Meta>>,
}

impl<'a> Labels<'a> {
    fn new(feed: &'a Feed) -> Self {
        Self {
            feed,
            metas: HashMap::new(),
        }
    }

    async fn meta(&mut self, device_id: &str) -> Meta {
        if !self.metas.contains_key(device_id) {
            let m = meta_of(self.feed.twins.as_deref(), device_id).await;
            self.metas.insert(device_id.to_string(), m);
        }
        self.metas
            .get(device_id)
            .cloned()
            .flatten()
            .unwrap_or_default()
    }

    async fn of(&mut self, device_id: &str) -> std::collections::BTreeMap<String, String> {
        self.meta(device_id).await.labels
    }
}

/// The `EventStore` that publishes to the [`Feed`] what the inner store stored.
struct FeedEvents {
    inner: Arc<dyn EventStore>,
    feed: Feed,
}

#[async_trait]
impl EventStore for FeedEvents {
    async fn append(&self, events: &[Event]) -> StoreResult<()> {
        self.inner.append(events).await?;
        self.feed.publish(events).await;
        Ok(())
    }

    async fn list(&self, filter: &EventFilter, page: &PageRequest) -> StoreResult<Page<Event>> {
        self.inner.list(filter, page).await
    }
}
