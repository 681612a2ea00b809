//! The hub's certificates: issued by the local CA, and kept in a certificate book
//! (`<dataDir>/ca/certificates.json`), the hub's stand-in for AWS IoT's certificate
//! registry. Each certificate is active, inactive (its device is disabled) or revoked
//! (its device was deleted, or a rotation's grace period is over).
//!
//! The broker asks the book at every CONNECT ([`CertificateBook::admit`]): a device
//! that holds a certificate connects over mTLS only, with a certificate of the book
//! that is active. So a process on the plain port cannot take over a provisioned
//! device, and a deleted device's certificate no longer connects.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock},
};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use mir_broker::{ca::LocalCa, BrokerHandle, DisconnectReason};
use mir_proto::DeviceId;
use mir_shared::ports::{CertificateError, CertificateIssuer, DeviceCertificate};

/// The state of one certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertificateStatus {
    Active,
    Inactive,
    Revoked,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Entry {
    /// SHA-256 of the certificate's DER, lower-case hex (as AWS's `certificateId`).
    id: String,
    issued_at_ms: i64,
    status: CertificateStatus,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Book {
    /// Each device's certificates, in the order they were issued.
    devices: BTreeMap<String, Vec<Entry>>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("device {0} holds a certificate: it connects over mTLS only, not on the plain port")]
    CertifiedOnPlainPort(String),
    #[error("the client certificate of {0} was not issued by this hub's API")]
    UnknownCertificate(String),
    #[error("the client certificate of {0} is inactive (the device is disabled)")]
    Inactive(String),
    #[error("the client certificate of {0} is revoked")]
    Revoked(String),
}

/// A certificate book that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum BookError {
    #[error("cannot read or write the certificate book {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the certificate book {path} is not valid: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// The hub's certificate registry, on disk.
#[derive(Debug)]
pub struct CertificateBook {
    path: PathBuf,
    book: Mutex<Book>,
}

