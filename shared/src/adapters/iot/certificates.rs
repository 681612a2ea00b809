//! [`IotCertificates`]: the thing of each device, its certificates, the device policy.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_iot::{
    operation::delete_certificate::DeleteCertificateError, types::CertificateStatus,
};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::adapters::aws::{backoff, is_retryable_sdk, DisplayErrorChain};
use crate::ports::{CertificateError, CertificateIssuer, DeviceCertificate};

fn cert_error<E>(
    what: &str,
    e: SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> CertificateError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = e.code().unwrap_or("");
    if !is_retryable_sdk(&e)
        && matches!(
            code,
            "InvalidRequestException" | "ResourceNotFoundException"
        )
    {
        return CertificateError::Invalid(format!("{what}: {}", e.message().unwrap_or(code)));
    }
    CertificateError::Unavailable {
        message: format!("{what}: {}", DisplayErrorChain(&e)),
        source: Some(Box::new(e)),
    }
}

/// Issues device certificates with the AWS IoT control plane.
#[derive(Debug, Clone)]
pub struct IotCertificates {
    client: aws_sdk_iot::Client,
    policy_name: String,
    device_endpoint: Option<String>,
    allow_generated_keys: bool,
}

impl IotCertificates {
    pub fn new(client: aws_sdk_iot::Client, policy_name: &str) -> Self {
        Self {
            client,
            policy_name: policy_name.to_string(),
            device_endpoint: None,
            allow_generated_keys: false,
        }
    }

    /// Lets [`CertificateIssuer::issue`] create the key pair when no CSR is given (the
    /// private key then travels in the response once). Off by default: a request
    /// without a CSR is [`CertificateError::CsrRequired`].
    pub fn allowing_generated_keys(mut self, allow: bool) -> Self {
        self.allow_generated_keys = allow;
        self
    }

    /// The host of the account's `iot:Data-ATS` endpoint, returned with each
    /// certificate so that the device knows where to connect.
    pub fn with_device_endpoint(mut self, host: Option<String>) -> Self {
        self.device_endpoint = host;
        self
    }

    /// The certificate ARNs attached to the device's thing; `None` when there is no thing.
    async fn principals(&self, device_id: &str) -> Result<Option<Vec<String>>, CertificateError> {
        let mut principals = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = match self
                .client
                .list_thing_principals()
                .thing_name(device_id)
                .set_next_token(token.take())
                .send()
                .await
            {
                Ok(o) => o,
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_not_found_exception()) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(cert_error("IoT ListThingPrincipals", e)),
            };
            principals.extend(out.principals.unwrap_or_default());
            match out.next_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(Some(principals)),
            }
        }
    }

    async fn ensure_thing(&self, device_id: &str) -> Result<(), CertificateError> {
        match self
            .client
            .create_thing()
            .thing_name(device_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_already_exists_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(cert_error("IoT CreateThing", e)),
        }
    }

    async fn attach(&self, device_id: &str, arn: &str) -> Result<(), CertificateError> {
        self.client
            .attach_policy()
            .policy_name(&self.policy_name)
            .target(arn)
            .send()
            .await
            .map_err(|e| cert_error("IoT AttachPolicy", e))?;
        // Exclusive: the certificate can belong to this thing only.
        self.client
            .attach_thing_principal()
            .thing_name(device_id)
            .principal(arn)
            .thing_principal_type(aws_sdk_iot::types::ThingPrincipalType::ExclusiveThing)
            .send()
            .await
            .map_err(|e| cert_error("IoT AttachThingPrincipal", e))?;
        Ok(())
    }

    /// Detaches the policy and the thing, deactivates and deletes the certificate `arn`.
    /// What is already gone counts as done (by the SDK's typed `ResourceNotFound`
    /// errors; DetachPolicy has no such variant, so by its error code).
    async fn revoke(&self, device_id: &str, arn: &str) -> Result<(), CertificateError> {
        match self
            .client
            .detach_policy()
            .policy_name(&self.policy_name)
            .target(arn)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if e.code() == Some("ResourceNotFoundException") => {}
            Err(e) => return Err(cert_error("IoT DetachPolicy", e)),
        }
        match self
            .client
            .detach_thing_principal()
            .thing_name(device_id)
            .principal(arn)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) => {}
            Err(e) => return Err(cert_error("IoT DetachThingPrincipal", e)),
        }
        let Some(cert_id) = certificate_id(arn) else {
            return Ok(());
        };
        match self
            .client
            .update_certificate()
            .certificate_id(cert_id)
            .new_status(CertificateStatus::Inactive)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                return Ok(())
            }
            Err(e) => return Err(cert_error("IoT UpdateCertificate", e)),
        }
        retry_delete_conflicts(DELETE_RETRY, || self.delete_certificate(cert_id)).await
    }

    /// When the certificate was created, in epoch milliseconds (0 when IoT omits it).
    async fn created_at(&self, cert_id: &str) -> Result<i64, CertificateError> {
        let out = self
            .client
            .describe_certificate()
            .certificate_id(cert_id)
            .send()
            .await
            .map_err(|e| cert_error("IoT DescribeCertificate", e))?;
        Ok(out
            .certificate_description
            .and_then(|d| d.creation_date)
            .and_then(|t| t.to_millis().ok())
            .unwrap_or(0))
    }

    async fn delete_certificate(&self, cert_id: &str) -> DeleteStep {
        let sent = self
            .client
            .delete_certificate()
            .certificate_id(cert_id)
            .force_delete(true)
            .send()
            .await;
        classify_delete(sent)
    }
}

