//! X.509 credentials of a device: the files Mir looks for (`tls.crt`, `tls.key`,
//! `ca.crt` in `./`, `~/.config/mir/`, `/etc/mir/`), the Amazon root CA of AWS IoT
//! Core, and (feature `csr`, on by default) a key pair plus certificate signing
//! request generated on the device, so that the private key never leaves it.
//!
//! Rotation without a gap: [`generate_csr`] writes the new key beside the live one
//! (`tls.key.new`); [`install_certificate`] writes the certificate the platform signed
//! and only then replaces `tls.crt` and `tls.key`. The device reads the files again at
//! every connection attempt, so the next reconnect uses them.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # #[cfg(feature = "csr")]
//! # {
//! let dir = std::path::Path::new("/etc/mir");
//! // Writes /etc/mir/tls.key.new (mode 0600) and returns the CSR to send to
//! // `POST /v1/devices/{id}/certificate` as {"csrPem": ...}.
//! let csr_pem = mir_device_sdk::credentials::generate_csr("weather-01", dir)?;
//! # let signed_cert_pem = csr_pem;
//! // The answer's certificate: tls.crt and tls.key are replaced together.
//! mir_device_sdk::credentials::install_certificate(dir, signed_cert_pem.as_bytes())?;
//! # }
//! # Ok(())
//! # }
//! ```

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use crate::config::file::default_dirs;

/// File name of the client certificate (PEM).
pub const CERT_FILE: &str = "tls.crt";
/// File name of the client private key (PEM).
pub const KEY_FILE: &str = "tls.key";
/// File name of the CA that signed the server certificate (PEM).
pub const CA_FILE: &str = "ca.crt";
/// File name of a new private key waiting for its certificate.
pub const NEW_KEY_FILE: &str = "tls.key.new";

/// Amazon Root CA 1, the root of AWS IoT Core's ATS endpoints.
pub use mir_proto::aws::AMAZON_ROOT_CA_1;

/// Errors of key and CSR generation.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// Not retryable: the key or CSR parameters were refused.
    #[cfg(feature = "csr")]
    #[error("cannot generate the key pair or the CSR: {0}")]
    Generate(#[from] rcgen::Error),
    /// [`install_certificate`] without a key from [`generate_csr`] waiting.
    #[error("no new key waits for a certificate: {} is missing (call generate_csr first)", path.display())]
    NoPendingKey { path: PathBuf },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid device id {0:?}")]
    InvalidDeviceId(String),
}

/// Paths of the credential files found in the search directories (each file is
/// searched on its own, as in Mir: the first directory holding it wins).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FoundCredentials {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca: Option<PathBuf>,
}

/// Mir's search directories: `./`, `~/.config/mir/`, `/etc/mir/`.
pub fn default_search_dirs() -> Vec<PathBuf> {
    default_dirs()
}

/// Looks for `tls.crt`, `tls.key` and `ca.crt` in `dirs`, in order.
pub fn search(dirs: &[PathBuf]) -> FoundCredentials {
    let find = |name: &str| dirs.iter().map(|d| d.join(name)).find(|p| p.is_file());
    FoundCredentials {
        cert: find(CERT_FILE),
        key: find(KEY_FILE),
        ca: find(CA_FILE),
    }
}

/// A fresh key pair and the CSR for it, both still in memory: write the key only once
/// the certificate for it has come back, so that a failed request leaves the current
/// key and certificate in place.
#[cfg(feature = "csr")]
pub struct KeyAndCsr {
    /// The certificate signing request (PEM): what is sent to the platform.
    pub csr_pem: String,
    /// The private key (PKCS#8 PEM): never sent anywhere.
    pub private_key_pem: String,
}

#[cfg(feature = "csr")]
impl std::fmt::Debug for KeyAndCsr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyAndCsr")
            .field("csr_pem", &self.csr_pem)
            .field("private_key_pem", &"***")
            .finish()
    }
}

/// Generates an ECDSA P-256 key pair and a CSR (PEM) whose subject common name is
/// `device_id`, without writing anything.
#[cfg(feature = "csr")]
pub fn key_and_csr(device_id: &str) -> Result<KeyAndCsr, CredentialsError> {
    mir_proto::DeviceId::new(device_id)
        .map_err(|_| CredentialsError::InvalidDeviceId(device_id.to_string()))?;
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, device_id);
    let csr_pem = params.serialize_request(&key)?.pem()?;
    Ok(KeyAndCsr {
        csr_pem,
        private_key_pem: key.serialize_pem(),
    })
}

