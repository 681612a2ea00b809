//! Provisioning from the CLI: the key is generated on the operator's machine, only a
//! CSR goes to the API, and the files written are all a device needs to connect over
//! mutual TLS.

use std::time::Duration;

use mir_device_sdk::Mir;
use mir_proto::examples::weather::DESCRIPTOR_SET;

use super::support::*;

/// Starts an SDK device from nothing but a `device.yaml`, and waits for its connection.
async fn device_from_file(path: &std::path::Path) -> (Mir, tokio::sync::watch::Sender<bool>) {
    let mir = Mir::builder()
        .config_file(path)
        .schema(DESCRIPTOR_SET)
        // The queue in memory: the SDK's default is on disk, shared across runs.
        .memory_only()
        .build()
        .unwrap_or_else(|e| panic!("the written {} does not build: {e}", path.display()));
    let (stop, mut rx) = tokio::sync::watch::channel(false);
    mir.launch(async move {
        let _ = rx.wait_for(|s| *s).await;
    })
    .await
    .unwrap();
    mir.wait_connected(Duration::from_secs(15))
        .await
        .unwrap_or_else(|e| panic!("the device did not connect with {}: {e}", path.display()));
    (mir, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_provisioned_device_connects_over_mtls_with_the_written_files_and_no_key_leaves_the_machine(
) {
    let hub = hub();
    let proxy = hub.recording_proxy();
    let through_proxy = |args: &[&str]| hub.cli().cmd(args).api(&proxy.url()).run();
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path().join("secure-1");
    let dir_arg = dir.to_str().unwrap();

    // WHEN the operator creates the device with --provision
    let out = through_proxy(&[
        "device",
        "create",
        "--id",
        "secure-1",
        "--label",
        "site=lab",
        "--provision",
        "--cert-dir",
        dir_arg,
    ]);
    assert!(out.ok, "{out:?}");
    assert!(
        out.stdout.contains("tls.crt, tls.key, ca.crt, device.yaml"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("the device connects to {}", hub.mqtts())),
        "{}",
        out.stdout
    );

    // THEN the key stayed here: the API got a CSR and never a private key, either way.
    let requests = proxy.sent();
    assert!(
        requests.contains("BEGIN CERTIFICATE REQUEST"),
        "no CSR was sent:\n{requests}"
    );
    assert!(
        !requests.contains("PRIVATE KEY"),
        "a private key was sent:\n{requests}"
    );
    let responses = proxy.received();
    assert!(
        !responses.contains("PRIVATE KEY"),
        "the API answered with a private key:\n{responses}"
    );
    let key = std::fs::read_to_string(dir.join("tls.key")).unwrap();
    assert!(key.contains("BEGIN PRIVATE KEY"), "{key}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("tls.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "tls.key must be private");
    }
    let yaml = std::fs::read_to_string(dir.join("device.yaml")).unwrap();
    assert!(
        yaml.contains(&format!("target: \"{}\"", hub.mqtts())),
        "{yaml}"
    );

    // AND the SDK connects over mTLS with nothing but the written device.yaml.
    let (mir, stop) = device_from_file(&dir.join("device.yaml")).await;
    assert_eq!(mir.device_id().as_str(), "secure-1");
    eventually(Duration::from_secs(10), "online over mTLS", || {
        hub.twin("secure-1/default")["status"]["online"] == true
    })
    .await;
    let listed = hub.json(&["device", "ls", "--label", "site=lab"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let _ = stop.send(true);

    // WHEN the operator rotates the certificate into the same folder: refused without
    // --force, nothing overwritten.
    let again = through_proxy(&["device", "cert", "secure-1", "--cert-dir", dir_arg]);
    assert_eq!(again.code, Some(1), "{again:?}");
    assert!(
        again.stderr.contains("already exists: use --force"),
        "{}",
        again.stderr
    );
    assert_eq!(std::fs::read_to_string(dir.join("tls.key")).unwrap(), key);

    // AND with --force (and the --target flag, as in Mir): a new key and certificate
    // that connect too, again with no key on the wire.
    let rotated = through_proxy(&[
        "device",
        "cert",
        "--target",
        "secure-1/default",
        "--cert-dir",
        dir_arg,
        "--force",
    ]);
    assert!(rotated.ok, "{rotated:?}");
    let new_key = std::fs::read_to_string(dir.join("tls.key")).unwrap();
    assert_ne!(new_key, key, "rotation must generate a new key");
    assert!(!proxy.sent().contains("PRIVATE KEY"));
    assert!(!proxy.received().contains("PRIVATE KEY"));
    assert_eq!(proxy.sent().matches("BEGIN CERTIFICATE REQUEST").count(), 2);
    let (mir, stop) = device_from_file(&dir.join("device.yaml")).await;

    // WHEN another process claims secure-1 on the plain port: refused (CONNACK 5), and
    // the device keeps its mTLS connection.
    assert_eq!(
        plain_connack(&hub, "secure-1").await,
        Some(rumqttc_ring::ConnectReturnCode::NotAuthorized)
    );
    assert!(mir.status().connected, "the real device was not taken over");
    assert_eq!(
        plain_connack(&hub, "no-certificate-1").await,
        Some(rumqttc_ring::ConnectReturnCode::Success),
        "a device without a certificate still connects on the plain port"
    );

    // WHEN the operator deletes the device: it is disconnected, and its certificate is
    // refused from then on.
    let deleted = hub.mir(&["device", "delete", "secure-1"]);
    assert!(deleted.ok, "{deleted:?}");
    eventually(
        Duration::from_secs(15),
        "the deleted device cut off",
        || !mir.status().connected,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!mir.status().connected, "its certificate connected again");
    let _ = stop.send(true);
}

/// The CONNACK answer to a CONNECT as `client_id` on the hub's plain port.
async fn plain_connack(hub: &TestHub, client_id: &str) -> Option<rumqttc_ring::ConnectReturnCode> {
    use rumqttc_ring::{AsyncClient, ConnectionError, Event, MqttOptions, Packet};
    let addr = hub.mqtt_addr();
    let opts = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    let (_client, mut events) = AsyncClient::new(opts, 10);
    for _ in 0..10 {
        match tokio::time::timeout(Duration::from_secs(5), events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => return Some(ack.code),
            Ok(Err(ConnectionError::ConnectionRefused(code))) => return Some(code),
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => return None,
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_an_unknown_device_is_refused_and_writes_nothing() {
    let hub = hub();
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path().join("ghost");
    let out = hub.mir(&[
        "device",
        "cert",
        "ghost",
        "--cert-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("no device matches ghost"),
        "{}",
        out.stderr
    );
    assert!(
        !dir.exists(),
        "nothing may be written for an unknown device"
    );
}
