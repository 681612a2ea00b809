//! AWS IoT adapters: the data plane publisher (commands, desired properties, schema
//! requests) and, in `certificates`, the control plane certificate issuer.
//!
//! Certificates: the thing is named after the device id; a CSR is signed with
//! CreateCertificateFromCsr (the private key never leaves the device), otherwise
//! CreateKeysAndCertificate makes the key pair. The certificate gets the device policy
//! (`MIR_IOT_POLICY_NAME`) and is attached to the thing. No root CA is returned: devices
//! trust the public Amazon Root CA 1 (<https://www.amazontrust.com/repository/AmazonRootCA1.pem>),
//! which the device SDK bundles.

use async_trait::async_trait;
use bytes::Bytes;

use super::aws::DisplayErrorChain;
use crate::ports::{DevicePublisher, PublishError};

mod certificates;
pub use certificates::IotCertificates;

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
