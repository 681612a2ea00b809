//! The events IoT rules send to Lambda (and the local hub builds the same way).
//!
//! Device routes use the SQL of docs/architecture.md, Topics and rule events:
//! `SELECT encode(*, 'base64') AS payload, topic(2) AS deviceId, clientid() AS clientId,
//! timestamp() AS receivedAt FROM 'mir/+/tlm'`.

use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use mir_proto::{topics::DeviceTopic, DeviceId};

/// A device message as a topic rule delivers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleEvent {
    /// The MQTT payload, base64.
    #[serde(default)]
    pub payload: String,
    /// `topic(2)`: the device id in the topic.
    pub device_id: String,
    /// `clientid()`: the MQTT client that published.
    #[serde(default)]
    pub client_id: String,
    /// `timestamp()`: when the broker received it, Unix ms.
    pub received_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleEventError {
    #[error("invalid device id in topic: {0}")]
    BadDeviceId(#[from] mir_proto::InvalidDeviceId),
    #[error("client {client_id:?} published on the topic of device {device_id:?}; refused")]
    ClientMismatch {
        client_id: String,
        device_id: String,
    },
    #[error("payload is not base64: {0}")]
    BadBase64(String),
    #[error("payload of {size} bytes is over the {limit} bytes limit")]
    TooLarge { size: usize, limit: usize },
}

impl RuleEvent {
    /// Builds the event the rule for `topic` would send; what the local hub does.
    pub fn new(
        device_id: &str,
        client_id: &str,
        payload: &[u8],
        received_at: DateTime<Utc>,
    ) -> Self {
        Self {
            payload: base64::engine::general_purpose::STANDARD.encode(payload),
            device_id: device_id.to_string(),
            client_id: client_id.to_string(),
            received_at: received_at.timestamp_millis(),
        }
    }

    /// The device, checked: valid id, and published by that device itself.
    pub fn device(&self) -> Result<DeviceId, RuleEventError> {
        let id = DeviceId::new(self.device_id.clone())?;
        if self.client_id != self.device_id {
            return Err(RuleEventError::ClientMismatch {
                client_id: self.client_id.clone(),
                device_id: self.device_id.clone(),
            });
        }
        Ok(id)
    }

    pub fn payload_bytes(&self) -> Result<Vec<u8>, RuleEventError> {
        // Base64 of 128 KB is about 171 KB; refuse anything clearly beyond the limit.
        let limit = mir_proto::MAX_PAYLOAD_BYTES;
        if self.payload.len() > limit / 3 * 4 + 8 {
            return Err(RuleEventError::TooLarge {
                size: self.payload.len() / 4 * 3,
                limit,
            });
        }
        base64::engine::general_purpose::STANDARD
            .decode(self.payload.as_bytes())
            .map_err(|e| RuleEventError::BadBase64(e.to_string()))
    }

    pub fn received_at(&self) -> DateTime<Utc> {
        event_time(self.received_at)
    }

    /// A key that is the same for every delivery of this message (for idempotency).
    pub fn cause(&self, topic: DeviceTopic) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.payload.hash(&mut h);
        format!(
            "{}|{}|{:016x}",
            topic.suffix(),
            self.received_at,
            h.finish()
        )
    }
}

/// The hub's server-sent route of custom device routes (a module's local subscription).
pub const ROUTES_WATCH_PATH: &str = "/v1/routes/watch";

/// A message of a custom device route (`mir/{id}/x/{module}/{route}`) as a module gets
/// it: on AWS the JSON of the module's topic rule (`infra/cdk/lib/module.ts`,
/// `routeSql`: the device route fields plus `topic(4) AS module, topic(5) AS route`),
/// locally the data of `GET /v1/routes/watch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomRouteEvent {
    #[serde(flatten)]
    pub message: RuleEvent,
    pub module: String,
    pub route: String,
}

impl CustomRouteEvent {
    pub fn new(
        device_id: &str,
        client_id: &str,
        route: &mir_proto::topics::CustomRoute,
        payload: &[u8],
        received_at: DateTime<Utc>,
    ) -> Self {
        Self {
            message: RuleEvent::new(device_id, client_id, payload, received_at),
            module: route.module().to_string(),
            route: route.route().to_string(),
        }
    }

    /// The route, checked.
    pub fn custom_route(
        &self,
    ) -> Result<mir_proto::topics::CustomRoute, mir_proto::topics::InvalidCustomName> {
        mir_proto::topics::CustomRoute::new(&self.module, &self.route)
    }

    /// The same for every delivery of this message: consumers deduplicate by it.
    pub fn id(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.message.payload.hash(&mut h);
        format!(
            "{}/{}/{}/{}/{:016x}",
            self.message.device_id,
            self.module,
            self.route,
            self.message.received_at,
            h.finish()
        )
    }
}

/// An AWS IoT lifecycle event (`$aws/events/presence/...`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleEvent {
    pub client_id: String,
    /// Unix ms.
    pub timestamp: i64,
    /// `connected` or `disconnected`.
    pub event_type: String,
    #[serde(default)]
    pub session_identifier: String,
    #[serde(default)]
    pub principal_identifier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnect_reason: Option<String>,
    #[serde(default)]
    pub version_number: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_initiated_disconnect: Option<bool>,
}

impl LifecycleEvent {
    pub fn time(&self) -> DateTime<Utc> {
        event_time(self.timestamp)
    }
}

