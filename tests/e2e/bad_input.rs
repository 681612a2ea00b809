//! Bad input against the running hub: each is refused with a clear error, nothing
//! panics, and no stored data is lost or touched.

use std::{sync::Arc, time::Duration};

use rumqttc_ring::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};

use crate::support::*;

/// A raw MQTT client: connects as `client_id`, publishes once, and reports whether the
/// broker then closed the connection.
async fn raw_publish(hub: &LocalHub, client_id: &str, topic: &str, payload: Vec<u8>) -> bool {
    let (host, port) = hub.mqtt_addr();
    let mut opts = MqttOptions::new(client_id, host, port);
    opts.set_max_packet_size(1024 * 1024, 1024 * 1024);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut el) = AsyncClient::new(opts, 10);
    let topic = topic.to_string();
    tokio::spawn(async move {
        let _ = client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await;
    });
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        let mut acked = false;
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => acked = true,
                Ok(_) if acked => return false,
                Ok(_) => {}
                Err(_) => return true,
            }
        }
    })
    .await;
    // Still connected after the PUBACK (or no answer at all within the time): not closed.
    outcome.unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_protobuf_is_dead_lettered_and_the_hub_keeps_working() {
    let hub = LocalHub::start();
    let dev = TestDevice::start(&hub, "victim", Behaviour::Succeed).await;
    eventually(10, "victim online", || {
        hub.twin("victim/default")["status"]["online"] == true
    })
    .await;
    let closed = raw_publish(
        &hub,
        "garbler",
        "mir/garbler/tlm",
        vec![0xff, 0x01, 0x02, 0xff],
    )
    .await;
    assert!(
        !closed,
        "a malformed payload on its own topic is accepted by the broker"
    );
    eventually(10, "dead letter written", || {
        hub.dead_letters().contains("malformed TelemetryBatch")
    })
    .await;
    let letter: Value = serde_json::from_str(hub.dead_letters().lines().next().unwrap()).unwrap();
    assert_eq!(letter["function"], "telemetry");
    assert!(
        letter["event"]["payload"].is_string(),
        "the original payload is kept: {letter}"
    );
    assert_eq!(hub.twin("victim/default")["status"]["online"], true);
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_device_publishing_on_another_devices_topic_is_cut_off_and_the_twin_is_untouched() {
    let hub = LocalHub::start();
    let dev = TestDevice::start(&hub, "victim", Behaviour::Succeed).await;
    eventually(10, "victim schema", || {
        hub.twin("victim/default")["status"]["schema"]["packageNames"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    })
    .await;
    let before = hub.twin("victim/default");
    let forged = mir_proto::wire::ReportedProperties {
        properties: vec![mir_proto::wire::PropertyValue {
            name: "schema.v1.DataRateStatus".into(),
            payload: vec![8, 99].into(),
            updated_at_ns: i64::MAX,
            version: 0,
        }],
    };
    let closed = raw_publish(
        &hub,
        "evil",
        "mir/victim/cfg/reported",
        prost::Message::encode_to_vec(&forged),
    )
    .await;
    assert!(
        closed,
        "the broker disconnects a client that breaks the policy"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = hub.twin("victim/default");
    assert_eq!(after["properties"], before["properties"]);
    assert!(after["properties"]["reported"]
        .get("schema.v1.DataRateStatus")
        .is_none());
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_payloads_are_refused_by_the_sdk_and_by_the_broker() {
    let hub = LocalHub::start();
    let dev = TestDevice::start(&hub, "big", Behaviour::Succeed).await;
    let huge = mir_proto::examples::weather::Env {
        station: "x".repeat(200 * 1024),
        ..Default::default()
    };
    let err = dev.mir.send_telemetry(&huge).unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");
    let closed = raw_publish(&hub, "bigraw", "mir/bigraw/tlm", vec![0u8; 200 * 1024]).await;
    assert!(
        closed,
        "the broker disconnects a client sending more than 128 KB"
    );
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_ids_unknown_messages_and_mismatched_json_get_clear_errors() {
    let hub = LocalHub::start();
    let out = hub.mir(&["device", "create", "--id", "bad id"]);
    assert!(!out.ok);
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("bad id"),
        "{out:?}"
    );

    let dev = TestDevice::start(&hub, "w1", Behaviour::Succeed).await;
    eventually(10, "schema", || {
        hub.mir(&["cmd", "send", "w1"])
            .stdout
            .contains("ActivateHVACCmd")
    })
    .await;
    let out = hub.mir(&[
        "cmd",
        "send",
        "w1/default",
        "-n",
        "schema.v1.Reboot",
        "-p",
        "{}",
    ]);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        !out.ok && text.contains("schema.v1.ActivateHVACCmd"),
        "lists the known commands: {text}"
    );
    let out = hub.mir(&[
        "cmd",
        "send",
        "w1/default",
        "-n",
        "schema.v1.ActivateHVACCmd",
        "-p",
        r#"{"durationSec": "soon"}"#,
    ]);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        !out.ok && text.contains("durationSec"),
        "names the field: {text}"
    );
    let out = hub.mir(&[
        "cfg",
        "send",
        "w1/default",
        "-n",
        "schema.v1.DataRateProp",
        "-p",
        r#"{"sec": true}"#,
    ]);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(!out.ok && text.contains("sec"), "names the field: {text}");
    let out = hub.mir(&[
        "cmd",
        "send",
        "w1/default",
        "-n",
        "schema.v1.ActivateHVACCmd",
        "-p",
        "{not json",
    ]);
    assert!(!out.ok);
    assert!(hub.twin("w1/default")["properties"]["desired"].is_null());

    // A raw client whose id is not a valid device id is refused at CONNECT.
    let (host, port) = hub.mqtt_addr();
    let (_c, mut el) = AsyncClient::new(MqttOptions::new("bad id", host, port), 10);
    let refused = tokio::time::timeout(Duration::from_secs(5), el.poll())
        .await
        .unwrap();
    assert!(
        refused.is_err()
            || !matches!(refused, Ok(Event::Incoming(Packet::ConnAck(ref c))) if c.code == rumqttc_ring::ConnectReturnCode::Success)
    );
    dev.stop().await;
    let _ = json!(null);
}

fn tls_client(ca_pem: &str, client: Option<(String, String)>) -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let certs = rustls_pemfile::certs(&mut cert.as_bytes())
                .map(|c| c.unwrap())
                .collect();
            let key = rustls_pemfile::private_key(&mut key.as_bytes())
                .unwrap()
                .unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        }
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Connects over TLS, sends an MQTT CONNECT and returns whether a CONNACK came back.
async fn tls_connack(hub: &LocalHub, connector: tokio_rustls::TlsConnector) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (host, port) = hub.mqtts_addr();
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let Ok(mut tls) = connector.connect(name, tcp).await else {
        return false;
    };
    // CONNECT, protocol level 4, clean session, keepalive 30, client id "dev1".
    let connect = [
        0x10, 16, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 30, 0, 4, b'd', b'e', b'v', b'1',
    ];
    if tls.write_all(&connect).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 4];
    matches!(tokio::time::timeout(Duration::from_secs(5), tls.read_exact(&mut buf)).await, Ok(Ok(_)) if buf[0] == 0x20 && buf[3] == 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_mtls_port_refuses_clients_without_a_certificate_from_the_hubs_ca() {
    let hub = LocalHub::start();
    let ca = hub.ca_pem();
    assert!(
        !tls_connack(&hub, tls_client(&ca, None)).await,
        "no client certificate"
    );
    let foreign = rcgen::generate_simple_self_signed(vec!["dev1".into()]).unwrap();
    let foreign = (foreign.cert.pem(), foreign.signing_key.serialize_pem());
    assert!(
        !tls_connack(&hub, tls_client(&ca, Some(foreign))).await,
        "certificate from another CA"
    );
    // A certificate the hub issued for dev1 is accepted.
    let out = hub.mir(&[
        "device",
        "create",
        "--id",
        "dev1",
        "--provision",
        "--cert-dir",
        hub.dir.path().to_str().unwrap(),
    ]);
    assert!(out.ok, "{out:?}");
    let cert = std::fs::read_to_string(hub.dir.path().join("tls.crt")).unwrap();
    let key = std::fs::read_to_string(hub.dir.path().join("tls.key")).unwrap();
    assert!(
        tls_connack(&hub, tls_client(&ca, Some((cert, key)))).await,
        "issued certificate"
    );
}
