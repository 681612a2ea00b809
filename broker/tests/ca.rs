//! The hub's local certificate authority.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mir_broker::ca::{CaError, LocalCa};
use mir_proto::DeviceId;
use rcgen::PublicKeyData;
use x509_parser::{extensions::ParsedExtension, pem::parse_x509_pem};

fn id(s: &str) -> DeviceId {
    DeviceId::new(s).unwrap()
}

fn parse(pem: &str) -> (String, Vec<u8>) {
    let (_, pem) = parse_x509_pem(pem.as_bytes()).unwrap();
    let cert = pem.parse_x509().unwrap();
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    (cn, pem.contents.clone())
}

fn sha256_hex(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn load_or_create_reuses_the_files_it_created() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("nested/ca");
    let first = LocalCa::load_or_create(&ca_dir).unwrap();
    let second = LocalCa::load_or_create(&ca_dir).unwrap();
    assert_eq!(first.ca_cert_pem(), second.ca_cert_pem());
    assert_eq!(
        std::fs::read_to_string(ca_dir.join("ca.crt")).unwrap(),
        first.ca_cert_pem()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(ca_dir.join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // A certificate issued by the reloaded CA chains to the same CA certificate.
    let cert = second.issue_device_cert(&id("dev-1")).unwrap();
    let (cn, der) = parse(&cert.cert_pem);
    assert_eq!(cn, "dev-1");
    assert_eq!(cert.certificate_id, sha256_hex(&der));
    assert!(cert.private_key_pem.unwrap().contains("PRIVATE KEY"));
}

#[test]
fn a_half_present_ca_is_an_error_not_a_new_ca() {
    let dir = tempfile::tempdir().unwrap();
    LocalCa::load_or_create(dir.path()).unwrap();
    std::fs::remove_file(dir.path().join("ca.key")).unwrap();
    assert!(matches!(
        LocalCa::load_or_create(dir.path()),
        Err(CaError::Incomplete { .. })
    ));
}

#[test]
fn a_key_of_another_ca_is_detected() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    LocalCa::load_or_create(a.path()).unwrap();
    LocalCa::load_or_create(b.path()).unwrap();
    std::fs::copy(b.path().join("ca.key"), a.path().join("ca.key")).unwrap();
    assert!(matches!(
        LocalCa::load_or_create(a.path()),
        Err(CaError::KeyMismatch { .. })
    ));
}

#[test]
fn sign_csr_forces_the_common_name_to_the_device_id() {
    let dir = tempfile::tempdir().unwrap();
    let ca = LocalCa::load_or_create(dir.path()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["evil.example".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "someone-else");
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();

    let cert = ca.sign_csr(&id("dev-1"), &csr).unwrap();
    assert!(cert.private_key_pem.is_none());
    let (_, pem) = parse_x509_pem(cert.cert_pem.as_bytes()).unwrap();
    let x509 = pem.parse_x509().unwrap();
    let cns: Vec<&str> = x509
        .subject()
        .iter_common_name()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(cns, vec!["dev-1"]);
    assert_eq!(
        x509.public_key().raw,
        key.subject_public_key_info().as_slice()
    );
    let mut client_auth = false;
    for ext in x509.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(_) => {
                panic!("no SAN may be copied from the CSR")
            }
            ParsedExtension::ExtendedKeyUsage(eku) => {
                client_auth = eku.client_auth && !eku.server_auth
            }
            _ => {}
        }
    }
    assert!(client_auth, "client authentication only");
    assert_eq!(cert.certificate_id, sha256_hex(&pem.contents));
    assert!(matches!(
        ca.sign_csr(&id("dev-1"), "not a csr"),
        Err(CaError::InvalidCsr(_))
    ));
}

#[test]
fn the_server_certificate_names_localhost_and_the_given_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let ca = LocalCa::load_or_create(dir.path()).unwrap();
    let cert = ca
        .issue_server_cert(&["hub.local".to_string(), "localhost".to_string()])
        .unwrap();
    let (_, pem) = parse_x509_pem(cert.cert_pem.as_bytes()).unwrap();
    let x509 = pem.parse_x509().unwrap();
    let san = x509.subject_alternative_name().unwrap().unwrap().value;
    let names: Vec<String> = san.general_names.iter().map(|n| n.to_string()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names.iter().any(|n| n.contains("hub.local")));
    assert!(names.iter().any(|n| n.contains("localhost")));
    assert!(san.general_names.iter().any(|n| matches!(
        n,
        x509_parser::extensions::GeneralName::IPAddress(ip) if *ip == [127, 0, 0, 1]
    )));
}
