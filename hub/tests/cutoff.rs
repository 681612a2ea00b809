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
    async fn retire_earlier(&self, _: &str, _: &str) -> Result<u32, CertificateError> {
        Ok(0)
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

/// A signing request for `device` (the private key stays here, as on a device).
fn csr(device: &str) -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    rcgen::CertificateParams::new(vec![device.to_string()])
        .expect("params")
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS-compatible endpoint in MIR_TEST_AWS_ENDPOINT (scripts/moto.sh start); run with --include-ignored"]
async fn a_second_certificate_revokes_the_first_once_the_grace_period_is_over() {
    use mir_shared::adapters::iot::{aws_sdk_iot, IotCertificates};
    let endpoint = std::env::var("MIR_TEST_AWS_ENDPOINT")
        .expect("MIR_TEST_AWS_ENDPOINT (scripts/moto.sh start)");
    let prefix = format!("rotation-{}", uuid::Uuid::new_v4().simple());
    let env = AwsEnvironment::for_endpoint(&endpoint, &prefix, Default::default())
        .await
        .expect("tables");
    let iot = aws_sdk_iot::Client::new(&env.sdk);
    let policy = format!("{prefix}-device");
    iot.create_policy()
        .policy_name(&policy)
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"*"}]}"#)
        .send()
        .await
        .expect("policy");
    let p = Ports {
        publisher: Some(Arc::new(RecordingPublisher::new())),
        certificates: Some(Arc::new(IotCertificates::new(iot.clone(), &policy))),
        certificate_grace: chrono::Duration::hours(24),
        ..env.ports
    };
    let device = format!("rot-{}", &prefix[9..17]);
    let twin = serde_json::json!({"meta": {"name": device}, "spec": {"deviceId": device}});
    assert_eq!(
        api(&p, "POST /v1/devices", "/v1/devices", Some(twin))
            .await
            .0,
        201
    );
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, body) = api(
            &p,
            "POST /v1/devices/{deviceId}/certificate",
            &format!("/v1/devices/{device}/certificate"),
            Some(serde_json::json!({ "csrPem": csr(&device) })),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        ids.push(body["certificateId"].as_str().expect("id").to_string());
    }
    let status = |id: String| {
        let iot = iot.clone();
        async move {
            match iot.describe_certificate().certificate_id(id).send().await {
                Ok(d) => d
                    .certificate_description()
                    .and_then(|c| c.status().map(|s| s.as_str().to_string())),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_not_found_exception()) =>
                {
                    None
                }
                Err(e) => panic!("describe: {e:?}"),
            }
        }
    };
    let Some(Function::Schedule(rotate)) = registry::function("certificate-rotation") else {
        panic!("certificate-rotation is a scheduled function");
    };
    // Within the grace period both certificates connect.
    rotate(&p, Utc::now() + chrono::Duration::hours(23))
        .await
        .expect("run");
    assert_eq!(status(ids[0].clone()).await.as_deref(), Some("ACTIVE"));
    // Once it is over the first is revoked and gone; the second stays.
    rotate(&p, Utc::now() + chrono::Duration::hours(25))
        .await
        .expect("run");
    assert_eq!(status(ids[0].clone()).await, None, "the first is deleted");
    assert_eq!(status(ids[1].clone()).await.as_deref(), Some("ACTIVE"));
    let principals = iot
        .list_thing_principals()
        .thing_name(&device)
        .send()
        .await
        .expect("principals");
    assert_eq!(principals.principals().len(), 1);
    assert!(principals.principals()[0].ends_with(&ids[1]));
}
