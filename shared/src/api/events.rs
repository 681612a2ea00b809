//! `POST /v1/events`: a module publishes an event of its own, stored and fanned out
//! like Mir's (reason [`EventReason::Custom`], its name in `customName`).
//!
//! [`PublishEvent`] is the body the SDK sends; [`PublishEvent::to_event`] validates it
//! into the [`Event`] to store, with the caller as its actor and an id derived from the
//! request id (one request, one event, however often it is retried by API Gateway's
//! client).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Caller;
use crate::domain::{CustomName, CustomNameError, Event, EventReason, EventType};

/// The most characters of a custom event's `message`.
pub const MAX_CUSTOM_MESSAGE: usize = 1024;

/// The body of `POST /v1/events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublishEvent {
    /// The device the event is about (its name, namespace and labels are added when the
    /// feed publishes it).
    pub device_id: String,
    /// `Normal` (default) or `Warning`.
    #[serde(rename = "type", default = "normal")]
    pub event_type: EventType,
    /// The custom event's name ([`CustomName`]): what subscribers filter on
    /// (`customName`).
    pub name: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub payload: Value,
}

fn normal() -> EventType {
    EventType::Normal
}

/// Why a custom event was refused (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishEventError {
    #[error("deviceId is required")]
    MissingDeviceId,
    #[error(transparent)]
    DeviceId(#[from] mir_proto::InvalidDeviceId),
    #[error(transparent)]
    Name(#[from] CustomNameError),
    #[error("the message is {len} characters long; at most {MAX_CUSTOM_MESSAGE}")]
    MessageTooLong { len: usize },
}

impl PublishEvent {
    /// The event to store, recorded at `now` by `caller`. The payload's size is checked
    /// by the handler (413, [`super::refuse_large_json`]).
    pub fn to_event(
        &self,
        caller: &Caller,
        now: DateTime<Utc>,
    ) -> Result<Event, PublishEventError> {
        let device = self.device_id.trim();
        if device.is_empty() {
            return Err(PublishEventError::MissingDeviceId);
        }
        let device = mir_proto::DeviceId::new(device)?;
        let name = CustomName::new(&self.name)?;
        let len = self.message.chars().count();
        if len > MAX_CUSTOM_MESSAGE {
            return Err(PublishEventError::MessageTooLong { len });
        }
        let mut event = Event::by_caller(
            EventReason::Custom,
            device.as_str(),
            now,
            caller,
            self.message.clone(),
        )
        .with_payload(self.payload.clone());
        event.event_type = self.event_type;
        event.custom_name = Some(name.to_string());
        Ok(event)
    }
}
