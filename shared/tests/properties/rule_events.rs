//! The events IoT rules and EventBridge send (`mir_shared::rule_event`): any JSON value
//! or text parses to an event or a serde error, never a panic, and every accessor of a
//! parsed event answers; well-formed events of the shapes AWS sends parse to what they
//! say, and a lifecycle event applies to any presence status.

use base64::Engine;
use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::{json, Value};

use mir_proto::topics::DeviceTopic;
use mir_shared::domain::presence::{self, Beat, Lifecycle, Phase};
use mir_shared::domain::twin::Status;
use mir_shared::rule_event::{
    LifecycleEvent, PresenceInput, RuleEvent, RuleEventError, ScheduledEvent,
};

use crate::{config, json, CI_CASES};

const KEYS: &[&str] = &[
    "payload",
    "deviceId",
    "clientId",
    "receivedAt",
    "timestamp",
    "eventType",
    "sessionIdentifier",
    "principalIdentifier",
    "ipAddress",
    "disconnectReason",
    "versionNumber",
    "clientInitiatedDisconnect",
    "detail-type",
    "source",
    "time",
    "connected",
    "disconnected",
    "Scheduled Event",
    "aws.events",
    "2015-10-08T16:53:06Z",
    "weather",
    "CAE=",
];

/// Calls every accessor of a rule event; each answers.
fn read_rule_event(ev: &RuleEvent) -> Result<(), TestCaseError> {
    match ev.device() {
        Ok(id) => prop_assert_eq!(id.as_str(), ev.device_id.as_str()),
        Err(RuleEventError::ClientMismatch { .. }) => prop_assert_ne!(&ev.client_id, &ev.device_id),
        Err(e) => prop_assert!(matches!(e, RuleEventError::BadDeviceId(_)), "{e:?}"),
    }
    match ev.payload_bytes() {
        Ok(bytes) => prop_assert!(bytes.len() <= mir_proto::MAX_PAYLOAD_BYTES + 6),
        Err(e) => prop_assert!(
            matches!(
                e,
                RuleEventError::BadBase64(_) | RuleEventError::TooLarge { .. }
            ),
            "{e:?}"
        ),
    }
    // What the heartbeat handler does with the time, at the longest interval.
    let at = ev.received_at();
    let fallback = Duration::minutes(5);
    let _ = Beat::new(at, Some(u32::MAX), fallback);
    let mut status = Status {
        heartbeat_interval_sec: Some(u32::MAX),
        ..Status::default()
    };
    presence::apply_heartbeat(&mut status, at);
    presence::set_stale_at(&mut status, fallback);
    prop_assert!(!presence::is_stale(&status, at, fallback));
    for topic in DeviceTopic::ALL {
        prop_assert!(ev.cause(topic).starts_with(topic.suffix()));
    }
    Ok(())
}

/// Parses `value` as every event type; what parses serializes back to itself.
fn parses_or_is_refused(value: &Value) -> Result<(), TestCaseError> {
    if let Ok(ev) = serde_json::from_value::<RuleEvent>(value.clone()) {
        read_rule_event(&ev)?;
        let again = serde_json::to_value(&ev).map(serde_json::from_value::<RuleEvent>);
        prop_assert_eq!(again.ok().and_then(Result::ok), Some(ev));
    }
    if let Ok(ev) = serde_json::from_value::<LifecycleEvent>(value.clone()) {
        let _ = ev.time();
        let again = serde_json::to_value(&ev).map(serde_json::from_value::<LifecycleEvent>);
        prop_assert_eq!(again.ok().and_then(Result::ok), Some(ev));
    }
    if let Ok(ev) = serde_json::from_value::<ScheduledEvent>(value.clone()) {
        let again = serde_json::to_value(&ev).map(serde_json::from_value::<ScheduledEvent>);
        prop_assert_eq!(again.ok().and_then(Result::ok), Some(ev));
    }
    if let Ok(input) = serde_json::from_value::<PresenceInput>(value.clone()) {
        if let PresenceInput::Lifecycle(ev) = &input {
            apply(&mut Status::default(), ev)?;
        }
        let again = serde_json::to_value(&input).map(serde_json::from_value::<PresenceInput>);
        prop_assert_eq!(again.ok().and_then(Result::ok), Some(input));
    }
    Ok(())
}

