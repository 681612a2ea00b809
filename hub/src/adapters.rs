//! The hub's adapter for publishing to devices through the embedded broker (the
//! certificates are in `certificates`).

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;

use mir_broker::{BrokerHandle, QoS};
use mir_shared::ports::{DevicePublisher, PublishError};

use crate::metrics::HubMetrics;

/// Publishes to devices through the broker. The handle is set once the broker runs
/// (the broker's hooks need the publisher first).
#[derive(Default)]
pub struct BrokerPublisher {
    handle: OnceLock<BrokerHandle>,
    metrics: Arc<HubMetrics>,
}

impl BrokerPublisher {
    /// A publisher that counts what it publishes in `metrics`.
    pub fn counting(metrics: Arc<HubMetrics>) -> Self {
        Self {
            handle: OnceLock::new(),
            metrics,
        }
    }

    pub fn set(&self, handle: BrokerHandle) {
        let _ = self.handle.set(handle);
    }
}

#[async_trait]
impl DevicePublisher for BrokerPublisher {
    async fn publish(&self, topic: &str, payload: Bytes) -> Result<(), PublishError> {
        let handle = self.handle.get().ok_or_else(|| PublishError::Failed {
            message: "broker not started".into(),
            source: None,
        })?;
        let delivered = handle
            .publish(topic, payload, QoS::AtLeastOnce)
            .await
            .map_err(|e| PublishError::Failed {
                message: e.to_string(),
                source: Some(Box::new(e)),
            })?;
        if delivered == 0 {
            let device = mir_proto::topics::parse(topic)
                .map(|(id, _)| id.to_string())
                .unwrap_or_else(|_| topic.to_string());
            return Err(PublishError::NotConnected(device));
        }
        HubMetrics::count_topic(&self.metrics.messages_out, topic);
        Ok(())
    }
}
