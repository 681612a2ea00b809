//! On AWS: the module as a Lambda in `MirModule`'s worker mode. The rule sends each
//! `DeviceOffline` event to an SQS queue whose delivery delay is N minutes, so a batch
//! holds events N minutes old: [`handle_sqs`] alerts on each device still in the outage
//! its event began ([`still_offline`]) and reports the messages it could not handle as
//! batch item failures, which SQS delivers again (after five receives, to the module's
//! dead-letter queue): a message is never dropped unhandled.
//!
//! [`Settings`] come from the environment once per cold start.

use serde::Serialize;

use mir_module_sdk::{envelope::from_sqs, EnvelopeError, EventReason};

use crate::{alert, still_offline, who, Platform};

/// The variables the Lambda reads (the CDK stack sets them).
pub mod env {
    /// The platform's API Gateway URL (the api stack's `ApiUrl` output).
    pub const API_URL: &str = "MIR_API_URL";
    /// Lambda sets it: the region the API is signed for.
    pub const REGION: &str = "AWS_REGION";
    /// The minutes of the queue's delivery delay, named in the alert.
    pub const MINUTES: &str = "MIR_OFFLINE_MINUTES";
}

/// Why the Lambda cannot start.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{var}={value:?}: {reason}")]
    Invalid {
        var: &'static str,
        value: String,
        reason: &'static str,
    },
}

/// The Lambda's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub api_url: String,
    pub region: String,
    pub minutes: f64,
}

impl Settings {
    /// Reads them through `get` (the process environment: `std::env::var(k).ok()`).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let need = |k: &'static str| {
            get(k)
                .filter(|v| !v.trim().is_empty())
                .ok_or(SettingsError::Missing(k))
        };
        let raw = need(env::MINUTES)?;
        let minutes = match raw.trim().parse::<f64>() {
            Ok(m) if m.is_finite() && m > 0.0 && m <= 15.0 => m,
            _ => {
                return Err(SettingsError::Invalid {
                    var: env::MINUTES,
                    value: raw,
                    reason: "minutes from 0 to 15 (SQS's longest delivery delay)",
                })
            }
        };
        Ok(Settings {
            api_url: need(env::API_URL)?,
            region: need(env::REGION)?,
            minutes,
        })
    }
}

/// The answer to an SQS batch (`ReportBatchItemFailures`).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct BatchResponse {
    #[serde(rename = "batchItemFailures")]
    pub batch_item_failures: Vec<ItemFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemFailure {
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}