/// What the presence and heartbeat handlers do with an event's time.
fn apply(status: &mut Status, ev: &LifecycleEvent) -> Result<(), TestCaseError> {
    let phase = if ev.event_type == "disconnected" {
        Phase::Disconnected
    } else {
        Phase::Connected
    };
    let at = ev.time();
    let lc = Lifecycle {
        session_id: &ev.session_identifier,
        version: ev.version_number,
        at,
        phase,
        disconnect_reason: ev.disconnect_reason.as_deref(),
    };
    let change = presence::apply_lifecycle(status, &lc);
    prop_assert!(!(change.came_online && change.went_offline));
    let fallback = Duration::minutes(5);
    presence::set_stale_at(status, fallback);
    let _ = presence::is_stale(status, at, fallback);
    let _ = Beat::new(at, status.heartbeat_interval_sec, fallback);
    presence::apply_heartbeat(status, at);
    Ok(())
}

/// The time of Unix ms when the stores can keep it (nanoseconds in an i64); the event
/// reads any other as now.
fn stored_time(ms: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .filter(|t| t.timestamp_nanos_opt().is_some())
}

fn device_id() -> impl Strategy<Value = String> {
    prop_oneof![4 => "[a-zA-Z0-9:_-]{1,40}", 1 => any::<String>()]
}

/// Unix ms, mostly now-ish, sometimes anything an i64 holds or the ends of chrono's range.
fn millis() -> impl Strategy<Value = i64> {
    let (min, max) = (
        DateTime::<Utc>::MIN_UTC.timestamp_millis(),
        DateTime::<Utc>::MAX_UTC.timestamp_millis(),
    );
    prop_oneof![
        4 => 0i64..4_102_444_800_000,
        1 => any::<i64>(),
        1 => prop_oneof![min..min + 600_000, max - 600_000..=max],
    ]
}

/// A rule event as the AWS SQL builds it, with what it was built from.
fn rule_event() -> impl Strategy<Value = (Value, Vec<u8>, String, String, i64)> {
    (
        vec(any::<u8>(), 0..256),
        device_id(),
        prop_oneof![Just(None), device_id().prop_map(Some)],
        millis(),
        json::object_with(KEYS),
    )
        .prop_map(|(payload, device_id, client_id, received_at, extra)| {
            let client_id = client_id.unwrap_or_else(|| device_id.clone());
            let mut ev = json!({
                "payload": base64::engine::general_purpose::STANDARD.encode(&payload),
                "deviceId": device_id,
                "clientId": client_id,
                "receivedAt": received_at,
            });
            // Extra keys AWS might add are ignored; ours win on a clash.
            if let (Value::Object(extra), Value::Object(ev)) = (extra, &mut ev) {
                for (k, v) in extra {
                    ev.entry(k).or_insert(v);
                }
            }
            (ev, payload, device_id, client_id, received_at)
        })
}