/// The id of a certificate ARN (`arn:aws:iot:<region>:<account>:cert/<id>`).
fn certificate_id(arn: &str) -> Option<&str> {
    arn.rsplit('/').next().filter(|s| !s.is_empty())
}

/// How DeleteCertificate retries the `DeleteConflictException` of a certificate whose
/// thing was detached a moment ago (the detach is asynchronous): at most `attempts`
/// calls, waiting a random part of `base * 2^n` (at most `cap`) between two.
#[derive(Debug, Clone, Copy)]
struct RetryPolicy {
    attempts: u32,
    base: Duration,
    cap: Duration,
}

/// About 8 s at most in all, well inside API Gateway's 29 s.
const DELETE_RETRY: RetryPolicy = RetryPolicy {
    attempts: 6,
    base: Duration::from_millis(250),
    cap: Duration::from_secs(4),
};

/// What one DeleteCertificate call ended with.
#[derive(Debug)]
enum DeleteStep {
    /// Deleted, or already gone.
    Done,
    /// `DeleteConflictException`: something is still attached; a retry may pass.
    Conflict(CertificateError),
    Failed(CertificateError),
}

/// Sorts a DeleteCertificate result by the SDK's typed error variants.
fn classify_delete<O>(
    result: Result<O, SdkError<DeleteCertificateError, aws_smithy_runtime_api::http::Response>>,
) -> DeleteStep {
    let e = match result {
        Ok(_) => return DeleteStep::Done,
        Err(e) => e,
    };
    match e.as_service_error() {
        Some(s) if s.is_resource_not_found_exception() => DeleteStep::Done,
        Some(s) if s.is_delete_conflict_exception() => {
            DeleteStep::Conflict(cert_error("IoT DeleteCertificate (still attached)", e))
        }
        _ => DeleteStep::Failed(cert_error("IoT DeleteCertificate", e)),
    }
}

/// Calls `delete` until it is done, retrying conflicts as `policy` says; the last
/// conflict, or any other failure, is the error.
async fn retry_delete_conflicts<F, Fut>(
    policy: RetryPolicy,
    mut delete: F,
) -> Result<(), CertificateError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = DeleteStep>,
{
    let mut attempt = 1;
    loop {
        match delete().await {
            DeleteStep::Done => return Ok(()),
            DeleteStep::Conflict(e) if attempt < policy.attempts => {
                tracing::debug!(attempt, error = %e, "certificate still attached; retrying its delete");
                tokio::time::sleep(backoff(attempt, policy.base, policy.cap)).await;
                attempt += 1;
            }
            DeleteStep::Conflict(e) | DeleteStep::Failed(e) => return Err(e),
        }
    }
}

#[async_trait]
impl CertificateIssuer for IotCertificates {
    async fn issue(
        &self,
        device_id: &str,
        csr_pem: Option<&str>,
    ) -> Result<DeviceCertificate, CertificateError> {
        mir_proto::DeviceId::check(device_id)
            .map_err(|e| CertificateError::Invalid(e.to_string()))?;
        if csr_pem.is_none() && !self.allow_generated_keys {
            return Err(CertificateError::CsrRequired);
        }
        self.ensure_thing(device_id).await?;
        let (arn, id, pem, key) = match csr_pem {
            Some(csr) => {
                let out = self
                    .client
                    .create_certificate_from_csr()
                    .certificate_signing_request(csr)
                    .set_as_active(true)
                    .send()
                    .await
                    .map_err(|e| cert_error("IoT CreateCertificateFromCsr", e))?;
                (
                    out.certificate_arn,
                    out.certificate_id,
                    out.certificate_pem,
                    None,
                )
            }
            None => {
                let out = self
                    .client
                    .create_keys_and_certificate()
                    .set_as_active(true)
                    .send()
                    .await
                    .map_err(|e| cert_error("IoT CreateKeysAndCertificate", e))?;
                let key = out.key_pair.and_then(|k| k.private_key);
                (
                    out.certificate_arn,
                    out.certificate_id,
                    out.certificate_pem,
                    key,
                )
            }
        };
        let (Some(arn), Some(id), Some(pem)) = (arn, id, pem) else {
            return Err(CertificateError::Unavailable {
                message: "IoT returned a certificate without arn, id or PEM".into(),
                source: None,
            });
        };
        if let Err(e) = self.attach(device_id, &arn).await {
            // Do not leave an active certificate behind that nobody holds.
            if let Err(cleanup) = self.revoke(device_id, &arn).await {
                tracing::warn!(device = device_id, certificate = %id, error = %cleanup, "could not clean up a certificate after a failed attach");
            }
            return Err(e);
        }
        Ok(DeviceCertificate {
            certificate_id: id,
            certificate_pem: pem,
            private_key_pem: key,
            root_ca_pem: Some(mir_proto::aws::AMAZON_ROOT_CA_1.to_string()),
            endpoint: self
                .device_endpoint
                .as_ref()
                .map(|host| format!("mqtts://{host}:8883")),
        })
    }

