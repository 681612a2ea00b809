//! Device credentials: `mir device create --provision` and `mir device cert`.
//!
//! The key pair is generated here, on the operator's machine; only a CSR goes to the
//! API, which has it signed (the local CA on `mir local`, `CreateCertificateFromCsr` on
//! AWS). The files are written only once the certificate is back: `tls.crt`, `tls.key`
//! (mode 0600), `ca.crt` and a `device.yaml` for the device SDK that points at the
//! endpoint the API returned, so that the device connects with no further editing.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};

use mir_device_sdk::credentials::{self, KeyAndCsr, CA_FILE, CERT_FILE, KEY_FILE};
use mir_shared::api::CertificateRequest;
use mir_shared::ports::DeviceCertificate;

use super::{out, resolve};
use crate::args::DeviceCertArgs;
use crate::client::Client;
use crate::input;

/// The SDK configuration written beside the credentials.
pub const DEVICE_FILE: &str = "device.yaml";

/// What was written, for the summary line.
#[derive(Debug)]
pub struct Provisioned {
    pub certificate_id: String,
    pub dir: PathBuf,
    pub files: Vec<&'static str>,
    pub endpoint: Option<String>,
}

/// The files of one device's credentials in a directory.
#[derive(Debug, Clone)]
pub struct CertDir {
    dir: PathBuf,
}

impl CertDir {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// Refuses to overwrite existing files unless `force`.
    pub fn check(&self, force: bool) -> anyhow::Result<()> {
        if force {
            return Ok(());
        }
        for name in [CERT_FILE, KEY_FILE, CA_FILE, DEVICE_FILE] {
            let p = self.dir.join(name);
            if p.exists() {
                bail!(
                    "{} already exists: use --force to overwrite it, or another --cert-dir",
                    p.display()
                );
            }
        }
        Ok(())
    }

    /// Writes the certificate, the key that stayed here, the CA and `device.yaml`.
    fn write(
        &self,
        device_id: &str,
        pending: &KeyAndCsr,
        cert: &DeviceCertificate,
        fallback_endpoint: Option<&str>,
    ) -> anyhow::Result<Provisioned> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let dir = std::fs::canonicalize(&self.dir)
            .with_context(|| format!("cannot resolve {}", self.dir.display()))?;
        let mut files = vec![CERT_FILE, KEY_FILE];
        write_public(&dir.join(CERT_FILE), &cert.certificate_pem)?;
        credentials::write_private_file(&dir.join(KEY_FILE), pending.private_key_pem.as_bytes())
            .with_context(|| format!("cannot write {}", dir.join(KEY_FILE).display()))?;
        if let Some(ca) = &cert.root_ca_pem {
            write_public(&dir.join(CA_FILE), ca)?;
            files.push(CA_FILE);
        }
        let endpoint = cert
            .endpoint
            .clone()
            .or_else(|| fallback_endpoint.map(str::to_string));
        write_public(
            &dir.join(DEVICE_FILE),
            &device_yaml(device_id, &dir, cert, endpoint.as_deref()),
        )?;
        files.push(DEVICE_FILE);
        Ok(Provisioned {
            certificate_id: cert.certificate_id.clone(),
            dir,
            files,
            endpoint,
        })
    }
}

/// Generates a key pair here, sends only its CSR, and writes the files.
pub async fn provision(
    client: &Client,
    device_id: &str,
    dir: &CertDir,
    fallback_endpoint: Option<&str>,
) -> anyhow::Result<Provisioned> {
    let pending = credentials::key_and_csr(device_id)
        .with_context(|| format!("cannot generate a key pair for {device_id}"))?;
    let request = CertificateRequest {
        csr_pem: Some(pending.csr_pem.clone()),
    };
    let cert = client.issue_certificate(device_id, &request).await?;
    if cert.private_key_pem.is_some() {
        bail!("the API answered a CSR with a private key of its own: refusing to use it");
    }
    dir.write(device_id, &pending, &cert, fallback_endpoint)
}

/// `mir device cert TARGET`: a new certificate (and key) for one existing device.
pub(super) async fn cert(
    client: &Client,
    a: DeviceCertArgs,
    fallback_endpoint: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let targets = input::targets(&a.targets)?;
    let devices = resolve(client, &targets).await?;
    let device = match devices.as_slice() {
        [one] => one,
        [] => bail!("{}", super::no_device(&targets)),
        many => bail!(
            "{} devices match; `mir device cert` issues a certificate for one device",
            many.len()
        ),
    };
    let dir = CertDir::new(&a.cert_dir);
    dir.check(a.force)?;
    let done = provision(client, &device.spec.device_id, &dir, fallback_endpoint).await?;
    out(&summary(&done))?;
    Ok(ExitCode::SUCCESS)
}