fn lifecycle_event() -> impl Strategy<Value = (Value, LifecycleEvent)> {
    (
        device_id(),
        millis(),
        prop_oneof![
            Just("connected".to_string()),
            Just("disconnected".to_string()),
            any::<String>()
        ],
        "[a-f0-9-]{0,36}",
        any::<u64>(),
        proptest::option::of(proptest::sample::select(vec![
            "CLIENT_INITIATED_DISCONNECT",
            "DUPLICATE_CLIENTID",
            "MQTT_KEEP_ALIVE_TIMEOUT",
        ])),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(
            |(client_id, timestamp, event_type, session, version, reason, initiated)| {
                let ev = LifecycleEvent {
                    client_id,
                    timestamp,
                    event_type,
                    session_identifier: session,
                    principal_identifier: "12345678901234567890123456789012".into(),
                    ip_address: Some("203.0.113.7".into()),
                    disconnect_reason: reason.map(String::from),
                    version_number: version,
                    client_initiated_disconnect: initiated,
                };
                let json = serde_json::to_value(&ev).unwrap_or_default();
                (json, ev)
            },
        )
}

fn scheduled_event() -> impl Strategy<Value = (Value, DateTime<Utc>)> {
    (
        -62_135_596_800i64..253_402_300_799,
        0u32..1_000_000_000,
        any::<bool>(),
    )
        .prop_map(|(secs, nanos, whole)| {
            let nanos = if whole { 0 } else { nanos };
            let time = Utc.timestamp_opt(secs, nanos).single().unwrap_or_default();
            let json = json!({
                "version": "0",
                "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": "123456789012",
                "time": time.to_rfc3339(),
                "region": "us-east-1",
                "resources": ["arn:aws:events:us-east-1:123456789012:rule/mir-dev-presence-sweep"],
                "detail": {},
            });
            (json, time)
        })
}

proptest! {
    #![proptest_config(config(CI_CASES))]

    #[test]
    fn any_json_value_is_an_event_or_a_serde_error(value in json::value_with(KEYS)) {
        parses_or_is_refused(&value)?;
    }

    #[test]
    fn any_json_object_of_event_keys_is_an_event_or_a_serde_error(value in json::object_with(KEYS)) {
        parses_or_is_refused(&value)?;
    }

    #[test]
    fn any_text_is_an_event_or_a_serde_error(text in json::text_like(json::object_with(KEYS))) {
        if let Ok(value) = serde_json::from_str::<Value>(&text) {
            parses_or_is_refused(&value)?;
        }
        if let Ok(ev) = serde_json::from_str::<RuleEvent>(&text) {
            read_rule_event(&ev)?;
        }
        let _ = serde_json::from_str::<PresenceInput>(&text);
    }

    #[test]
    fn a_rule_event_of_the_aws_sql_parses_to_what_it_carries(
        (json, payload, device_id, client_id, received_at) in rule_event(),
    ) {
        let ev = serde_json::from_value::<RuleEvent>(json);
        prop_assert!(ev.is_ok(), "{ev:?}");
        let Ok(ev) = ev else { return Ok(()) };
        prop_assert_eq!(ev.payload_bytes(), Ok(payload));
        let valid = mir_proto::DeviceId::check(&device_id).is_ok();
        prop_assert_eq!(ev.device().is_ok(), valid && client_id == device_id);
        if let Some(t) = stored_time(received_at) {
            prop_assert_eq!(ev.received_at(), t);
        }
        read_rule_event(&ev)?;
    }

    #[test]
    fn a_lifecycle_event_parses_as_presence_input_and_applies_to_any_status(
        (json, ev) in lifecycle_event(),
        earlier in vec(lifecycle_event(), 0..4),
    ) {
        let parsed = serde_json::from_value::<PresenceInput>(json);
        prop_assert_eq!(parsed.as_ref().ok(), Some(&PresenceInput::Lifecycle(ev.clone())));
        let mut status = Status::default();
        for (_, e) in &earlier {
            apply(&mut status, e)?;
        }
        apply(&mut status, &ev)?;
        if let Some(at) = stored_time(ev.timestamp) {
            prop_assert_eq!(ev.time(), at);
        }
    }

    #[test]
    fn a_scheduled_event_parses_as_presence_input_with_its_time((json, time) in scheduled_event()) {
        let parsed = serde_json::from_value::<PresenceInput>(json);
        let is_schedule = matches!(&parsed, Ok(PresenceInput::Schedule(s)) if s.time == time && s.detail_type == "Scheduled Event");
        prop_assert!(is_schedule, "{parsed:?}");
    }
}
