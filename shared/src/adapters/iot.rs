//! AWS IoT adapters: the data plane publisher (commands, desired properties, schema
//! requests) and the control plane certificate issuer.
//!
//! Certificates: the thing is named after the device id; a CSR is signed with
//! CreateCertificateFromCsr (the private key never leaves the device), otherwise
//! CreateKeysAndCertificate makes the key pair. The certificate gets the device policy
//! (`MIR_IOT_POLICY_NAME`) and is attached to the thing. No root CA is returned: devices
//! trust the public Amazon Root CA 1 (<https://www.amazontrust.com/repository/AmazonRootCA1.pem>),
//! which the device SDK bundles.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_iot::types::CertificateStatus;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use bytes::Bytes;

use super::aws::{backoff, is_retryable_sdk, DisplayErrorChain};
use crate::ports::{
    CertificateError, CertificateIssuer, DeviceCertificate, DevicePublisher, PublishError,
};

pub use aws_sdk_iot;
pub use aws_sdk_iotdataplane;

/// Publishes to devices through the IoT data plane (QoS 1).
#[derive(Debug, Clone)]
pub struct IotPublisher {
    client: aws_sdk_iotdataplane::Client,
}

impl IotPublisher {
    /// `endpoint_url`: `https://<MIR_IOT_DATA_ENDPOINT>`, or the local endpoint override.
    pub fn new(sdk: &aws_config::SdkConfig, endpoint_url: &str) -> Self {
        let conf = aws_sdk_iotdataplane::config::Builder::from(sdk)
            .endpoint_url(endpoint_url)
            .build();
        Self {
            client: aws_sdk_iotdataplane::Client::from_conf(conf),
        }
    }
}

#[async_trait]
impl DevicePublisher for IotPublisher {
    /// IoT Core accepts a publish whether or not the device is connected (a persistent
    /// session queues it), so this never answers `NotConnected`: handlers look at
    /// the twin's `status.online` first.
    async fn publish(&self, topic: &str, payload: Bytes) -> Result<(), PublishError> {
        self.client
            .publish()
            .topic(topic)
            .qos(1)
            .payload(aws_sdk_iotdataplane::primitives::Blob::new(
                payload.to_vec(),
            ))
            .send()
            .await
            .map_err(|e| PublishError::Failed {
                message: format!("IoT Publish to {topic}: {}", DisplayErrorChain(&e)),
                source: Some(Box::new(e)),
            })?;
        Ok(())
    }
}

fn cert_error<E, R>(what: &str, e: SdkError<E, R>) -> CertificateError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
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
}

impl IotCertificates {
    pub fn new(client: aws_sdk_iot::Client, policy_name: &str) -> Self {
        Self {
            client,
            policy_name: policy_name.to_string(),
            device_endpoint: None,
        }
    }

    /// The host of the account's `iot:Data-ATS` endpoint, returned with each
    /// certificate so that the device knows where to connect.
    pub fn with_device_endpoint(mut self, host: Option<String>) -> Self {
        self.device_endpoint = host;
        self
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
        self.client
            .attach_thing_principal()
            .thing_name(device_id)
            .principal(arn)
            .send()
            .await
            .map_err(|e| cert_error("IoT AttachThingPrincipal", e))?;
        Ok(())
    }

    async fn revoke(&self, device_id: &str, arn: &str) -> Result<(), CertificateError> {
        let ignore_missing = |r: Result<(), CertificateError>| match r {
            Err(CertificateError::Invalid(m))
                if m.contains("not found") || m.contains("NotFound") =>
            {
                Ok(())
            }
            other => other,
        };
        ignore_missing(
            self.client
                .detach_policy()
                .policy_name(&self.policy_name)
                .target(arn)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| cert_error("IoT DetachPolicy", e)),
        )?;
        ignore_missing(
            self.client
                .detach_thing_principal()
                .thing_name(device_id)
                .principal(arn)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| cert_error("IoT DetachThingPrincipal", e)),
        )?;
        let Some(cert_id) = arn.rsplit('/').next().filter(|s| !s.is_empty()) else {
            return Ok(());
        };
        ignore_missing(
            self.client
                .update_certificate()
                .certificate_id(cert_id)
                .new_status(CertificateStatus::Inactive)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| cert_error("IoT UpdateCertificate", e)),
        )?;
        ignore_missing(
            self.client
                .delete_certificate()
                .certificate_id(cert_id)
                .force_delete(true)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| cert_error("IoT DeleteCertificate", e)),
        )
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

    async fn revoke_all(&self, device_id: &str) -> Result<(), CertificateError> {
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
                    return Ok(())
                }
                Err(e) => return Err(cert_error("IoT ListThingPrincipals", e)),
            };
            principals.extend(out.principals.unwrap_or_default());
            match out.next_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
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
