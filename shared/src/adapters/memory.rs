//! In-process adapters that hold no data worth keeping: a recording publisher, a
//! recording event feed and a settable clock. Used by the local hub's tests and by
//! handler tests.

use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::domain::{FeedEvent, TelemetryPoint};
use crate::ports::{Clock, DevicePublisher, FeedError, FeedPublisher, PublishError};

/// Records every publish; devices listed in `offline` refuse them.
#[derive(Debug, Default)]
pub struct RecordingPublisher {
    published: Mutex<Vec<(String, Bytes)>>,
    offline: Mutex<Vec<String>>,
}

impl RecordingPublisher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn published(&self) -> Vec<(String, Bytes)> {
        self.published.lock().map(|p| p.clone()).unwrap_or_default()
    }

    pub fn set_offline(&self, device_id: &str) {
        if let Ok(mut o) = self.offline.lock() {
            o.push(device_id.to_string());
        }
    }
}

#[async_trait]
impl DevicePublisher for RecordingPublisher {
    async fn publish(&self, topic: &str, payload: Bytes) -> Result<(), PublishError> {
        if let Ok((id, _)) = mir_proto::topics::parse(topic) {
            let offline = self
                .offline
                .lock()
                .map(|o| o.contains(&id.to_string()))
                .unwrap_or(false);
            if offline {
                return Err(PublishError::NotConnected(id.to_string()));
            }
        }
        if let Ok(mut p) = self.published.lock() {
            p.push((topic.to_string(), payload));
        }
        Ok(())
    }
}

/// Records every event published; can be told to refuse an event for good, or to be
/// unavailable after a number of events.
#[derive(Debug, Default)]
pub struct RecordingFeed {
    published: Mutex<Vec<FeedEvent>>,
    points: Mutex<Vec<TelemetryPoint>>,
    refuse: Mutex<Vec<String>>,
    /// Publishes this many more events, then is unavailable (once).
    fail_after: Mutex<Option<usize>>,
}

impl RecordingFeed {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn published(&self) -> Vec<FeedEvent> {
        self.published.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// The telemetry points published, in order.
    pub fn published_telemetry(&self) -> Vec<TelemetryPoint> {
        self.points.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// The bus refuses the event `id` for good ([`FeedError::Refused`]).
    pub fn refuse(&self, id: &str) {
        if let Ok(mut r) = self.refuse.lock() {
            r.push(id.to_string());
        }
    }

    /// The next publish (of events or points) takes `n` of them, then fails
    /// ([`FeedError::Unavailable`]).
    pub fn fail_after(&self, n: usize) {
        if let Ok(mut f) = self.fail_after.lock() {
            *f = Some(n);
        }
    }
}

impl RecordingFeed {
    /// Records `items` into `into` in order, refusing and failing as told.
    fn record<T: Clone>(
        &self,
        items: &[T],
        id: impl Fn(&T) -> &str,
        into: &Mutex<Vec<T>>,
    ) -> Result<(), FeedError> {
        let refused = self.refuse.lock().map(|r| r.clone()).unwrap_or_default();
        let fail_after = self.fail_after.lock().ok().and_then(|mut f| f.take());
        for (i, item) in items.iter().enumerate() {
            if fail_after == Some(i) {
                return Err(FeedError::Unavailable {
                    published: i,
                    message: "the recording feed was told to fail".into(),
                    source: None,
                });
            }
            if refused.iter().any(|r| r == id(item)) {
                return Err(FeedError::Refused {
                    id: id(item).to_string(),
                    code: "InvalidArgument".into(),
                });
            }
            if let Ok(mut p) = into.lock() {
                p.push(item.clone());
            }
        }
        Ok(())
    }
}

#[async_trait]
impl FeedPublisher for RecordingFeed {
    async fn publish(&self, events: &[FeedEvent]) -> Result<(), FeedError> {
        self.record(events, |e| &e.id, &self.published)
    }

    async fn publish_telemetry(&self, points: &[TelemetryPoint]) -> Result<(), FeedError> {
        self.record(points, |p| &p.id, &self.points)
    }
}

/// A clock that returns what it was set to.
#[derive(Debug)]
pub struct FixedClock(Mutex<DateTime<Utc>>);

impl FixedClock {
    pub fn new(now: DateTime<Utc>) -> Self {
        Self(Mutex::new(now))
    }

    pub fn set(&self, now: DateTime<Utc>) {
        if let Ok(mut t) = self.0.lock() {
            *t = now;
        }
    }
}

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0.lock().map(|t| *t).unwrap_or_else(|_| Utc::now())
    }
}
