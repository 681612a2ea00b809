//! rustls client configuration (ring provider, no OpenSSL): X.509 client certificate,
//! the given root CA or the Mozilla roots (which include Amazon's), and ALPN
//! `x-amzn-mqtt-ca` for AWS IoT on port 443.

use std::sync::Arc;

use rustls::{
    pki_types::{CertificateDer, PrivateKeyDer},
    ClientConfig, RootCertStore,
};

use crate::{config::Credentials, BuildError};

/// ALPN protocol AWS IoT Core needs for MQTT with client certificates on port 443.
pub const AWS_IOT_ALPN: &[u8] = b"x-amzn-mqtt-ca";

/// The client configuration: `ca` (PEM) as the only root, else the Mozilla roots; the
/// client certificate of `credentials` if given (else server-only TLS).
pub(crate) fn client_config(
    credentials: Option<&Credentials>,
    ca: Option<&[u8]>,
    port: u16,
) -> Result<Arc<ClientConfig>, BuildError> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(ca) => {
            for cert in parse_certs("CA certificate", ca)? {
                roots.add(cert)?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match credentials {
        Some(c) => {
            let certs = parse_certs("client certificate", &c.client_cert_pem)?;
            let key = parse_key(&c.client_key_pem)?;
            builder.with_client_auth_cert(certs, key)?
        }
        None => builder.with_no_client_auth(),
    };
    if port == 443 {
        config.alpn_protocols = vec![AWS_IOT_ALPN.to_vec()];
    }
    Ok(Arc::new(config))
}

fn parse_certs(what: &'static str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, BuildError> {
    let certs = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| BuildError::InvalidPem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(BuildError::InvalidPem {
            what,
            reason: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

fn parse_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, BuildError> {
    rustls_pemfile::private_key(&mut &pem[..])
        .map_err(|e| BuildError::InvalidPem {
            what: "client key",
            reason: e.to_string(),
        })?
        .ok_or_else(|| BuildError::InvalidPem {
            what: "client key",
            reason: "no PRIVATE KEY block (PKCS#8, PKCS#1 or SEC1) found".into(),
        })
}