impl CertificateBook {
    /// Opens the book at `path` (an absent file is an empty book).
    pub fn open(path: &Path) -> Result<Self, BookError> {
        let book = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| BookError::Corrupt {
                path: path.to_path_buf(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Book::default(),
            Err(source) => {
                return Err(BookError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        Ok(Self {
            path: path.to_path_buf(),
            book: Mutex::new(book),
        })
    }

    /// Whether `device_id` may connect: over mTLS (`certificate`: the SHA-256 of the
    /// client certificate) with an active certificate of the book; on the plain port
    /// only while it holds no certificate that is not revoked.
    pub fn admit(&self, device_id: &str, certificate: Option<&str>) -> Result<(), Refusal> {
        let book = self.lock();
        let entries = book
            .devices
            .get(device_id)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        match certificate {
            None if entries
                .iter()
                .any(|e| e.status != CertificateStatus::Revoked) =>
            {
                Err(Refusal::CertifiedOnPlainPort(device_id.to_string()))
            }
            None => Ok(()),
            Some(id) => match entries.iter().find(|e| e.id == id).map(|e| e.status) {
                Some(CertificateStatus::Active) => Ok(()),
                Some(CertificateStatus::Inactive) => Err(Refusal::Inactive(device_id.to_string())),
                Some(CertificateStatus::Revoked) => Err(Refusal::Revoked(device_id.to_string())),
                None => Err(Refusal::UnknownCertificate(device_id.to_string())),
            },
        }
    }

    /// The status of one certificate, if the book has it.
    pub fn status(&self, device_id: &str, certificate_id: &str) -> Option<CertificateStatus> {
        self.lock()
            .devices
            .get(device_id)?
            .iter()
            .find(|e| e.id == certificate_id)
            .map(|e| e.status)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        // A panic while holding the lock leaves a consistent book (edits are applied
        // to a copy first), so a poisoned lock is still usable.
        self.book
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies `edit` to a copy of the book, writes it (temporary file, then rename)
    /// and only then makes it current; returns what `edit` returned.
    async fn update<T: Send + 'static>(
        self: &Arc<Self>,
        edit: impl FnOnce(&mut Book) -> T + Send + 'static,
    ) -> Result<T, CertificateError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut book = this.lock();
            let mut next = book.clone();
            let out = edit(&mut next);
            if next != *book {
                this.write(&next)?;
                *book = next;
            }
            Ok(out)
        })
        .await
        .map_err(|e| unavailable(format!("certificate book task failed: {e}")))?
    }

    fn write(&self, book: &Book) -> Result<(), CertificateError> {
        let bytes = serde_json::to_vec_pretty(book)
            .map_err(|e| unavailable(format!("cannot encode the certificate book: {e}")))?;
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .map_err(|e| {
                unavailable(format!(
                    "cannot write the certificate book {}: {e}",
                    self.path.display()
                ))
            })
    }
}

fn unavailable(message: String) -> CertificateError {
    CertificateError::Unavailable {
        message,
        source: None,
    }
}

/// Issues device certificates from the hub's local CA and keeps them in the book.
pub struct LocalCertificates {
    pub ca: Arc<LocalCa>,
    pub book: Arc<CertificateBook>,
    /// The broker's mTLS endpoint (`mqtts://...`), known once the broker listens.
    pub endpoint: Arc<OnceLock<String>>,
    /// The broker, once it runs: a device whose certificates were revoked or made
    /// inactive is disconnected at once (and refused when it comes back).
    pub broker: Arc<OnceLock<BrokerHandle>>,
}

impl LocalCertificates {
    fn cut_off(&self, device_id: &str) {
        if let Some(b) = self.broker.get() {
            if b.disconnect(device_id, DisconnectReason::AuthorizationFailure) {
                tracing::info!(
                    device = device_id,
                    "disconnected: its certificate no longer admits it"
                );
            }
        }
    }
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
        let entry = Entry {
            id: issued.certificate_id.clone(),
            issued_at_ms: chrono::Utc::now().timestamp_millis(),
            status: CertificateStatus::Active,
        };
        let device = device_id.to_string();
        self.book
            .update(move |b| b.devices.entry(device).or_default().push(entry))
            .await?;
        Ok(DeviceCertificate {
            certificate_id: issued.certificate_id,
            certificate_pem: issued.cert_pem,
            private_key_pem: issued.private_key_pem,
            root_ca_pem: Some(self.ca.ca_cert_pem().to_string()),
            endpoint: self.endpoint.get().cloned(),
        })
    }

    async fn set_active(&self, device_id: &str, active: bool) -> Result<(), CertificateError> {
        let device = device_id.to_string();
        let changed = self
            .book
            .update(move |b| {
                let want = if active {
                    CertificateStatus::Active
                } else {
                    CertificateStatus::Inactive
                };
                let mut changed = 0;
                for e in b.devices.get_mut(&device).into_iter().flatten() {
                    if e.status != CertificateStatus::Revoked && e.status != want {
                        e.status = want;
                        changed += 1;
                    }
                }
                changed
            })
            .await?;
        // A device without certificates (on the plain port) is not cut off.
        if !active && changed > 0 {
            self.cut_off(device_id);
        }
        Ok(())
    }

    async fn revoke_all(&self, device_id: &str) -> Result<(), CertificateError> {
        let device = device_id.to_string();
        let revoked = self
            .book
            .update(move |b| {
                let mut revoked = 0;
                for e in b.devices.get_mut(&device).into_iter().flatten() {
                    if e.status != CertificateStatus::Revoked {
                        e.status = CertificateStatus::Revoked;
                        revoked += 1;
                    }
                }
                revoked
            })
            .await?;
        // A device without certificates (on the plain port) is not cut off: its later
        // messages are ignored, as on AWS for a connection that stays open.
        if revoked > 0 {
            self.cut_off(device_id);
        }
        Ok(())
    }