/// `certificate <id> written to <dir>: tls.crt, ...` and where the device connects.
pub fn summary(p: &Provisioned) -> String {
    let mut text = format!(
        "certificate {} written to {}: {}\n",
        p.certificate_id,
        p.dir.display(),
        p.files.join(", ")
    );
    match &p.endpoint {
        Some(e) => text.push_str(&format!(
            "the device connects to {e} with {}\n",
            p.dir.join(DEVICE_FILE).display()
        )),
        None => text.push_str(&format!(
            "the API did not say where devices connect: set mir.target in {}\n",
            p.dir.join(DEVICE_FILE).display()
        )),
    }
    text
}

/// The SDK's `device.yaml` for these credentials (absolute paths).
fn device_yaml(
    device_id: &str,
    dir: &Path,
    cert: &DeviceCertificate,
    endpoint: Option<&str>,
) -> String {
    let on_aws = cert.root_ca_pem.as_deref() == Some(mir_proto::aws::AMAZON_ROOT_CA_1);
    let quote = |p: &Path| serde_json::Value::String(p.display().to_string()).to_string();
    let mut text = format!(
        "# Written by `mir` for device {device_id} (certificate {}).\n\
         # The private key was generated on this machine and never sent anywhere.\n\
         mir:\n  profile: {}\n",
        cert.certificate_id,
        if on_aws { "aws" } else { "local" }
    );
    match endpoint {
        Some(e) => text.push_str(&format!(
            "  target: {}\n",
            serde_json::Value::String(e.to_string())
        )),
        None => text.push_str("  # target: mqtts://HOST:8883\n"),
    }
    text.push_str(&format!(
        "  tlsCert: {}\n  tlsKey: {}\n",
        quote(&dir.join(CERT_FILE)),
        quote(&dir.join(KEY_FILE))
    ));
    if cert.root_ca_pem.is_some() {
        text.push_str(&format!("  rootCA: {}\n", quote(&dir.join(CA_FILE))));
    }
    text.push_str(&format!("  device:\n    id: {device_id}\n"));
    text
}

fn write_public(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued(ca: &str, endpoint: Option<&str>) -> DeviceCertificate {
        DeviceCertificate {
            certificate_id: "c1".into(),
            certificate_pem: "CERT".into(),
            private_key_pem: None,
            root_ca_pem: Some(ca.into()),
            endpoint: endpoint.map(str::to_string),
        }
    }

    #[test]
    fn the_files_keep_the_key_private_and_refuse_to_be_overwritten() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = CertDir::new(tmp.path());
        let pending = credentials::key_and_csr("d1").expect("csr");
        let done = dir
            .write(
                "d1",
                &pending,
                &issued("CA", Some("mqtts://127.0.0.1:8883")),
                None,
            )
            .expect("write");
        assert_eq!(done.files, [CERT_FILE, KEY_FILE, CA_FILE, DEVICE_FILE]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(tmp.path().join(KEY_FILE))
                .expect("key")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let e = dir.check(false).expect_err("exists");
        assert!(e.to_string().contains("already exists: use --force"), "{e}");
        dir.check(true).expect("forced");
    }

    #[test]
    fn device_yaml_points_the_sdk_at_the_endpoint_and_the_files() {
        let dir = Path::new("/certs/d1");
        let text = device_yaml(
            "d1",
            dir,
            &issued("CA", Some("mqtts://127.0.0.1:8883")),
            Some("mqtts://127.0.0.1:8883"),
        );
        let v: serde_yaml::Value = serde_yaml::from_str(&text).expect("yaml");
        assert_eq!(v["mir"]["profile"], "local");
        assert_eq!(v["mir"]["target"], "mqtts://127.0.0.1:8883");
        assert_eq!(v["mir"]["tlsKey"], "/certs/d1/tls.key");
        assert_eq!(v["mir"]["rootCA"], "/certs/d1/ca.crt");
        assert_eq!(v["mir"]["device"]["id"], "d1");

        let aws = device_yaml(
            "d1",
            dir,
            &issued(mir_proto::aws::AMAZON_ROOT_CA_1, None),
            None,
        );
        let v: serde_yaml::Value = serde_yaml::from_str(&aws).expect("yaml");
        assert_eq!(v["mir"]["profile"], "aws");
        assert!(v["mir"].get("target").is_none(), "{aws}");
        assert!(aws.contains("# target: mqtts://HOST:8883"), "{aws}");
    }
}