    async fn set_active(&self, device_id: &str, active: bool) -> Result<(), CertificateError> {
        let status = if active {
            CertificateStatus::Active
        } else {
            CertificateStatus::Inactive
        };
        for arn in self.principals(device_id).await?.unwrap_or_default() {
            let Some(cert_id) = certificate_id(&arn) else {
                continue;
            };
            self.client
                .update_certificate()
                .certificate_id(cert_id)
                .new_status(status.clone())
                .send()
                .await
                .map_err(|e| cert_error("IoT UpdateCertificate", e))?;
        }
        Ok(())
    }

    async fn retire_earlier(
        &self,
        device_id: &str,
        keep_id: &str,
    ) -> Result<u32, CertificateError> {
        let principals = self.principals(device_id).await?.unwrap_or_default();
        let mut issued = Vec::with_capacity(principals.len());
        for arn in principals {
            let Some(id) = certificate_id(&arn).map(str::to_string) else {
                continue;
            };
            let created = self.created_at(&id).await?;
            issued.push((created, id, arn));
        }
        let Some(keep) = issued
            .iter()
            .find(|(_, id, _)| id == keep_id)
            .map(|(at, id, _)| (*at, id.clone()))
        else {
            return Ok(0);
        };
        let mut retired = 0;
        // Ordered by creation, then id, so that two certificates created in the same
        // instant never retire each other.
        for (at, id, arn) in &issued {
            if (*at, id) < (keep.0, &keep.1) {
                self.revoke(device_id, arn).await?;
                retired += 1;
            }
        }
        Ok(retired)
    }