/// Unix ms as a time; now when outside what the stores keep (nanoseconds in an i64,
/// 1677 to 2262), so that the presence rules' arithmetic on it cannot overflow (a time
/// at chrono's limit plus a heartbeat interval panicked; found by the property tests).
fn event_time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .filter(|t| t.timestamp_nanos_opt().is_some())
        .unwrap_or_else(Utc::now)
}

/// An EventBridge scheduled event (only the parts the sweep reads).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduledEvent {
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    #[serde(default)]
    pub source: String,
    pub time: DateTime<Utc>,
}

/// What the presence function receives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PresenceInput {
    Lifecycle(LifecycleEvent),
    Schedule(ScheduledEvent),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_custom_route_event_from_the_module_rule_sql_reads_its_route_and_payload() {
        let ev: CustomRouteEvent = serde_json::from_str(
            r#"{"payload":"AQI=","deviceId":"pump-1","route":"door","module":"alerts","clientId":"pump-1","receivedAt":1700000000123}"#,
        )
        .expect("the JSON of the module's topic rule");
        assert_eq!(ev.message.payload_bytes().expect("base64"), vec![1, 2]);
        assert_eq!(
            ev.message.device().map(|d| d.to_string()).ok(),
            Some("pump-1".into())
        );
        let route = ev.custom_route().expect("valid names");
        assert_eq!((route.module(), route.route()), ("alerts", "door"));
        let again: CustomRouteEvent =
            serde_json::from_value(serde_json::to_value(&ev).expect("json")).expect("back");
        assert_eq!(again.id(), ev.id(), "the same message has the same id");
        let other = CustomRouteEvent {
            message: RuleEvent {
                payload: "AQM=".into(),
                ..ev.message.clone()
            },
            ..ev.clone()
        };
        assert_ne!(other.id(), ev.id(), "another payload is another message");
    }

    #[test]
    fn a_rule_event_from_the_aws_sql_deserializes() {
        let ev: RuleEvent = serde_json::from_str(
            r#"{"payload":"CAE=","deviceId":"weather","clientId":"weather","receivedAt":1700000000123}"#,
        )
        .expect("parses");
        assert_eq!(ev.device().expect("ok").as_str(), "weather");
        assert_eq!(ev.payload_bytes().expect("b64"), [8, 1]);
        assert_eq!(ev.received_at().timestamp_millis(), 1_700_000_000_123);
    }

    #[test]
    fn an_event_time_beyond_what_the_stores_keep_reads_as_now() {
        // Found by the property tests: a connected event at chrono's limit made the
        // presence rules panic (`DateTime + TimeDelta` overflowed).
        let before = Utc::now();
        let lc: LifecycleEvent = serde_json::from_str(
            r#"{"clientId":"0","timestamp":8210266876500000,"eventType":"connected"}"#,
        )
        .expect("lifecycle");
        let ev = RuleEvent::new("d", "d", b"", Utc::now());
        let far = RuleEvent {
            received_at: -8_334_601_228_800_000,
            ..ev
        };
        for t in [lc.time(), far.received_at()] {
            assert!(t >= before && t <= Utc::now(), "{t}");
        }
        let mut status = crate::domain::twin::Status::default();
        let at = lc.time();
        let connect = crate::domain::presence::Lifecycle {
            session_id: "",
            version: 0,
            at,
            phase: crate::domain::presence::Phase::Connected,
            disconnect_reason: None,
        };
        crate::domain::presence::apply_lifecycle(&mut status, &connect);
        crate::domain::presence::set_stale_at(&mut status, chrono::Duration::minutes(5));
        assert_eq!(status.stale_at, Some(at + chrono::Duration::minutes(5)));
        let last = RuleEvent {
            received_at: 8_210_266_876_799_999,
            ..far
        };
        assert!(last.received_at() <= Utc::now());
    }

    #[test]
    fn another_client_on_a_devices_topic_is_refused() {
        let ev = RuleEvent::new("victim", "attacker", b"x", Utc::now());
        assert!(matches!(
            ev.device(),
            Err(RuleEventError::ClientMismatch { .. })
        ));
        let ev = RuleEvent::new("bad id", "bad id", b"x", Utc::now());
        assert!(matches!(ev.device(), Err(RuleEventError::BadDeviceId(_))));
    }

    #[test]
    fn lifecycle_and_schedule_events_are_told_apart() {
        let lc: PresenceInput = serde_json::from_str(
            r#"{"clientId":"d1","timestamp":1573002230757,"eventType":"disconnected","clientInitiatedDisconnect":true,"sessionIdentifier":"a4666d2a","principalIdentifier":"12345678901234567890123456789012","disconnectReason":"CLIENT_INITIATED_DISCONNECT","versionNumber":0}"#,
        )
        .expect("lifecycle");
        assert!(matches!(lc, PresenceInput::Lifecycle(ref e) if e.event_type == "disconnected"));
        let sc: PresenceInput = serde_json::from_str(
            r#"{"version":"0","id":"53dc4d37","detail-type":"Scheduled Event","source":"aws.events","account":"123456789012","time":"2015-10-08T16:53:06Z","region":"us-east-1","resources":["arn:aws:events:us-east-1:123456789012:rule/my-scheduled-rule"],"detail":{}}"#,
        )
        .expect("schedule");
        assert!(matches!(sc, PresenceInput::Schedule(_)));
    }
}