/// Generates an ECDSA P-256 key pair on the device, writes the private key to
/// `dir/tls.key.new` (PKCS#8 PEM, mode 0600, the folder is created), beside the live
/// `tls.key` which it leaves alone, and returns a CSR (PEM) whose subject common name
/// is `device_id`. Send the CSR to the platform (`POST /v1/devices/{id}/certificate`
/// with `{"csrPem": ...}`) and give the certificate it returns to
/// [`install_certificate`]: the private key never leaves the device.
#[cfg(feature = "csr")]
pub fn generate_csr(device_id: &str, dir: &Path) -> Result<String, CredentialsError> {
    let pending = key_and_csr(device_id)?;
    std::fs::create_dir_all(dir).map_err(|source| CredentialsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join(NEW_KEY_FILE);
    write_private(&path, pending.private_key_pem.as_bytes())
        .map_err(|source| CredentialsError::Write { path, source })?;
    Ok(pending.csr_pem)
}

/// Installs the certificate signed for the key of [`generate_csr`]: writes it beside
/// the live one, then replaces `tls.crt` and moves `tls.key.new` to `tls.key` (each a
/// rename). Until this returns, the live certificate and key stay as they were.
pub fn install_certificate(dir: &Path, cert_pem: &[u8]) -> Result<(), CredentialsError> {
    let new_key = dir.join(NEW_KEY_FILE);
    if !new_key.is_file() {
        return Err(CredentialsError::NoPendingKey { path: new_key });
    }
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CredentialsError::Write { path, source }
    };
    let new_cert = dir.join(format!("{CERT_FILE}.new"));
    write_private(&new_cert, cert_pem).map_err(write_err(&new_cert))?;
    let cert = dir.join(CERT_FILE);
    let key = dir.join(KEY_FILE);
    std::fs::rename(&new_key, &key).map_err(write_err(&key))?;
    std::fs::rename(&new_cert, &cert).map_err(write_err(&cert))?;
    Ok(())
}

/// Writes `bytes` to `path`, readable by its owner only (mode 0600 on Unix, also when
/// the file existed with a wider mode), and syncs it to disk.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_private(path, bytes)
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "csr")]
    #[test]
    fn a_new_key_waits_beside_the_live_one_until_its_certificate_is_installed() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(KEY_FILE), "live key").expect("write");
        std::fs::write(dir.path().join(CERT_FILE), "live cert").expect("write");
        let err = install_certificate(dir.path(), b"early").expect_err("no key yet");
        assert!(
            matches!(&err, CredentialsError::NoPendingKey { path } if path.ends_with(NEW_KEY_FILE)),
            "{err}"
        );
        generate_csr("weather-01", dir.path()).expect("csr");
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).expect("read");
        assert_eq!(read(KEY_FILE), "live key", "the live key is untouched");
        assert_eq!(read(CERT_FILE), "live cert");
        let new_key = read(NEW_KEY_FILE);
        install_certificate(dir.path(), b"signed cert").expect("install");
        assert_eq!(read(CERT_FILE), "signed cert");
        assert_eq!(read(KEY_FILE), new_key);
        assert!(!dir.path().join(NEW_KEY_FILE).exists());
    }

    #[cfg(feature = "csr")]
    #[test]
    fn the_csr_names_the_device_and_the_key_is_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let csr = generate_csr("weather-01", dir.path()).expect("csr");
        assert!(
            csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
            "{csr}"
        );
        let params = rcgen::CertificateSigningRequestParams::from_pem(&csr).expect("parses");
        let cn = params
            .params
            .distinguished_name
            .get(&rcgen::DnType::CommonName)
            .cloned();
        assert_eq!(
            cn,
            Some(rcgen::DnValue::Utf8String("weather-01".into())),
            "{cn:?}"
        );
        let key = std::fs::read_to_string(dir.path().join(NEW_KEY_FILE)).expect("key");
        assert!(key.contains("PRIVATE KEY"));
        assert!(!csr.contains("PRIVATE KEY"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(NEW_KEY_FILE))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let err = generate_csr("bad id", dir.path()).expect_err("a space in the id");
        assert!(
            matches!(&err, CredentialsError::InvalidDeviceId(id) if id == "bad id"),
            "{err}"
        );
    }

    #[test]
    fn files_are_searched_one_by_one_in_order() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        std::fs::write(b.path().join(CERT_FILE), "b").expect("write");
        std::fs::write(b.path().join(KEY_FILE), "b").expect("write");
        std::fs::write(a.path().join(CA_FILE), "a").expect("write");
        std::fs::write(b.path().join(CA_FILE), "b").expect("write");
        let found = search(&[a.path().to_path_buf(), b.path().to_path_buf()]);
        assert_eq!(found.cert, Some(b.path().join(CERT_FILE)));
        assert_eq!(found.key, Some(b.path().join(KEY_FILE)));
        assert_eq!(
            found.ca,
            Some(a.path().join(CA_FILE)),
            "the first directory wins"
        );
        assert_eq!(search(&[]), FoundCredentials::default());
    }

    #[test]
    fn the_amazon_root_ca_parses() {
        let certs = rustls_pemfile::certs(&mut AMAZON_ROOT_CA_1.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("pem");
        assert_eq!(certs.len(), 1);
    }
}
