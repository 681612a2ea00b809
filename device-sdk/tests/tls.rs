//! mTLS (rustls, client certificate) against the embedded broker and its local CA, and
//! server-only TLS; the SDK does the TLS itself on its own socket (see `keepalive.rs`).

mod support;

use std::{sync::Arc, time::Duration};

use mir_broker::{ca::LocalCa, Broker, BrokerConfig, Hooks, TlsListenerConfig};
use mir_device_sdk::{Credentials, Mir, SdkError};
use mir_proto::{
    examples::weather::{ActivateHvacCmd, ActivateHvacResp, Env, DESCRIPTOR_SET},
    wire::{CommandRequest, CommandResponse, CommandResponseStatus},
    DeviceId,
};
use support::{launch, launch_connected, Recorder};

struct TlsBroker {
    broker: Broker,
    recorder: Arc<Recorder>,
    ca: LocalCa,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn tls_broker() -> TlsBroker {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = LocalCa::load_or_create(dir.path()).expect("ca");
    let server = ca.issue_server_cert(&[]).expect("server cert");
    let config = BrokerConfig {
        tls: Some(TlsListenerConfig {
            addr: "127.0.0.1:0".parse().expect("addr"),
            server_cert_chain_pem: server.cert_pem,
            server_key_pem: server.private_key_pem.expect("key"),
            client_ca_pem: ca.ca_cert_pem().to_string(),
        }),
        ..Default::default()
    };
    let recorder = Arc::new(Recorder::default());
    let hooks: Arc<dyn Hooks> = recorder.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let broker = Broker::start(config, hooks, async move {
        let _ = stopped.await;
    })
    .await
    .expect("broker");
    TlsBroker {
        broker,
        recorder,
        ca,
        _dir: dir,
        _stop: stop,
    }
}

fn device(b: &TlsBroker, id: &str, cert_for: &str) -> Mir {
    let issued =
        b.ca.issue_device_cert(&DeviceId::new(cert_for).expect("id"))
            .expect("device cert");
    let port = b.broker.tls_addr().expect("tls listener").port();
    Mir::builder()
        .device_id(id)
        .target(format!("mqtts://localhost:{port}"))
        .schema(DESCRIPTOR_SET)
        .memory_only()
        .credentials(Credentials {
            client_cert_pem: issued.cert_pem.into_bytes(),
            client_key_pem: issued.private_key_pem.expect("key").into_bytes(),
            ca_pem: Some(b.ca.ca_cert_pem().as_bytes().to_vec()),
        })
        .build()
        .expect("build")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_with_its_certificate_connects_over_mutual_tls() {
    let b = tls_broker().await;
    let dev = launch_connected(device(&b, "weather-tls", "weather-tls")).await;
    b.recorder.wait_on("mir/weather-tls/hello", 1).await;
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_of_another_device_is_refused() {
    let b = tls_broker().await;
    let dev = launch(device(&b, "weather-a", "weather-b")).await;
    assert!(matches!(
        dev.mir.wait_connected(Duration::from_millis(1500)).await,
        Err(SdkError::ConnectTimeout(_))
    ));
    assert!(b.recorder.on("mir/weather-a/hello").is_empty());
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_made_on_the_device_and_a_signed_csr_connect_from_the_default_file_names() {
    let b = tls_broker().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // The key never leaves `dir`; only the CSR goes to the CA.
    let csr = mir_device_sdk::credentials::generate_csr("weather-csr", dir.path()).expect("csr");
    let issued =
        b.ca.sign_csr(&DeviceId::new("weather-csr").expect("id"), &csr)
            .expect("signed");
    assert!(issued.private_key_pem.is_none());
    mir_device_sdk::credentials::install_certificate(dir.path(), issued.cert_pem.as_bytes())
        .expect("installed");
    std::fs::write(dir.path().join("ca.crt"), b.ca.ca_cert_pem()).expect("write");
    let port = b.broker.tls_addr().expect("tls listener").port();
    // No credentials given: tls.crt, tls.key and ca.crt are found in the search path.
    let mir = Mir::builder()
        .device_id("weather-csr")
        .target(format!("mqtts://localhost:{port}"))
        .schema(DESCRIPTOR_SET)
        .memory_only()
        .credentials_search_dirs(vec![dir.path().to_path_buf()])
        .env_vars(Vec::<(String, String)>::new())
        .build()
        .expect("build");
    let dev = launch_connected(mir).await;
    b.recorder.wait_on("mir/weather-csr/hello", 1).await;
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_only_tls_with_a_private_root_ca_connects() {
    // A private CA signs the server's certificate; the device has no certificate of
    // its own, only ca.crt.
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = LocalCa::load_or_create(dir.path()).expect("ca");
    let server = ca.issue_server_cert(&[]).expect("server cert");
    let broker = support::TestBroker::start().await;
    let front = support::net::ServerOnlyTls::start(
        &server.cert_pem,
        server.private_key_pem.as_deref().expect("key"),
        broker.addr,
    )
    .await;
    let creds = tempfile::tempdir().expect("tempdir");
    std::fs::write(creds.path().join("ca.crt"), ca.ca_cert_pem()).expect("write");
    let mir = Mir::builder()
        .device_id("server-only")
        .target(format!("mqtts://localhost:{}", front.addr.port()))
        .schema(DESCRIPTOR_SET)
        .memory_only()
        .credentials_search_dirs(vec![creds.path().to_path_buf()])
        .env_vars(Vec::<(String, String)>::new())
        .build()
        .expect("build");
    let dev = launch_connected(mir).await;
    broker.recorder.wait_on("mir/server-only/hello", 1).await;
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_files_replaced_while_running_are_used_by_the_next_connection() {
    let b = tls_broker().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |cert_for: &str| {
        let issued =
            b.ca.issue_device_cert(&DeviceId::new(cert_for).expect("id"))
                .expect("device cert");
        std::fs::write(dir.path().join("tls.crt"), issued.cert_pem).expect("write");
        std::fs::write(
            dir.path().join("tls.key"),
            issued.private_key_pem.expect("key"),
        )
        .expect("write");
    };
    // The files hold another device's certificate: every attempt is refused.
    write("someone-else");
    std::fs::write(dir.path().join("ca.crt"), b.ca.ca_cert_pem()).expect("write");
    let port = b.broker.tls_addr().expect("tls listener").port();
    let mir = Mir::builder()
        .device_id("rotated")
        .target(format!("mqtts://localhost:{port}"))
        .schema(DESCRIPTOR_SET)
        .memory_only()
        .connect_interval(Duration::from_millis(100))
        .backoff(Duration::from_millis(50), Duration::from_millis(200))
        .credentials_search_dirs(vec![dir.path().to_path_buf()])
        .env_vars(Vec::<(String, String)>::new())
        .build()
        .expect("build");
    let dev = launch(mir).await;
    dev.mir
        .wait_for_status(support::WAIT, |s| {
            s.link_issue == Some(mir_device_sdk::LinkIssue::ConnectFailed)
        })
        .await
        .expect("refused with the wrong certificate");
    assert!(!dev.mir.is_connected());
    // The certificate is renewed on disk, without a restart.
    write("rotated");
    dev.mir
        .wait_connected(support::WAIT)
        .await
        .expect("the next connection uses the new files");
    b.recorder.wait_on("mir/rotated/hello", 1).await;
    dev.stop().await;
}

// ---- TLS done by the SDK itself (tokio-rustls on its own TCP keepalive socket) ----

fn hvac_command(id: &str) -> Vec<u8> {
    use prost::{Message, Name};
    CommandRequest {
        id: id.into(),
        name: ActivateHvacCmd::full_name(),
        payload: ActivateHvacCmd { duration_sec: 5 }.encode_to_vec().into(),
        deadline_unix_ms: 0,
    }
    .encode_to_vec()
}

/// `mir` publishes a telemetry record and answers a command sent by `publish`.
async fn publishes_and_answers_a_command(
    mir: &Mir,
    recorder: &Recorder,
    id: &str,
    publish: impl std::future::Future<Output = ()>,
) {
    use prost::Message;
    mir.send_telemetry(&Env {
        ts: 1,
        ..Default::default()
    })
    .await
    .expect("accepted");
    recorder.wait_on(&format!("mir/{id}/tlm"), 1).await;
    publish.await;
    let resp = recorder.wait_on(&format!("mir/{id}/cmd/resp"), 1).await;
    let resp = CommandResponse::decode(resp[0].clone()).expect("response");
    assert_eq!(
        resp.status,
        CommandResponseStatus::Success as i32,
        "{}",
        resp.error
    );
}

fn hvac_handler(mir: &Mir) {
    mir.handle_command(|_: ActivateHvacCmd| async move {
        Ok::<_, String>(ActivateHvacResp { success: true })
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_mutual_tls_a_device_publishes_and_answers_commands() {
    let b = tls_broker().await;
    let mir = device(&b, "mtls-cmd", "mtls-cmd");
    hvac_handler(&mir);
    let dev = launch_connected(mir).await;
    b.recorder.wait_on("mir/mtls-cmd/hello", 1).await;
    let handle = b.broker.handle();
    let publish = async move {
        handle
            .publish(
                "mir/mtls-cmd/cmd/req",
                hvac_command("c1").into(),
                mir_broker::QoS::AtLeastOnce,
            )
            .await
            .expect("publish");
    };
    publishes_and_answers_a_command(&dev.mir, &b.recorder, "mtls-cmd", publish).await;
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_server_only_tls_a_device_publishes_and_answers_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = LocalCa::load_or_create(dir.path()).expect("ca");
    let server = ca.issue_server_cert(&[]).expect("server cert");
    let broker = support::TestBroker::start().await;
    let front = support::net::ServerOnlyTls::start(
        &server.cert_pem,
        server.private_key_pem.as_deref().expect("key"),
        broker.addr,
    )
    .await;
    let creds = tempfile::tempdir().expect("tempdir");
    std::fs::write(creds.path().join("ca.crt"), ca.ca_cert_pem()).expect("write");
    let mir = Mir::builder()
        .device_id("tls-cmd")
        .target(format!("mqtts://localhost:{}", front.addr.port()))
        .schema(DESCRIPTOR_SET)
        .memory_only()
        .credentials_search_dirs(vec![creds.path().to_path_buf()])
        .env_vars(Vec::<(String, String)>::new())
        .build()
        .expect("build");
    hvac_handler(&mir);
    let dev = launch_connected(mir).await;
    broker.recorder.wait_on("mir/tls-cmd/hello", 1).await;
    let publish = broker.publish("mir/tls-cmd/cmd/req", hvac_command("c1"));
    publishes_and_answers_a_command(&dev.mir, &broker.recorder, "tls-cmd", publish).await;
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_the_device_does_not_trust_is_a_failed_connect_retried_with_backoff() {
    let b = tls_broker().await;
    let other = tempfile::tempdir().expect("tempdir");
    let other_ca = LocalCa::load_or_create(other.path()).expect("ca");
    let issued =
        b.ca.issue_device_cert(&DeviceId::new("untrusting").expect("id"))
            .expect("device cert");
    let port = b.broker.tls_addr().expect("tls listener").port();
    let mir = Mir::builder()
        .device_id("untrusting")
        .target(format!("mqtts://localhost:{port}"))
        .schema(DESCRIPTOR_SET)
        .memory_only()
        .credentials(Credentials {
            client_cert_pem: issued.cert_pem.into_bytes(),
            client_key_pem: issued.private_key_pem.expect("key").into_bytes(),
            ca_pem: Some(other_ca.ca_cert_pem().as_bytes().to_vec()),
        })
        .env_vars(Vec::<(String, String)>::new())
        .build()
        .expect("build");
    let dev = launch(mir).await;
    dev.mir
        .wait_for_status(support::WAIT, |s| {
            s.link_issue == Some(mir_device_sdk::LinkIssue::ConnectFailed)
        })
        .await
        .expect("a failed connect");
    let status = dev.mir.status();
    assert!(!status.connected);
    assert!(status.retry_in.is_some(), "a retry is planned");
    assert!(b.recorder.on("mir/untrusting/hello").is_empty());
    dev.stop().await;
}
