//! The hub's adapters for the ports that are not stores: publishing through the
//! embedded broker, and certificates from the local CA.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;

use mir_broker::{ca::LocalCa, BrokerHandle, QoS};
use mir_proto::DeviceId;
use mir_shared::ports::{
    CertificateError, CertificateIssuer, DeviceCertificate, DevicePublisher, PublishError,
};

/// Publishes to devices through the broker. The handle is set once the broker runs
/// (the broker's hooks need the publisher first).
#[derive(Default)]
pub struct BrokerPublisher {
    handle: OnceLock<BrokerHandle>,
}

impl BrokerPublisher {
    pub fn set(&self, handle: BrokerHandle) {
        let _ = self.handle.set(handle);
    }
}

#[async_trait]
impl DevicePublisher for BrokerPublisher {
    async fn publish(&self, topic: &str, payload: Bytes) -> Result<(), PublishError> {
        let handle = self.handle.get().ok_or_else(|| PublishError::Failed {
            message: "broker not started".into(),
            source: None,
        })?;
        let delivered = handle
            .publish(topic, payload, QoS::AtLeastOnce)
            .await
            .map_err(|e| PublishError::Failed {
                message: e.to_string(),
                source: Some(Box::new(e)),
            })?;
        if delivered == 0 {
            let device = mir_proto::topics::parse(topic)
                .map(|(id, _)| id.to_string())
                .unwrap_or_else(|_| topic.to_string());
            return Err(PublishError::NotConnected(device));
        }
        Ok(())
    }
}

/// Issues device certificates from the hub's local CA.
pub struct LocalCertificates {
    pub ca: Arc<LocalCa>,
    /// The broker's mTLS endpoint (`mqtts://...`), known once the broker listens.
    pub endpoint: Arc<std::sync::OnceLock<String>>,
}

#[async_trait]
impl CertificateIssuer for LocalCertificates {
    async fn issue(
        &self,
        device_id: &str,
        csr_pem: Option<&str>,
    ) -> Result<DeviceCertificate, CertificateError> {
        let id = DeviceId::new(device_id).map_err(|e| CertificateError::Invalid(e.to_string()))?;
        let issued = match csr_pem {
            Some(csr) => self.ca.sign_csr(&id, csr),
            None => self.ca.issue_device_cert(&id),
        }
        .map_err(|e| CertificateError::Invalid(e.to_string()))?;
        Ok(DeviceCertificate {
            certificate_id: issued.certificate_id,
            certificate_pem: issued.cert_pem,
            private_key_pem: issued.private_key_pem,
            root_ca_pem: Some(self.ca.ca_cert_pem().to_string()),
            endpoint: self.endpoint.get().cloned(),
        })
    }

    async fn set_active(&self, device_id: &str, active: bool) -> Result<(), CertificateError> {
        // As for revoke_all: the local CA cannot mark a certificate inactive; a disabled
        // device's messages are refused by the handlers instead.
        tracing::info!(
            device = device_id,
            active,
            "local CA: certificates keep their state"
        );
        Ok(())
    }

    async fn revoke_all(&self, device_id: &str) -> Result<(), CertificateError> {
        // The local CA keeps no revocation list: a deleted device's certificate still
        // passes the TLS handshake. Its tombstone keeps heartbeats, lifecycle events and
        // other messages from creating it again; a hello sent after the delete does.
        tracing::info!(
            device = device_id,
            "local CA: certificates are not revocable; nothing to do"
        );
        Ok(())
    }
}