    async fn revoke_all(&self, device_id: &str) -> Result<(), CertificateError> {
        let Some(principals) = self.principals(device_id).await? else {
            return Ok(());
        };
        for arn in &principals {
            self.revoke(device_id, arn).await?;
        }
        // Detaching is eventually consistent: DeleteThing may still see the principals.
        for attempt in 1..=6u32 {
            match self
                .client
                .delete_thing()
                .thing_name(device_id)
                .send()
                .await
            {
                Ok(_) => return Ok(()),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_not_found_exception()) =>
                {
                    return Ok(())
                }
                Err(e)
                    if attempt < 6
                        && e.as_service_error()
                            .is_some_and(|s| s.is_invalid_request_exception()) =>
                {
                    tokio::time::sleep(backoff(
                        attempt,
                        Duration::from_millis(200),
                        Duration::from_secs(3),
                    ))
                    .await;
                }
                Err(e) => return Err(cert_error("IoT DeleteThing", e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use super::*;
    use aws_sdk_iot::types::error::{DeleteConflictException, ResourceNotFoundException};
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;
    use std::sync::atomic::{AtomicU32, Ordering};

    type Sent = Result<(), SdkError<DeleteCertificateError, Response>>;

    fn service_error(err: DeleteCertificateError, status: u16) -> Sent {
        let raw = Response::new(
            StatusCode::try_from(status).expect("a status"),
            SdkBody::empty(),
        );
        Err(SdkError::service_error(err, raw))
    }

    fn conflict() -> Sent {
        let e = DeleteConflictException::builder()
            .message("Things must be detached before deletion")
            .build();
        service_error(DeleteCertificateError::DeleteConflictException(e), 409)
    }

    const FAST: RetryPolicy = RetryPolicy {
        attempts: 4,
        base: Duration::from_millis(1),
        cap: Duration::from_millis(2),
    };

    #[test]
    fn delete_errors_are_sorted_by_their_typed_variant() {
        assert!(matches!(classify_delete(Sent::Ok(())), DeleteStep::Done));
        assert!(matches!(
            classify_delete(conflict()),
            DeleteStep::Conflict(_)
        ));
        let gone = ResourceNotFoundException::builder().message("gone").build();
        let gone = service_error(DeleteCertificateError::ResourceNotFoundException(gone), 404);
        assert!(
            matches!(classify_delete(gone), DeleteStep::Done),
            "already deleted"
        );
        let timeout: Sent = Err(SdkError::timeout_error("no answer"));
        let DeleteStep::Failed(e) = classify_delete(timeout) else {
            panic!("a timeout is no conflict");
        };
        assert!(matches!(e, CertificateError::Unavailable { .. }), "{e}");
    }

    #[tokio::test]
    async fn a_delete_conflict_after_the_asynchronous_detach_is_retried_until_it_passes() {
        let calls = AtomicU32::new(0);
        let done = retry_delete_conflicts(FAST, || async {
            // The detach takes effect before the third call.
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => classify_delete(conflict()),
                _ => DeleteStep::Done,
            }
        })
        .await;
        assert!(done.is_ok(), "{done:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_conflict_that_outlasts_the_retries_is_the_error_after_a_bounded_number_of_calls() {
        let calls = AtomicU32::new(0);
        let err = retry_delete_conflicts(FAST, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            classify_delete(conflict())
        })
        .await
        .expect_err("still attached");
        assert_eq!(calls.load(Ordering::SeqCst), FAST.attempts);
        assert!(
            err.to_string().starts_with(
                "certificate authority unavailable: IoT DeleteCertificate (still attached)"
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn any_other_failure_is_not_retried() {
        let calls = AtomicU32::new(0);
        let err = retry_delete_conflicts(FAST, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            let timeout: Sent = Err(SdkError::timeout_error("no answer"));
            classify_delete(timeout)
        })
        .await
        .expect_err("failed");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(matches!(err, CertificateError::Unavailable { .. }), "{err}");
    }

    /// On moto: a certificate still attached to its thing is refused with the typed
    /// `DeleteConflictException`, and the retry passes once the thing is detached.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs an AWS-compatible endpoint in MIR_TEST_AWS_ENDPOINT (scripts/moto.sh start); run with --include-ignored"]
    async fn moto_refuses_deleting_an_attached_certificate_and_the_retry_passes_after_the_detach() {
        let url = std::env::var("MIR_TEST_AWS_ENDPOINT").expect("MIR_TEST_AWS_ENDPOINT");
        let sdk = crate::adapters::aws::sdk_config(
            Some(&url),
            crate::adapters::aws::SdkTimeouts::emulator(),
        )
        .await;
        let iot = aws_sdk_iot::Client::new(&sdk);
        let n: u64 = rand::random();
        let (policy, device) = (format!("p-{n:x}"), format!("d-{n:x}"));
        iot.create_policy()
            .policy_name(&policy)
            .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"*"}]}"#)
            .send()
            .await
            .expect("policy");
        let issuer = IotCertificates::new(iot.clone(), &policy).allowing_generated_keys(true);
        let cert = issuer.issue(&device, None).await.expect("issued");
        iot.update_certificate()
            .certificate_id(&cert.certificate_id)
            .new_status(CertificateStatus::Inactive)
            .send()
            .await
            .expect("deactivated");
        // Still attached to its thing: the typed conflict.
        let step = issuer.delete_certificate(&cert.certificate_id).await;
        assert!(matches!(step, DeleteStep::Conflict(_)), "{step:?}");
        // The detach "takes effect" while the delete is being retried.
        let arn = iot
            .describe_certificate()
            .certificate_id(&cert.certificate_id)
            .send()
            .await
            .expect("described")
            .certificate_description
            .and_then(|d| d.certificate_arn)
            .expect("an arn");
        // As `revoke` does (and so that moto keeps no policy attachment of a deleted
        // certificate, which breaks its later deletes).
        iot.detach_policy()
            .policy_name(&policy)
            .target(&arn)
            .send()
            .await
            .expect("policy detached");
        let detacher = {
            let (iot, device) = (iot.clone(), device.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                iot.detach_thing_principal()
                    .thing_name(&device)
                    .principal(&arn)
                    .send()
                    .await
                    .expect("detached");
            })
        };
        let slow = RetryPolicy {
            attempts: 20,
            base: Duration::from_millis(100),
            cap: Duration::from_millis(200),
        };
        retry_delete_conflicts(slow, || issuer.delete_certificate(&cert.certificate_id))
            .await
            .expect("deleted once detached");
        detacher.await.expect("the detacher");
        let gone = iot
            .describe_certificate()
            .certificate_id(&cert.certificate_id)
            .send()
            .await
            .expect_err("deleted");
        assert!(
            gone.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()),
            "{gone:?}"
        );
    }
}
