//! `certificate-rotation`: a scheduled run that revokes a device's earlier certificates
//! once a newer one has been issued for longer than the grace period
//! ([`Deps::certificate_grace`], `MIR_CERTIFICATE_GRACE_HOURS`, default 24 hours).
//!
//! Issuing a certificate (`POST /v1/devices/{id}/certificate`) records a
//! `CertificateIssued` event naming it. Each run reads the `CertificateIssued` events
//! whose grace period ended within the last [`LOOKBACK`] and, for each, revokes the
//! device's certificates issued before that one ([`CertificateIssuer::retire_earlier`]).
//! The window is wider than the schedule's rate, so a run that failed or was skipped is
//! made up by the next; revoking is idempotent, so reading an event twice is harmless.
//! Each revocation is recorded as a `CertificatesChanged` event whose id derives from
//! the issue event, so a retried run records it once.
//!
//! The grace period must stay shorter than the retention of `CertificateIssued`
//! events (90 days by default), or the rotation never sees them.
//!
//! [`CertificateIssuer::retire_earlier`]: mir_shared::ports::CertificateIssuer::retire_earlier

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use mir_shared::{
    domain::{page, Event, EventFilter, EventReason},
    service::HandlerError,
};

mir_shared::deps! {
    /// The ports `certificate-rotation` uses.
    pub struct Deps { events, certificates, certificate_grace }
}

/// How far back past the grace period a run looks for issued certificates.
pub const LOOKBACK: Duration = Duration::hours(6);

/// The actor recorded on the events of a rotation.
pub const ACTOR: &str = "certificate-rotation";

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RotationOutcome {
    /// Issued certificates whose grace period ended within the window.
    pub checked: usize,
    /// Earlier certificates revoked, in all.
    pub revoked: u32,
}

