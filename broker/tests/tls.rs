//! The mTLS listener: certificates from the hub's CA, CN = client id.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use mir_broker::{DisconnectReason, QoS};
use mir_proto::DeviceId;
use rumqttc::{ConnectReturnCode, ConnectionError, QoS as Q};
use rustls::AlertDescription;
use support::*;

fn id(s: &str) -> DeviceId {
    DeviceId::new(s).unwrap()
}

#[tokio::test]
async fn a_device_with_a_certificate_from_the_hub_ca_is_accepted() {
    let pki = Pki::new();
    let b = broker().tls_only(pki.listener()).start().await;
    let addr = b.tls.unwrap();
    let (o, _) = pki.device_opts("dev-1", addr);
    let (mut d, _) = Device::connect(o).await;
    b.hooks.wait_connects("dev-1", 1).await;
    let info = &b.hooks.connects("dev-1")[0];
    assert!(info.tls);
    assert_eq!(info.cert_common_name.as_deref(), Some("dev-1"));

    d.subscribe(&[("mir/dev-1/cfg/desired", Q::AtLeastOnce)])
        .await;
    d.client
        .publish("mir/dev-1/hb", Q::AtLeastOnce, false, b"hb".to_vec())
        .await
        .unwrap();
    b.hooks
        .wait_until("the heartbeat", |_| b.hooks.publish_count() == 1)
        .await;
    b.handle
        .publish(
            "mir/dev-1/cfg/desired",
            Bytes::from_static(b"d"),
            QoS::AtLeastOnce,
        )
        .await
        .unwrap();
    assert_eq!(&d.next_publish(WAIT).await.unwrap().payload[..], b"d");
}

#[tokio::test]
async fn a_device_without_a_certificate_is_refused() {
    let pki = Pki::new();
    let b = broker().tls_only(pki.listener()).start().await;
    let o = tls_opts("dev-1", b.tls.unwrap(), pki.ca.ca_cert_pem(), None);
    let mut d = Device::start(o);
    // The broker ends the handshake: a client certificate is required.
    match d.connack().await {
        Err(e) => assert_eq!(
            tls_alert(&e),
            Some(AlertDescription::CertificateRequired),
            "{e:?}"
        ),
        Ok(present) => panic!("accepted without a certificate (session_present {present})"),
    }
    assert!(b.hooks.events().is_empty());
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let pki = Pki::new();
    let other = Pki::new();
    let b = broker().tls_only(pki.listener()).start().await;
    let cert = other.ca.issue_device_cert(&id("dev-1")).unwrap();
    let key = cert.private_key_pem.clone().unwrap();
    let o = tls_opts(
        "dev-1",
        b.tls.unwrap(),
        pki.ca.ca_cert_pem(),
        Some((&cert.cert_pem, &key)),
    );
    let mut d = Device::start(o);
    // The broker ends the handshake: every local CA is named "Mir local CA", so the
    // certificate's issuer is found by name and its signature fails (bad signature is
    // rustls's decrypt_error alert).
    match d.connack().await {
        Err(e) => assert_eq!(tls_alert(&e), Some(AlertDescription::DecryptError), "{e:?}"),
        Ok(present) => panic!("accepted a foreign certificate (session_present {present})"),
    }
    assert!(b.hooks.events().is_empty());
}

#[tokio::test]
async fn a_certificate_for_another_device_is_not_authorized() {
    let pki = Pki::new();
    let b = broker().tls_only(pki.listener()).start().await;
    let cert = pki.ca.issue_device_cert(&id("dev-2")).unwrap();
    let key = cert.private_key_pem.clone().unwrap();
    let o = tls_opts(
        "dev-1",
        b.tls.unwrap(),
        pki.ca.ca_cert_pem(),
        Some((&cert.cert_pem, &key)),
    );
    // The handshake succeeds (a valid certificate of the hub's CA); the CONNECT is refused
    // because its client id is not the certificate's common name.
    let mut d = Device::start(o);
    match d.connack().await {
        Err(ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized)) => {}
        other => panic!("expected not authorized, got {other:?}"),
    }
    assert!(b.hooks.events().is_empty());
    // The same certificate connects as the device it names.
    let o = tls_opts(
        "dev-2",
        b.tls.unwrap(),
        pki.ca.ca_cert_pem(),
        Some((&cert.cert_pem, &key)),
    );
    let (_d, _) = Device::connect(o).await;
    b.hooks.wait_connects("dev-2", 1).await;
    assert!(b.hooks.connects("dev-1").is_empty());
}

#[tokio::test]
async fn a_certificate_signed_from_a_csr_is_accepted() {
    let pki = Pki::new();
    let b = broker().tls(pki.listener()).start().await;
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    let cert = pki.ca.sign_csr(&id("dev-9"), &csr).unwrap();
    assert!(cert.private_key_pem.is_none());
    let o = tls_opts(
        "dev-9",
        b.tls.unwrap(),
        pki.ca.ca_cert_pem(),
        Some((&cert.cert_pem, &key.serialize_pem())),
    );
    let (d, _) = Device::connect(o).await;
    d.client.disconnect().await.unwrap();
    b.hooks
        .wait_disconnect("dev-9", DisconnectReason::ClientInitiated)
        .await;
    // The plain listener runs beside it.
    let (_d, _) = Device::connect(opts("dev-8", b.addr())).await;
}
