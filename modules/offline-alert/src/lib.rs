//! `offline-alert`, an example Mir module: when a device has been offline for N minutes,
//! it records a custom Warning event [`ALERT`] about the device (payload
//! `{"minutes": N, "offlineEvent": <id>}`), which the feed fans out like Mir's own
//! events (`mir evt watch --reason Custom`), and logs an alert.
//!
//! Layout:
//! - this file: [`Platform`] (the two calls the module makes: a device's presence, and
//!   publishing an event; [`Module`] implements it), [`alert`] (the event it publishes)
//!   and [`AlertError`];
//! - [`local`]: against `mir local`: the event stream, one timer per offline device,
//!   cancelled when the device comes back online (binary `offline-alert`);
//! - [`lambda`]: on AWS, deployed with the CDK construct `MirModule` in worker mode
//!   with a delivery delay of N minutes: each `DeviceOffline` event arrives N minutes
//!   late, and the device is alerted on if it is still offline and has not sent a
//!   heartbeat since (binary `offline-alert-lambda`; the stack is
//!   `infra/cdk/lib/offline-alert-stack.ts`).
//!
//! Delivery is at least once in both modes, so an alert may be published twice for one
//! offline event; both carry the event's id in `offlineEvent`.

pub mod lambda;
pub mod local;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use mir_module_sdk::{ClientError, EventType, FeedEvent, Module, ModuleError, PublishEvent};

/// The custom event's name.
pub const ALERT: &str = "DeviceOfflineAlert";

/// What the module knows of a device now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    pub online: bool,
    pub last_heartbeat: Option<DateTime<Utc>>,
}

/// Why the module could not check a device or publish its alert.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error(transparent)]
    Platform(#[from] ModuleError),
}

impl AlertError {
    /// Whether the same work may succeed later (the API unreachable, a 5xx, a 429).
    pub fn is_retryable(&self) -> bool {
        match self {
            AlertError::Platform(ModuleError::Client(ClientError::Api { status, .. })) => {
                *status >= 500 || *status == 429
            }
            AlertError::Platform(ModuleError::Client(e)) => e.is_retryable(),
            AlertError::Platform(_) => false,
        }
    }
}

/// The platform calls of the module.
#[async_trait]
pub trait Platform: Send + Sync {
    /// The device's presence; `None` when it does not exist (any more).
    async fn presence(&self, device_id: &str) -> Result<Option<Presence>, AlertError>;
    /// Records the event (reason `Custom`).
    async fn publish(&self, event: &PublishEvent) -> Result<(), AlertError>;
}

#[async_trait]
impl Platform for Module {
    async fn presence(&self, device_id: &str) -> Result<Option<Presence>, AlertError> {
        match self.client().get_device(device_id).await {
            Ok(twin) => Ok(Some(Presence {
                online: twin.status.online,
                last_heartbeat: twin.status.last_heartbeat,
            })),
            Err(ClientError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(AlertError::Platform(e.into())),
        }
    }

    async fn publish(&self, event: &PublishEvent) -> Result<(), AlertError> {
        self.publish_event(event).await?;
        Ok(())
    }
}

/// The alert about the device of `offline`, offline for `minutes`.
pub fn alert(offline: &FeedEvent, minutes: f64) -> PublishEvent {
    PublishEvent {
        device_id: offline.device_id.clone(),
        event_type: EventType::Warning,
        name: ALERT.into(),
        message: format!("{} has been offline for {minutes} minutes", who(offline)),
        payload: serde_json::json!({ "minutes": minutes, "offlineEvent": offline.id }),
    }
}

/// `name/namespace`, or the device id when the event has no name.
pub fn who(e: &FeedEvent) -> String {
    if e.name.is_empty() {
        e.device_id.clone()
    } else {
        format!("{}/{}", e.name, e.namespace)
    }
}

/// Whether the device of `offline`, seen as `now`, is still in the outage that event
/// began: offline, with no heartbeat after the event (one would mean it came back,
/// and a later `DeviceOffline` tells about the next outage).
pub fn still_offline(offline: &FeedEvent, now: &Presence) -> bool {
    !now.online && now.last_heartbeat.is_none_or(|hb| hb <= offline.time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mir_module_sdk::EventReason;

    pub(crate) fn offline_event(device: &str, at: DateTime<Utc>) -> FeedEvent {
        FeedEvent {
            id: format!("off-{device}"),
            time: at,
            event_type: EventType::Normal,
            reason: EventReason::DeviceOffline,
            device_id: device.into(),
            name: "weather".into(),
            namespace: "lab".into(),
            labels: Default::default(),
            message: "offline".into(),
            payload: serde_json::Value::Null,
            actor: None,
            custom_name: None,
        }
    }

    #[test]
    fn a_device_is_still_offline_unless_online_or_heard_from_after_the_event() {
        let at = DateTime::from_timestamp(1_790_000_000, 0).unwrap_or_default();
        let e = offline_event("d1", at);
        let before = at - chrono::Duration::seconds(90);
        let after = at + chrono::Duration::seconds(30);
        let p = |online, hb| Presence {
            online,
            last_heartbeat: hb,
        };
        assert!(still_offline(&e, &p(false, Some(before))));
        assert!(still_offline(&e, &p(false, None)));
        assert!(!still_offline(&e, &p(true, Some(after))));
        // Came back and left again: the later offline event alerts, not this one.
        assert!(!still_offline(&e, &p(false, Some(after))));
    }

    #[test]
    fn the_alert_names_the_device_and_the_offline_event() {
        let at = DateTime::from_timestamp(1_790_000_000, 0).unwrap_or_default();
        let a = alert(&offline_event("d1", at), 5.0);
        assert_eq!(a.name, "DeviceOfflineAlert");
        assert_eq!(a.event_type, EventType::Warning);
        assert_eq!(a.message, "weather/lab has been offline for 5 minutes");
        assert_eq!(a.payload["offlineEvent"], "off-d1");
    }

    #[test]
    fn only_an_unreachable_or_failing_api_is_worth_a_retry() {
        let api = |status| {
            AlertError::Platform(ModuleError::Client(ClientError::Api {
                status,
                message: "x".into(),
            }))
        };
        assert!(api(503).is_retryable());
        assert!(api(429).is_retryable());
        assert!(!api(403).is_retryable());
        assert!(
            AlertError::Platform(ModuleError::Client(ClientError::Unreachable {
                url: "http://127.0.0.1:1".into()
            }))
            .is_retryable()
        );
    }
}
