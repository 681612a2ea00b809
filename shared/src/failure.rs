//! What happens to an invocation that failed and that a retry cannot fix: it is
//! recorded as an `InvalidMessage` event of the device, so the failure shows in the
//! event feed (`mir events`), and it is acknowledged. On AWS, [`crate::lambda::run_rule`]
//! returns success for it, so that the asynchronous invocation is not retried and the
//! failure queue holds only what a retry could fix; the local hub records the same
//! event and writes a dead letter.

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::domain::{Event, EventReason};
use crate::ports::EventStore;
use crate::rule_event::{PresenceInput, RuleEvent, ScheduledEvent};
use crate::service::HandlerError;

/// An event a device route is invoked with: what a failure is recorded against.
pub trait InvocationInput {
    /// The device the invocation is about, and a key that is the same for every
    /// delivery of the same input (so that a duplicate delivery records one event).
    fn subject(&self) -> Option<(String, String)>;
    /// When the input arrived.
    fn arrived_at(&self) -> DateTime<Utc>;
}

impl InvocationInput for RuleEvent {
    fn subject(&self) -> Option<(String, String)> {
        let id = mir_proto::DeviceId::new(self.device_id.clone()).ok()?;
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.payload.hash(&mut h);
        let key = format!(
            "{}|{}|{:016x}",
            self.client_id,
            self.received_at,
            h.finish()
        );
        Some((id.to_string(), key))
    }

    fn arrived_at(&self) -> DateTime<Utc> {
        self.received_at()
    }
}

impl InvocationInput for PresenceInput {
    fn subject(&self) -> Option<(String, String)> {
        match self {
            PresenceInput::Lifecycle(l) => {
                let id = mir_proto::DeviceId::new(l.client_id.clone()).ok()?;
                let key = format!("{}|{}|{}", l.event_type, l.session_identifier, l.timestamp);
                Some((id.to_string(), key))
            }
            PresenceInput::Schedule(_) => None,
        }
    }

    fn arrived_at(&self) -> DateTime<Utc> {
        match self {
            PresenceInput::Lifecycle(l) => l.time(),
            PresenceInput::Schedule(s) => s.time,
        }
    }
}

/// A scheduled run is about no device: its failures are logged only.
impl InvocationInput for ScheduledEvent {
    fn subject(&self) -> Option<(String, String)> {
        None
    }

    fn arrived_at(&self) -> DateTime<Utc> {
        self.time
    }
}

/// The event that records a failure of `function` a retry cannot fix, or `None` when
/// the input names no valid device (then the log line is all there is).
pub fn failure_event(
    function: &str,
    input: &impl InvocationInput,
    error: &HandlerError,
) -> Option<Event> {
    let (device, key) = input.subject()?;
    let cause = format!("failed|{function}|{key}");
    Some(
        Event::new(
            EventReason::InvalidMessage,
            &device,
            input.arrived_at(),
            &cause,
            format!("{function} refused a message: {error}"),
        )
        .with_payload(
            json!({ "function": function, "error": error.to_string(), "retryable": false }),
        ),
    )
}

/// What an asynchronous invocation returns for a handler's `result`: the outcome; the
/// error when a retry can fix it (the invocation fails and is retried, then goes to the
/// failure queue); otherwise the failure recorded by [`failure_event`] and a success
/// outcome `{"refused": .., "retryable": false}`. If recording fails with an error a
/// retry can fix, that error is returned, so the invocation is retried rather than lost.
pub async fn settle<O: serde::Serialize>(
    function: &str,
    events: Option<&dyn EventStore>,
    input: &impl InvocationInput,
    result: Result<O, HandlerError>,
) -> Result<serde_json::Value, HandlerError> {
    let error = match result {
        Ok(out) => return Ok(serde_json::to_value(out).unwrap_or_default()),
        Err(e) if e.is_retryable() => return Err(e),
        Err(e) => e,
    };
    tracing::warn!(function, error = %error, retryable = false, "message refused; not retried");
    if let (Some(events), Some(event)) = (events, failure_event(function, input, &error)) {
        if let Err(e) = events.append(&[event]).await {
            if e.is_retryable() {
                return Err(e.into());
            }
            tracing::error!(function, error = %e, "could not record the refused message");
        }
    }
    Ok(json!({ "refused": error.to_string(), "retryable": false }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(payload: &str) -> RuleEvent {
        RuleEvent {
            payload: payload.into(),
            device_id: "w1".into(),
            client_id: "w1".into(),
            received_at: 1_700_000_000_000,
        }
    }

    #[test]
    fn a_failure_names_the_function_and_the_error_and_is_the_same_event_when_delivered_twice() {
        let err = HandlerError::UnknownDevice("w1".into());
        let a = failure_event("heartbeat", &event("AA=="), &err).expect("a device");
        let b = failure_event("heartbeat", &event("AA=="), &err).expect("a device");
        let other = failure_event("heartbeat", &event("AQ=="), &err).expect("a device");
        assert_eq!(a.reason, EventReason::InvalidMessage);
        assert_eq!(a.device_id, "w1");
        assert_eq!(
            a.message,
            "heartbeat refused a message: device w1 does not exist"
        );
        assert_eq!(a.payload["retryable"], false);
        assert_eq!(a.id, b.id, "a duplicate delivery records one event");
        assert_ne!(a.id, other.id);
    }

    #[test]
    fn an_input_without_a_valid_device_records_nothing() {
        let mut ev = event("AA==");
        ev.device_id = "bad/id".into();
        let err = HandlerError::UnknownDevice("bad/id".into());
        assert!(failure_event("heartbeat", &ev, &err).is_none());
    }
}

#[cfg(test)]
mod settle_tests {
    use super::*;
    use crate::ports::StoreError;
    use crate::testing::TestWorld;

    fn event() -> RuleEvent {
        crate::testing::rule_event("w1", b"\xff", 1_700_000_000_000)
    }

    #[tokio::test]
    async fn a_refusal_is_recorded_and_acknowledged_so_that_aws_does_not_retry_it() {
        let w = TestWorld::new();
        let out = settle::<()>(
            "heartbeat",
            w.ports.events.as_deref(),
            &event(),
            Err(HandlerError::UnknownDevice("w1".into())),
        )
        .await
        .expect("acknowledged");
        assert_eq!(out["retryable"], false);
        assert_eq!(out["refused"], "device w1 does not exist");
        assert_eq!(w.reasons("w1").await, ["InvalidMessage"]);
    }

    #[tokio::test]
    async fn an_error_a_retry_can_fix_fails_the_invocation_and_records_nothing() {
        let w = TestWorld::new();
        let err = settle::<()>(
            "telemetry",
            w.ports.events.as_deref(),
            &event(),
            Err(HandlerError::NoSchema("w1".into())),
        )
        .await
        .expect_err("retried");
        assert!(
            matches!(err, HandlerError::NoSchema(ref d) if d == "w1"),
            "{err}"
        );
        let err = settle::<()>(
            "telemetry",
            w.ports.events.as_deref(),
            &event(),
            Err(HandlerError::Store(StoreError::Unavailable {
                message: "throttled".into(),
                source: None,
            })),
        )
        .await
        .expect_err("retried");
        assert!(
            matches!(err, HandlerError::Store(StoreError::Unavailable { .. })),
            "{err}"
        );
        assert!(w.reasons("w1").await.is_empty());
    }

    #[tokio::test]
    async fn a_success_is_its_outcome() {
        let out = settle(
            "hello",
            None,
            &event(),
            Ok(serde_json::json!({"created": true})),
        )
        .await
        .expect("ok");
        assert_eq!(out["created"], true);
    }
}
