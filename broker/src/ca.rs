//! The local certificate authority of the hub: it signs the broker's server
//! certificate and the devices' client certificates, as AWS IoT does in the cloud.
//!
//! Files: `{dir}/ca.crt` (PEM) and `{dir}/ca.key` (PEM, PKCS#8, mode 0600).

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use mir_proto::DeviceId;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
    SerialNumber,
};
use ring::rand::SecureRandom;

const CA_CERT_FILE: &str = "ca.crt";
const CA_KEY_FILE: &str = "ca.key";
/// Validity of the CA, in years.
const CA_YEARS: i32 = 20;
/// Validity of issued certificates, in years.
const LEAF_YEARS: i32 = 10;

/// Errors of the local CA.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{} holds only one of ca.crt and ca.key; restore the missing file or remove both to create a new CA",
        dir.display()
    )]
    Incomplete { dir: PathBuf },
    #[error("{}: ca.key does not match ca.crt", dir.display())]
    KeyMismatch { dir: PathBuf },
    #[error("invalid certificate signing request: {0}")]
    InvalidCsr(#[source] rcgen::Error),
    #[error("cannot random: {0}")]
    Random(String),
    #[error(transparent)]
    Certificate(#[from] rcgen::Error),
}

/// A certificate issued by the [`LocalCa`].
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedCert {
    pub cert_pem: String,
    /// The new private key (PKCS#8 PEM); `None` when signing a CSR.
    pub private_key_pem: Option<String>,
    /// SHA-256 of the certificate's DER, lower-case hex, like AWS's `certificateId`.
    pub certificate_id: String,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert")
            .field("certificate_id", &self.certificate_id)
            .field(
                "private_key_pem",
                &self.private_key_pem.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

/// The hub's certificate authority.
pub struct LocalCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa").finish_non_exhaustive()
    }
}

impl LocalCa {
    /// Loads `dir/ca.crt` and `dir/ca.key`, or creates them (and `dir`) if both are missing.
    pub fn load_or_create(dir: &Path) -> Result<LocalCa, CaError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => {
                let cert_pem = read(&cert_path)?;
                let key = KeyPair::from_pem(&read(&key_path)?)?;
                check_key_matches(&cert_pem, &key, dir)?;
                let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)?;
                Ok(LocalCa { cert_pem, issuer })
            }
            (false, false) => {
                fs::create_dir_all(dir).map_err(|source| CaError::Io {
                    path: dir.to_path_buf(),
                    source,
                })?;
                let key = KeyPair::generate()?;
                let mut params = CertificateParams::default();
                params.distinguished_name = DistinguishedName::new();
                params
                    .distinguished_name
                    .push(DnType::CommonName, "Mir local CA");
                params
                    .distinguished_name
                    .push(DnType::OrganizationName, "Mir");
                params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
                params.key_usages = vec![
                    KeyUsagePurpose::KeyCertSign,
                    KeyUsagePurpose::CrlSign,
                    KeyUsagePurpose::DigitalSignature,
                ];
                set_validity(&mut params, CA_YEARS);
                params.serial_number = Some(random_serial()?);
                let cert = params.self_signed(&key)?;
                let cert_pem = cert.pem();
                write_file(&key_path, key.serialize_pem().as_bytes(), true)?;
                write_file(&cert_path, cert_pem.as_bytes(), false)?;
                let issuer = Issuer::new(params, key);
                Ok(LocalCa { cert_pem, issuer })
            }
            _ => Err(CaError::Incomplete {
                dir: dir.to_path_buf(),
            }),
        }
    }

    /// The CA certificate (PEM): the trust anchor of devices and of the broker.
    pub fn ca_cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A server certificate for the broker: SANs are `hostnames`, `localhost` and
    /// `127.0.0.1`.
    pub fn issue_server_cert(&self, hostnames: &[String]) -> Result<IssuedCert, CaError> {
        let mut names: Vec<String> = Vec::new();
        for name in hostnames
            .iter()
            .map(String::as_str)
            .chain(["localhost", "127.0.0.1"])
        {
            if !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
        let mut params = CertificateParams::new(names.clone())?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().map_or("localhost", String::as_str),
        );
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        self.sign(params, &key, Some(key.serialize_pem()))
    }

    /// A new key pair and client certificate for `device_id` (CN = device id).
    pub fn issue_device_cert(&self, device_id: &DeviceId) -> Result<IssuedCert, CaError> {
        let key = KeyPair::generate()?;
        self.sign(device_params(device_id), &key, Some(key.serialize_pem()))
    }

    /// Signs a device's CSR; the private key stays on the device. Whatever the CSR asks
    /// for, the certificate has CN = `device_id`, client authentication only, no SANs.
    pub fn sign_csr(&self, device_id: &DeviceId, csr_pem: &str) -> Result<IssuedCert, CaError> {
        let csr =
            CertificateSigningRequestParams::from_pem(csr_pem).map_err(CaError::InvalidCsr)?;
        self.sign(device_params(device_id), &csr.public_key, None)
    }

    fn sign(
        &self,
        mut params: CertificateParams,
        public_key: &impl PublicKeyData,
        private_key_pem: Option<String>,
    ) -> Result<IssuedCert, CaError> {
        set_validity(&mut params, LEAF_YEARS);
        params.serial_number = Some(random_serial()?);
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(public_key, &self.issuer)?;
        let digest = ring::digest::digest(&ring::digest::SHA256, cert.der());
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            private_key_pem,
            certificate_id: hex(digest.as_ref()),
        })
    }
}

fn device_params(device_id: &DeviceId) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, device_id.as_str());
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params
}

fn check_key_matches(cert_pem: &str, key: &KeyPair, dir: &Path) -> Result<(), CaError> {
    let mismatch = || CaError::KeyMismatch {
        dir: dir.to_path_buf(),
    };
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).map_err(|_| mismatch())?;
    let cert = pem.parse_x509().map_err(|_| mismatch())?;
    if cert.tbs_certificate.subject_pki.raw != key.subject_public_key_info().as_slice() {
        return Err(mismatch());
    }
    Ok(())
}

/// From a year ago (clock skew of devices) to `years` years from now.
fn set_validity(params: &mut CertificateParams, years: i32) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Mean Gregorian year; exact dates do not matter here.
    let year = 1970 + i32::try_from(secs / 31_556_952).unwrap_or(0);
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + years, 1, 1);
}

fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|e| CaError::Random(e.to_string()))?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

fn read(path: &Path) -> Result<String, CaError> {
    fs::read_to_string(path).map_err(|source| CaError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write_file(path: &Path, contents: &[u8], secret: bool) -> Result<(), CaError> {
    let io_err = |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path).map_err(io_err)?;
    file.write_all(contents).map_err(io_err)?;
    file.sync_all().map_err(io_err)
}
