//! In-process adapters that hold no data worth keeping: a recording publisher and a
//! settable clock. Used by the local hub's tests and by handler tests.

use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::ports::{Clock, DevicePublisher, PublishError};

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