    async fn retire_earlier(
        &self,
        device_id: &str,
        keep_id: &str,
    ) -> Result<u32, CertificateError> {
        let (device, keep) = (device_id.to_string(), keep_id.to_string());
        let retired = self
            .book
            .update(move |b| {
                let Some(entries) = b.devices.get_mut(&device) else {
                    return 0;
                };
                let Some(at) = entries
                    .iter()
                    .position(|e| e.id == keep && e.status != CertificateStatus::Revoked)
                else {
                    return 0;
                };
                let mut retired = 0;
                for e in &mut entries[..at] {
                    if e.status != CertificateStatus::Revoked {
                        e.status = CertificateStatus::Revoked;
                        retired += 1;
                    }
                }
                retired
            })
            .await?;
        if retired > 0 {
            self.cut_off(device_id);
        }
        Ok(retired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer(dir: &Path) -> LocalCertificates {
        LocalCertificates {
            ca: Arc::new(LocalCa::load_or_create(&dir.join("ca")).expect("ca")),
            book: Arc::new(CertificateBook::open(&dir.join("certificates.json")).expect("book")),
            endpoint: Arc::new(OnceLock::new()),
            broker: Arc::new(OnceLock::new()),
        }
    }

    #[tokio::test]
    async fn a_device_with_a_certificate_is_refused_on_the_plain_port_until_it_is_revoked() {
        let dir = tempfile::tempdir().expect("tmp");
        let certs = issuer(dir.path());
        assert_eq!(certs.book.admit("d1", None), Ok(()));
        let cert = certs.issue("d1", None).await.expect("issued");
        assert_eq!(
            certs.book.admit("d1", None),
            Err(Refusal::CertifiedOnPlainPort("d1".into()))
        );
        assert_eq!(certs.book.admit("d1", Some(&cert.certificate_id)), Ok(()));
        certs.revoke_all("d1").await.expect("revoked");
        assert_eq!(
            certs.book.admit("d1", Some(&cert.certificate_id)),
            Err(Refusal::Revoked("d1".into()))
        );
        assert_eq!(certs.book.admit("d1", None), Ok(()));
    }

    #[tokio::test]
    async fn disabling_makes_the_certificate_inactive_and_enabling_active_again() {
        let dir = tempfile::tempdir().expect("tmp");
        let certs = issuer(dir.path());
        let cert = certs.issue("d1", None).await.expect("issued");
        certs.set_active("d1", false).await.expect("disabled");
        assert_eq!(
            certs.book.admit("d1", Some(&cert.certificate_id)),
            Err(Refusal::Inactive("d1".into()))
        );
        certs.set_active("d1", true).await.expect("enabled");
        assert_eq!(certs.book.admit("d1", Some(&cert.certificate_id)), Ok(()));
    }

    #[tokio::test]
    async fn a_rotation_revokes_only_the_certificates_issued_before_the_one_it_keeps() {
        let dir = tempfile::tempdir().expect("tmp");
        let certs = issuer(dir.path());
        let first = certs.issue("d1", None).await.expect("1").certificate_id;
        let second = certs.issue("d1", None).await.expect("2").certificate_id;
        let third = certs.issue("d1", None).await.expect("3").certificate_id;
        assert_eq!(certs.retire_earlier("d1", &second).await.expect("ok"), 1);
        assert_eq!(
            certs.book.status("d1", &first),
            Some(CertificateStatus::Revoked)
        );
        assert_eq!(
            certs.book.status("d1", &third),
            Some(CertificateStatus::Active)
        );
        // Again (a retried schedule): nothing more to do.
        assert_eq!(certs.retire_earlier("d1", &second).await.expect("ok"), 0);
        assert_eq!(
            certs.book.admit("d1", Some("0000")),
            Err(Refusal::UnknownCertificate("d1".into()))
        );
    }

    #[tokio::test]
    async fn the_book_survives_a_restart_of_the_hub() {
        let dir = tempfile::tempdir().expect("tmp");
        let cert = {
            let certs = issuer(dir.path());
            let cert = certs.issue("d1", None).await.expect("issued");
            certs.revoke_all("d1").await.expect("revoked");
            cert
        };
        let reopened = issuer(dir.path());
        assert_eq!(
            reopened.book.admit("d1", Some(&cert.certificate_id)),
            Err(Refusal::Revoked("d1".into()))
        );
    }

    #[test]
    fn a_corrupt_book_is_a_clear_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("certificates.json");
        std::fs::write(&path, b"{not json").expect("write");
        let err = CertificateBook::open(&path).expect_err("corrupt");
        assert!(matches!(err, BookError::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().contains("certificates.json"), "{err}");
    }
}
