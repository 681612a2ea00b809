//! The rustls configuration of the mTLS listener.

use std::{io::BufReader, sync::Arc};

use rustls::{
    pki_types::{CertificateDer, PrivateKeyDer},
    server::WebPkiClientVerifier,
    RootCertStore, ServerConfig,
};
use tokio_rustls::TlsAcceptor;

use crate::{BrokerError, ClientCertificate, TlsListenerConfig};

/// Builds the acceptor: the server certificate, and client certificates required and
/// verified against `client_ca_pem`.
///
/// The ring provider is named explicitly: with both ring and aws-lc-rs compiled in
/// (rumqttc brings the latter), rustls cannot pick a process default.
pub(crate) fn acceptor(cfg: &TlsListenerConfig) -> Result<TlsAcceptor, BrokerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certs(&cfg.server_cert_chain_pem, "server certificate")?;
    let key = private_key(&cfg.server_key_pem)?;
    let mut roots = RootCertStore::empty();
    for ca in certs(&cfg.client_ca_pem, "client CA")? {
        roots.add(ca)?;
    }
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

pub(crate) fn certs(
    pem: &str,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, BrokerError> {
    let certs = rustls_pemfile::certs(&mut BufReader::new(pem.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| BrokerError::Pem { what, source })?;
    if certs.is_empty() {
        return Err(BrokerError::EmptyPem(what));
    }
    Ok(certs)
}

fn private_key(pem: &str) -> Result<PrivateKeyDer<'static>, BrokerError> {
    rustls_pemfile::private_key(&mut BufReader::new(pem.as_bytes()))
        .map_err(|source| BrokerError::Pem {
            what: "server key",
            source,
        })?
        .ok_or(BrokerError::EmptyPem("server key"))
}

/// What the hub learns of a client certificate: its id (SHA-256 of the DER, as
/// [`crate::ca::IssuedCert::certificate_id`]), serial number and common name.
pub(crate) fn client_certificate(der: &CertificateDer<'_>) -> ClientCertificate {
    let digest = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
    let parsed = x509_parser::parse_x509_certificate(der.as_ref()).ok();
    let serial_hex = parsed
        .as_ref()
        .map(|(_, c)| {
            let raw = c.tbs_certificate.raw_serial();
            let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
            crate::ca::hex(&raw[start..])
        })
        .unwrap_or_default();
    let common_name = parsed.as_ref().and_then(|(_, c)| {
        c.subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string)
    });
    ClientCertificate {
        certificate_id: crate::ca::hex(digest.as_ref()),
        serial_hex,
        common_name,
    }
}
