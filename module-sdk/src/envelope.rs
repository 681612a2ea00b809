//! Typed events from AWS: an EventBridge envelope (a module's Lambda a rule targets) and
//! an SQS message whose body is one (worker mode on AWS: the bus to a queue to a Lambda).
//!
//! The envelope is Mir's feed document as EventBridge carries it: `source` [`SOURCE`],
//! `detail-type` the event's reason (`Custom` for a module's own events, whose name is
//! `detail.customName`), `detail` the [`FeedEvent`] JSON, the same document the local
//! feed sends. With the stage's telemetry feed on, decoded telemetry points come the
//! same way: `detail-type` [`TELEMETRY_DETAIL_TYPE`], `detail` the [`TelemetryPoint`]
//! ([`telemetry_from_eventbridge`]).

use aws_lambda_events::cloudwatch_events::CloudWatchEvent;
use serde::Deserialize;

use mir_shared::domain::{feed::TELEMETRY_DETAIL_TYPE, FeedEvent, TelemetryPoint};

/// The `source` of Mir's events on the bus.
pub const SOURCE: &str = "mir";

/// An EventBridge event (the same shape as CloudWatch Events).
pub type EventBridgeEvent = CloudWatchEvent<FeedEvent>;

/// Why an envelope is not one of Mir's events.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not an EventBridge event with a Mir event as detail: {0}")]
    Json(#[source] serde_json::Error),
    #[error("the event's source is {found:?}, not {SOURCE:?}")]
    Source { found: Option<String> },
    #[error("the event has no detail")]
    NoDetail,
    #[error("the detail-type {detail_type:?} is not the detail's reason {reason}")]
    DetailType { detail_type: String, reason: String },
    #[error("SQS message {message_id}: {source}")]
    Message {
        message_id: String,
        #[source]
        source: Box<EnvelopeError>,
    },
    #[error("the detail-type {found:?} is not {TELEMETRY_DETAIL_TYPE:?}: not a telemetry point")]
    NotTelemetry { found: Option<String> },
    #[error("not an SQS event: {0}")]
    Sqs(#[source] serde_json::Error),
}

/// The Mir event of an EventBridge envelope (JSON text).
pub fn from_eventbridge(json: &str) -> Result<FeedEvent, EnvelopeError> {
    let envelope: EventBridgeEvent = serde_json::from_str(json).map_err(EnvelopeError::Json)?;
    from_envelope(envelope)
}

/// The Mir event of a parsed envelope: checks the source and that `detail-type` is the
/// detail's reason.
pub fn from_envelope(envelope: EventBridgeEvent) -> Result<FeedEvent, EnvelopeError> {
    if envelope.source.as_deref() != Some(SOURCE) {
        return Err(EnvelopeError::Source {
            found: envelope.source,
        });
    }
    let detail = envelope.detail.ok_or(EnvelopeError::NoDetail)?;
    let reason = detail.reason.as_str();
    match envelope.detail_type {
        Some(t) if t == reason => Ok(detail),
        other => Err(EnvelopeError::DetailType {
            detail_type: other.unwrap_or_default(),
            reason: reason.to_string(),
        }),
    }
}

/// The decoded telemetry point of an EventBridge envelope (JSON text): checks the
/// source and that the detail-type is [`TELEMETRY_DETAIL_TYPE`].
pub fn telemetry_from_eventbridge(json: &str) -> Result<TelemetryPoint, EnvelopeError> {
    let envelope: CloudWatchEvent<serde_json::Value> =
        serde_json::from_str(json).map_err(EnvelopeError::Json)?;
    if envelope.source.as_deref() != Some(SOURCE) {
        return Err(EnvelopeError::Source {
            found: envelope.source,
        });
    }
    if envelope.detail_type.as_deref() != Some(TELEMETRY_DETAIL_TYPE) {
        return Err(EnvelopeError::NotTelemetry {
            found: envelope.detail_type,
        });
    }
    let detail = envelope.detail.ok_or(EnvelopeError::NoDetail)?;
    serde_json::from_value(detail).map_err(EnvelopeError::Json)
}

/// The SQS event a Lambda receives (only what a module reads of it).
#[derive(Debug, Clone, Deserialize)]
struct SqsEvent {
    #[serde(rename = "Records")]
    records: Vec<SqsMessage>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SqsMessage {
    message_id: String,
    body: String,
}

/// One SQS message's id and its Mir event (or why it is not one).
pub type SqsItem = (String, Result<FeedEvent, EnvelopeError>);

/// The Mir events of an SQS event (JSON text) whose messages are EventBridge envelopes,
/// one result per message in order (with its message id), so that a Lambda can report
/// the failed ones as batch item failures.
pub fn from_sqs(json: &str) -> Result<Vec<SqsItem>, EnvelopeError> {
    let event: SqsEvent = serde_json::from_str(json).map_err(EnvelopeError::Sqs)?;
    Ok(event
        .records
        .into_iter()
        .map(|m| {
            let parsed = from_eventbridge(&m.body).map_err(|source| EnvelopeError::Message {
                message_id: m.message_id.clone(),
                source: Box::new(source),
            });
            (m.message_id, parsed)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mir_shared::domain::EventReason;

    const EVENTBRIDGE: &str = include_str!("../fixtures/eventbridge-device-offline.json");
    const SQS: &str = include_str!("../fixtures/sqs-eventbridge-batch.json");

    #[test]
    fn an_eventbridge_envelope_gives_the_feed_event_of_its_detail() {
        let e = from_eventbridge(EVENTBRIDGE).expect("parse");
        assert_eq!(e.reason, EventReason::DeviceOffline);
        assert_eq!(e.device_id, "weather-1");
        assert_eq!(e.labels.get("site").map(String::as_str), Some("roof"));
        assert_eq!(e.namespace, "lab");
    }

    #[test]
    fn an_envelope_from_another_source_or_with_a_wrong_detail_type_is_refused() {
        let mut v: serde_json::Value = serde_json::from_str(EVENTBRIDGE).expect("json");
        v["source"] = "aws.ec2".into();
        let err = from_eventbridge(&v.to_string()).expect_err("source");
        assert!(
            matches!(&err, EnvelopeError::Source { found: Some(s) } if s == "aws.ec2"),
            "{err}"
        );
        v["source"] = "mir".into();
        v["detail-type"] = "DeviceOnline".into();
        let err = from_eventbridge(&v.to_string()).expect_err("detail-type");
        assert!(
            matches!(&err, EnvelopeError::DetailType { detail_type, reason } if detail_type == "DeviceOnline" && reason == "DeviceOffline"),
            "{err}"
        );
        assert!(matches!(
            from_eventbridge("{}"),
            Err(EnvelopeError::Json(_))
        ));
    }

    const TELEMETRY: &str = include_str!("../fixtures/eventbridge-telemetry.json");

    #[test]
    fn a_telemetry_envelope_gives_its_point_and_an_event_envelope_is_not_one() {
        let p = telemetry_from_eventbridge(TELEMETRY).expect("a point");
        assert_eq!(p.device_id, "weather-1");
        assert_eq!(p.message, "mir.examples.weather.v1.Weather");
        assert_eq!(
            p.values.get("temperature"),
            Some(&mir_shared::telemetry::FieldValue::Double(21.5))
        );
        assert_eq!(p.labels.get("site").map(String::as_str), Some("roof"));
        let err = telemetry_from_eventbridge(EVENTBRIDGE).expect_err("an event");
        assert!(
            matches!(&err, EnvelopeError::NotTelemetry { found: Some(t) } if t == "DeviceOffline"),
            "{err}"
        );
    }

    #[test]
    fn an_sqs_batch_gives_each_messages_event_or_its_error() {
        let results = from_sqs(SQS).expect("an SQS event");
        assert_eq!(results.len(), 2);
        let (id, first) = &results[0];
        assert_eq!(id, "059f36b4-87a3-44ab-83d2-661975830a7d");
        let first = first.as_ref().expect("the first is a Mir event");
        assert_eq!(first.reason, EventReason::Custom);
        assert_eq!(first.custom_name.as_deref(), Some("DeviceOfflineAlert"));
        let (id, second) = &results[1];
        assert_eq!(id, "2e1424d4-f796-459a-8184-9c92662be6da");
        assert!(
            matches!(second, Err(EnvelopeError::Message { message_id, source }) if message_id == id && matches!(**source, EnvelopeError::Json(_))),
            "{second:?}"
        );
        assert!(matches!(from_sqs("[]"), Err(EnvelopeError::Sqs(_))));
    }
}
