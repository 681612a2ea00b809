//! Devices cut off for real, on the DynamoDB adapters against moto: a delete whose
//! certificate revocation fails answers 5xx and keeps the twin; a deleted device that
//! keeps sending heartbeats stays deleted.
//!
//! Needs MIR_TEST_AWS_ENDPOINT (scripts/moto.sh start).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use prost::Message;

use mir_hub::registry::{self, Function};
use mir_proto::wire::Heartbeat;
use mir_shared::{
    adapters::{aws::AwsEnvironment, memory::RecordingPublisher},
    invocation::Invocation,
    ports::{CertificateError, CertificateIssuer, DeviceCertificate, Ports},
    testing::{api_request, response_json, rule_event},
};

/// A certificate authority whose revocations fail (throttled), or succeed.
struct Authority {
    revoke_fails: bool,
}

#[async_trait]
impl CertificateIssuer for Authority {
    async fn issue(&self, _: &str, _: Option<&str>) -> Result<DeviceCertificate, CertificateError> {
        Err(CertificateError::CsrRequired)
    }
    async fn set_active(&self, _: &str, _: bool) -> Result<(), CertificateError> {
        Ok(())
    }
    async fn revoke_all(&self, _: &str) -> Result<(), CertificateError> {
        if self.revoke_fails {
            return Err(CertificateError::Unavailable {
                message: "IoT UpdateCertificate: ThrottlingException".into(),
                source: None,
            });
        }
        Ok(())
    }
}

async fn ports(revoke_fails: bool) -> Ports {
    let endpoint = std::env::var("MIR_TEST_AWS_ENDPOINT")
        .expect("MIR_TEST_AWS_ENDPOINT (scripts/moto.sh start)");
    let prefix = format!("cutoff-{}", uuid::Uuid::new_v4().simple());
    let env = AwsEnvironment::for_endpoint(&endpoint, &prefix, Default::default())
        .await
        .expect("tables");
    Ports {
        publisher: Some(Arc::new(RecordingPublisher::new())),
        certificates: Some(Arc::new(Authority { revoke_fails })),
        ..env.ports
    }
}

async fn api(
    ports: &Ports,
    route: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let Some(Function::Api(f)) = registry::function("api-devices") else {
        panic!("api-devices is an API function");
    };
    let invocation = Invocation::starting(Utc::now(), std::time::Duration::from_secs(5));
    response_json(&f(ports, &api_request(route, path, "", body), invocation).await)
}

async fn heartbeat(ports: &Ports, id: &str) {
    let Some(Function::Rule(f)) = registry::function("heartbeat") else {
        panic!("heartbeat is a rule function");
    };
    let hb = Heartbeat {
        interval_sec: 30,
        ..Default::default()
    };
    let ms = Utc::now().timestamp_millis();
    f(ports, &rule_event(id, &hb.encode_to_vec(), ms))
        .await
        .expect("a heartbeat is acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS-compatible endpoint in MIR_TEST_AWS_ENDPOINT (scripts/moto.sh start); run with --include-ignored"]
async fn a_delete_whose_revocation_fails_answers_503_and_keeps_the_twin() {
    let p = ports(true).await;
    let twin = serde_json::json!({"meta": {"name": "c1"}, "spec": {"deviceId": "c1"}});
    assert_eq!(
        api(&p, "POST /v1/devices", "/v1/devices", Some(twin))
            .await
            .0,
        201
    );
    let (status, body) = api(&p, "DELETE /v1/devices/{deviceId}", "/v1/devices/c1", None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body["error"],
        "could not revoke the certificates of c1, so it was not deleted; retry later"
    );
    let kept = p.twins().expect("twins").get("c1").await.expect("read");
    assert_eq!(kept.map(|t| t.value.spec.device_id), Some("c1".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS-compatible endpoint in MIR_TEST_AWS_ENDPOINT (scripts/moto.sh start); run with --include-ignored"]
async fn a_deleted_device_that_keeps_sending_heartbeats_stays_deleted() {
    let p = ports(false).await;
    heartbeat(&p, "c2").await;
    let twins = p.twins().expect("twins");
    assert!(
        twins.get("c2").await.expect("read").is_some(),
        "provisioned by its heartbeat"
    );
    let (status, body) = api(&p, "DELETE /v1/devices/{deviceId}", "/v1/devices/c2", None).await;
    assert_eq!(status, 200, "{body}");
    for _ in 0..3 {
        heartbeat(&p, "c2").await;
    }
    assert_eq!(twins.get("c2").await.expect("read"), None);
    let tomb = twins.tombstone("c2").await.expect("read");
    assert_eq!(tomb.map(|t| t.device_id), Some("c2".to_string()));
}