/// The run at `now`.
pub async fn handle(deps: &Deps<'_>, now: DateTime<Utc>) -> Result<RotationOutcome, HandlerError> {
    let Some(certificates) = deps.certificates else {
        tracing::warn!("no certificate authority is configured: nothing to rotate");
        return Ok(RotationOutcome::default());
    };
    let due = now - deps.certificate_grace;
    let filter = EventFilter {
        reason: Some(EventReason::CertificateIssued),
        since: Some(due - LOOKBACK),
        until: Some(due),
        ..EventFilter::default()
    };
    let issued = page::collect_all(|p| {
        let filter = &filter;
        async move { deps.events.list(filter, &p).await }
    })
    .await?;
    let mut outcome = RotationOutcome::default();
    let mut changes = Vec::new();
    for ev in &issued {
        let Some(certificate) = ev.payload.get("certificateId").and_then(|v| v.as_str()) else {
            tracing::warn!(event = %ev.id, device = %ev.device_id, "a CertificateIssued event without certificateId; skipped");
            continue;
        };
        outcome.checked += 1;
        let revoked = certificates
            .retire_earlier(&ev.device_id, certificate)
            .await?;
        if revoked > 0 {
            tracing::info!(device = %ev.device_id, certificate, revoked, "earlier certificates revoked after the grace period");
            let mut change = Event::new(
                EventReason::CertificatesChanged,
                &ev.device_id,
                now,
                &format!("rotation|{}", ev.id),
                format!("{revoked} certificate(s) issued before {certificate} revoked after the grace period"),
            )
            .with_payload(serde_json::json!({
                "action": "retire",
                "keptCertificateId": certificate,
                "revoked": revoked,
            }));
            change.actor = Some(ACTOR.to_string());
            changes.push(change);
        }
        outcome.revoked += revoked;
    }
    if !changes.is_empty() {
        deps.events.append(&changes).await?;
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mir_shared::{
        api::Caller,
        ports::{CertificateError, CertificateIssuer, DeviceCertificate},
        testing::TestWorld,
    };
    use std::sync::Mutex;

    /// Records which certificate each retirement kept.
    #[derive(Default)]
    struct Recorder {
        kept: Mutex<Vec<(String, String)>>,
        fail: bool,
    }

    #[async_trait::async_trait]
    impl CertificateIssuer for Recorder {
        async fn issue(
            &self,
            _: &str,
            _: Option<&str>,
        ) -> Result<DeviceCertificate, CertificateError> {
            Err(CertificateError::CsrRequired)
        }
        async fn set_active(&self, _: &str, _: bool) -> Result<(), CertificateError> {
            Ok(())
        }
        async fn revoke_all(&self, _: &str) -> Result<(), CertificateError> {
            Ok(())
        }
        async fn retire_earlier(&self, device: &str, keep: &str) -> Result<u32, CertificateError> {
            if self.fail {
                return Err(CertificateError::Unavailable {
                    message: "IoT ListThingPrincipals: ThrottlingException".into(),
                    source: None,
                });
            }
            self.kept
                .lock()
                .expect("lock")
                .push((device.to_string(), keep.to_string()));
            Ok(1)
        }
    }

    fn issued(device: &str, certificate: &str, at: DateTime<Utc>) -> Event {
        let caller = Caller {
            arn: Some("arn:aws:sts::123456789012:assumed-role/provisioner/alice".into()),
            account_id: Some("123456789012".into()),
            request_id: format!("req-{certificate}"),
        };
        Event::by_caller(
            EventReason::CertificateIssued,
            device,
            at,
            &caller,
            "issued",
        )
        .with_payload(serde_json::json!({ "certificateId": certificate }))
    }

    fn deps<'a>(w: &'a TestWorld, certs: &'a Recorder) -> Deps<'a> {
        Deps {
            events: w.ports.events().expect("events"),
            certificates: Some(certs),
            certificate_grace: Duration::hours(24),
        }
    }

    #[tokio::test]
    async fn a_certificate_issued_within_the_grace_period_retires_nothing_yet_and_after_it_the_earlier_ones(
    ) {
        let w = TestWorld::new();
        let certs = Recorder::default();
        let t0 = Utc::now() - Duration::hours(30);
        let events = w.ports.events().expect("events");
        events
            .append(&[issued("d1", "c2", t0)])
            .await
            .expect("stored");

        let early = handle(&deps(&w, &certs), t0 + Duration::hours(23))
            .await
            .expect("ok");
        assert_eq!(early, RotationOutcome::default());
        assert!(certs.kept.lock().expect("lock").is_empty());

        let due = handle(&deps(&w, &certs), t0 + Duration::hours(25))
            .await
            .expect("ok");
        assert_eq!(
            due,
            RotationOutcome {
                checked: 1,
                revoked: 1
            }
        );
        assert_eq!(
            *certs.kept.lock().expect("lock"),
            vec![("d1".to_string(), "c2".to_string())]
        );
        let reasons = w.reasons("d1").await;
        assert!(
            reasons.contains(&"CertificatesChanged".to_string()),
            "{reasons:?}"
        );
    }

    #[tokio::test]
    async fn a_run_repeated_or_retried_records_the_revocation_once() {
        let w = TestWorld::new();
        let certs = Recorder::default();
        let t0 = Utc::now() - Duration::hours(30);
        let events = w.ports.events().expect("events");
        events
            .append(&[issued("d1", "c2", t0)])
            .await
            .expect("stored");
        let at = t0 + Duration::hours(25);
        handle(&deps(&w, &certs), at).await.expect("first");
        handle(&deps(&w, &certs), at).await.expect("again");
        let changed = w
            .reasons("d1")
            .await
            .iter()
            .filter(|r| *r == "CertificatesChanged")
            .count();
        assert_eq!(changed, 1);
    }

    #[tokio::test]
    async fn a_failing_certificate_authority_fails_the_run_so_that_it_is_retried() {
        let w = TestWorld::new();
        let certs = Recorder {
            fail: true,
            ..Recorder::default()
        };
        let t0 = Utc::now() - Duration::hours(30);
        let events = w.ports.events().expect("events");
        events
            .append(&[issued("d1", "c2", t0)])
            .await
            .expect("stored");
        let err = handle(&deps(&w, &certs), t0 + Duration::hours(25))
            .await
            .expect_err("unavailable");
        assert!(
            matches!(
                err,
                HandlerError::Certificates(CertificateError::Unavailable { .. })
            ),
            "{err:?}"
        );
        assert!(err.is_retryable());
    }

    #[tokio::test]
    async fn an_issue_older_than_the_lookback_is_left_to_the_runs_that_saw_it() {
        let w = TestWorld::new();
        let certs = Recorder::default();
        let t0 = Utc::now() - Duration::hours(60);
        let events = w.ports.events().expect("events");
        events
            .append(&[issued("d1", "c2", t0)])
            .await
            .expect("stored");
        let late = handle(
            &deps(&w, &certs),
            t0 + Duration::hours(24) + LOOKBACK + Duration::minutes(1),
        )
        .await
        .expect("ok");
        assert_eq!(late.checked, 0);
    }
}