/// Handles one SQS batch of delayed `DeviceOffline` events; an invocation that is not
/// an SQS event fails whole (`Err`), and Lambda delivers it again.
pub async fn handle_sqs(
    platform: &impl Platform,
    minutes: f64,
    event: &serde_json::Value,
) -> Result<BatchResponse, EnvelopeError> {
    let mut out = BatchResponse::default();
    for (message_id, parsed) in from_sqs(&event.to_string())? {
        let failed = match parsed {
            Err(e) => {
                tracing::error!(%message_id, error = %e, "not a Mir event; left to the dead-letter queue");
                true
            }
            Ok(offline) if offline.reason != EventReason::DeviceOffline => false,
            Ok(offline) => match platform.presence(&offline.device_id).await {
                Ok(Some(now)) if still_offline(&offline, &now) => {
                    tracing::warn!(device = %who(&offline), minutes, "ALERT: device offline");
                    match platform.publish(&alert(&offline, minutes)).await {
                        Ok(()) => false,
                        Err(e) => {
                            tracing::warn!(%message_id, error = %e, retryable = e.is_retryable(), "cannot publish the alert");
                            true
                        }
                    }
                }
                Ok(_) => false,
                Err(e) => {
                    tracing::warn!(%message_id, error = %e, retryable = e.is_retryable(), "cannot read the device");
                    true
                }
            },
        };
        if failed {
            out.batch_item_failures.push(ItemFailure {
                item_identifier: message_id,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AlertError, Presence};
    use async_trait::async_trait;
    use chrono::{DateTime, Utc};
    use mir_module_sdk::{ClientError, ModuleError, PublishEvent};
    use std::{collections::HashMap, sync::Mutex};

    /// Devices by id; publishes into a list; `down` makes every call a 503.
    #[derive(Default)]
    struct FakePlatform {
        devices: HashMap<String, Presence>,
        published: Mutex<Vec<PublishEvent>>,
        down: bool,
    }

    fn unavailable() -> AlertError {
        AlertError::Platform(ModuleError::Client(ClientError::Api {
            status: 503,
            message: "down".into(),
        }))
    }

    #[async_trait]
    impl Platform for FakePlatform {
        async fn presence(&self, id: &str) -> Result<Option<Presence>, AlertError> {
            if self.down {
                return Err(unavailable());
            }
            Ok(self.devices.get(id).cloned())
        }
        async fn publish(&self, e: &PublishEvent) -> Result<(), AlertError> {
            if let Ok(mut p) = self.published.lock() {
                p.push(e.clone());
            }
            Ok(())
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap_or_default()
    }

    /// An SQS event of EventBridge envelopes (as the rule's SQS target writes them).
    fn sqs(messages: &[(&str, &str, &str, &str)]) -> serde_json::Value {
        let records: Vec<serde_json::Value> = messages
            .iter()
            .map(|(message_id, reason, device, time)| {
                let body = serde_json::json!({
                    "version": "0", "id": format!("eb-{message_id}"), "detail-type": reason,
                    "source": "mir", "account": "111122223333", "time": time,
                    "region": "eu-west-1", "resources": [],
                    "detail": {
                        "id": format!("ev-{message_id}"), "time": time, "type": "Normal",
                        "reason": reason, "deviceId": device, "name": device,
                        "namespace": "lab", "labels": {}, "message": "m", "payload": null
                    }
                });
                serde_json::json!({
                    "messageId": message_id, "receiptHandle": "rh", "body": body.to_string(),
                    "attributes": {}, "messageAttributes": {}, "md5OfBody": "",
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:eu-west-1:111122223333:offline-alert-events",
                    "awsRegion": "eu-west-1"
                })
            })
            .collect();
        serde_json::json!({ "Records": records })
    }

    #[tokio::test]
    async fn a_device_still_offline_is_alerted_and_one_that_came_back_is_not() {
        let mut p = FakePlatform::default();
        let off = Presence {
            online: false,
            last_heartbeat: Some(at("2026-03-01T11:59:00Z")),
        };
        let back = Presence {
            online: true,
            last_heartbeat: Some(at("2026-03-01T12:03:00Z")),
        };
        p.devices.insert("d1".into(), off);
        p.devices.insert("d2".into(), back);
        let event = sqs(&[
            ("m1", "DeviceOffline", "d1", "2026-03-01T12:00:00Z"),
            ("m2", "DeviceOffline", "d2", "2026-03-01T12:00:00Z"),
            ("m3", "DeviceOffline", "gone", "2026-03-01T12:00:00Z"),
            ("m4", "DeviceOnline", "d1", "2026-03-01T12:00:00Z"),
        ]);
        let out = handle_sqs(&p, 5.0, &event).await.expect("an SQS event");
        assert_eq!(out, BatchResponse::default());
        let published = p.published.lock().map(|v| v.clone()).unwrap_or_default();
        assert_eq!(published.len(), 1);
        assert_eq!(published[0].device_id, "d1");
        assert_eq!(published[0].payload["offlineEvent"], "ev-m1");
    }

    #[tokio::test]
    async fn an_api_down_or_a_broken_message_is_a_batch_item_failure_never_a_drop() {
        let p = FakePlatform {
            down: true,
            ..FakePlatform::default()
        };
        let mut event = sqs(&[("m1", "DeviceOffline", "d1", "2026-03-01T12:00:00Z")]);
        let broken = serde_json::json!({ "messageId": "m2", "body": "{not json" });
        if let Some(records) = event["Records"].as_array_mut() {
            records.push(broken);
        }
        let out = handle_sqs(&p, 5.0, &event).await.expect("an SQS event");
        let failed: Vec<&str> = out
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(failed, ["m1", "m2"]);
        let json = serde_json::to_value(&out).expect("json");
        assert_eq!(json["batchItemFailures"][0]["itemIdentifier"], "m1");
        assert!(matches!(
            handle_sqs(&p, 5.0, &serde_json::json!([])).await,
            Err(EnvelopeError::Sqs(_))
        ));
    }

    #[test]
    fn settings_need_the_api_the_region_and_minutes_within_sqs_delay() {
        let vars = |m: &str| {
            let m = m.to_string();
            move |k: &str| match k {
                env::API_URL => Some("https://abc.execute-api.eu-west-1.amazonaws.com".into()),
                env::REGION => Some("eu-west-1".into()),
                env::MINUTES => Some(m.clone()),
                _ => None,
            }
        };
        let s = Settings::from_lookup(vars("5")).expect("settings");
        assert_eq!((s.region.as_str(), s.minutes), ("eu-west-1", 5.0));
        assert!(matches!(
            Settings::from_lookup(vars("16")),
            Err(SettingsError::Invalid {
                var: env::MINUTES,
                ..
            })
        ));
        assert_eq!(
            Settings::from_lookup(|_| None),
            Err(SettingsError::Missing(env::MINUTES))
        );
    }
}
