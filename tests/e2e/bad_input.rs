//! Bad input against the running hub: each is refused with a clear error, nothing
//! panics, and no stored data is lost or touched.

use std::{sync::Arc, time::Duration};

use mir_proto::examples::weather::DataRateStatus;
use rumqttc_ring::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, MqttOptions, Packet, QoS, StateError,
};
use serde_json::{json, Value};

use crate::support::*;

/// What the broker did with one QoS 1 PUBLISH of a raw client.
#[derive(Debug)]
enum Published {
    /// It acknowledged it (PUBACK).
    Acknowledged,
    /// It accepted the connection, then closed it without acknowledging.
    ClosedBeforeAck(ConnectionError),
}

/// Whether the error is the broker closing the connection (end of stream, or a reset of
/// what the client was still sending), not a refusal or a timeout.
fn is_closed_by_peer(e: &ConnectionError) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionReset};
    match e {
        ConnectionError::MqttState(StateError::ConnectionAborted) => true,
        ConnectionError::MqttState(StateError::Io(io)) | ConnectionError::Io(io) => {
            matches!(io.kind(), ConnectionReset | BrokenPipe)
        }
        _ => false,
    }
}

/// A raw MQTT client: connects as `client_id`, publishes once at QoS 1, and reports
/// whether the broker acknowledged it or closed the connection.
async fn raw_publish(hub: &TestHub, client_id: &str, topic: &str, payload: Vec<u8>) -> Published {
    let addr = hub.mqtt_addr();
    let mut opts = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
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
        let mut connected = false;
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(c))) => {
                    assert_eq!(c.code, ConnectReturnCode::Success, "{client_id} refused");
                    connected = true;
                }
                Ok(Event::Incoming(Packet::PubAck(_))) => return Published::Acknowledged,
                Ok(_) => {}
                Err(e) => {
                    assert!(connected, "{client_id} never connected: {e}");
                    return Published::ClosedBeforeAck(e);
                }
            }
        }
    })
    .await;
    outcome.unwrap_or_else(|_| panic!("{client_id}: neither a PUBACK nor a close within 10 s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_protobuf_is_dead_lettered_and_the_hub_keeps_working() {
    let hub = hub();
    let dev = TestDevice::start(&hub, "victim", Behaviour::Succeed).await;
    eventually(Duration::from_secs(10), "victim online", || {
        hub.twin("victim/default")["status"]["online"] == true
    })
    .await;
    let published = raw_publish(
        &hub,
        "garbler",
        "mir/garbler/tlm",
        vec![0xff, 0x01, 0x02, 0xff],
    )
    .await;
    assert!(
        matches!(published, Published::Acknowledged),
        "a malformed payload on its own topic is accepted by the broker: {published:?}"
    );
    eventually(Duration::from_secs(10), "dead letter written", || {
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
    let hub = hub();
    let dev = TestDevice::start(&hub, "victim", Behaviour::Succeed).await;
    eventually(Duration::from_secs(10), "victim schema", || {
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
    let published = raw_publish(
        &hub,
        "evil",
        "mir/victim/cfg/reported",
        prost::Message::encode_to_vec(&forged),
    )
    .await;
    assert!(
        matches!(published, Published::ClosedBeforeAck(ref e) if is_closed_by_peer(e)),
        "the broker disconnects a client that breaks the policy: {published:?}"
    );
    assert_eq!(
        hub.twin("victim/default")["properties"],
        before["properties"]
    );
    // The victim's own report afterwards is stored: had the forged one (newest possible
    // timestamp) been applied, this older one would lose to it.
    dev.mir.send_properties(&DataRateStatus { sec: 1 }).unwrap();
    eventually(Duration::from_secs(10), "the victim's own report", || {
        hub.twin("victim/default")["properties"]["reported"]["schema.v1.DataRateStatus"]
            == json!({"sec": 1})
    })
    .await;
    let after = hub.twin("victim/default");
    assert_eq!(
        after["properties"]["desired"],
        before["properties"]["desired"]
    );
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_payloads_are_refused_by_the_sdk_and_by_the_broker() {
    let hub = hub();
    let dev = TestDevice::start(&hub, "big", Behaviour::Succeed).await;
    let huge = mir_proto::examples::weather::Env {
        station: "x".repeat(200 * 1024),
        ..Default::default()
    };
    let err = dev.mir.send_telemetry(&huge).await.unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");
    let published = raw_publish(&hub, "bigraw", "mir/bigraw/tlm", vec![0u8; 200 * 1024]).await;
    assert!(
        matches!(published, Published::ClosedBeforeAck(ref e) if is_closed_by_peer(e)),
        "the broker disconnects a client sending more than 128 KB: {published:?}"
    );
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_ids_unknown_messages_and_mismatched_json_get_clear_errors() {
    let hub = hub();
    let out = hub.mir(&["device", "create", "--id", "bad id"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("bad id"),
        "{out:?}"
    );

    let dev = TestDevice::start(&hub, "w1", Behaviour::Succeed).await;
    eventually(Duration::from_secs(10), "schema", || {
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
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("not valid JSON"),
        "says the payload is not JSON: {out:?}"
    );
    assert!(hub.twin("w1/default")["properties"]["desired"].is_null());

    // A raw client whose id is not a valid device id is refused at CONNECT.
    let addr = hub.mqtt_addr();
    let opts = MqttOptions::new("bad id", addr.ip().to_string(), addr.port());
    let (_c, mut el) = AsyncClient::new(opts, 10);
    let refused = tokio::time::timeout(Duration::from_secs(5), el.poll())
        .await
        .expect("an answer to CONNECT within 5 s");
    assert!(
        matches!(
            refused,
            Err(ConnectionError::ConnectionRefused(
                ConnectReturnCode::BadClientId
            ))
        ),
        "{refused:?}"
    );
    dev.stop().await;
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

/// How the mTLS port answered a connection.
#[derive(Debug, PartialEq)]
enum TlsConnect {
    /// The TLS session was refused (by an alert, during or right after the handshake).
    Refused(rustls::Error),
    /// TLS was accepted and the broker answered CONNECT with this return code.
    ConnAck(u8),
}

/// The TLS error inside an I/O error of tokio-rustls.
fn tls_error(e: std::io::Error) -> rustls::Error {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(tls) => tls.clone(),
        None => panic!("not a TLS refusal: {e}"),
    }
}

/// Connects over TLS, sends an MQTT CONNECT as `client_id` and returns the answer.
async fn tls_connect(
    hub: &TestHub,
    connector: tokio_rustls::TlsConnector,
    client_id: &str,
) -> TlsConnect {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(hub.mqtts_addr())
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = match connector.connect(name, tcp).await {
        Ok(tls) => tls,
        Err(e) => return TlsConnect::Refused(tls_error(e)),
    };
    // CONNECT: protocol MQTT level 4, clean session, keepalive 30 s, the client id.
    let id = client_id.as_bytes();
    let len = u8::try_from(id.len()).unwrap();
    let connect = [
        &[0x10, 12 + len][..],
        b"\0\x04MQTT\x04\x02\0\x1e\0",
        &[len],
        id,
    ]
    .concat();
    if let Err(e) = tls.write_all(&connect).await {
        return TlsConnect::Refused(tls_error(e));
    }
    let mut buf = [0u8; 4];
    match tokio::time::timeout(Duration::from_secs(5), tls.read_exact(&mut buf)).await {
        Ok(Ok(_)) => {
            assert_eq!(buf[..2], [0x20, 2], "not a CONNACK: {buf:?}");
            TlsConnect::ConnAck(buf[3])
        }
        Ok(Err(e)) => TlsConnect::Refused(tls_error(e)),
        Err(_) => panic!("no answer to CONNECT within 5 s"),
    }
}

/// Provisions `id` through the CLI and returns its certificate and key (PEM).
fn provision(hub: &TestHub, id: &str) -> (String, String) {
    let dir = hub.data_dir().join(format!("{id}-certs"));
    let out = hub.mir(&[
        "device",
        "create",
        "--id",
        id,
        "--provision",
        "--cert-dir",
        dir.to_str().unwrap(),
    ]);
    assert!(out.ok, "{out:?}");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    (read("tls.crt"), read("tls.key"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_mtls_port_refuses_clients_without_a_certificate_from_the_hubs_ca() {
    let hub = hub();
    let ca = hub.ca_pem();
    assert_eq!(
        tls_connect(&hub, tls_client(&ca, None), "dev1").await,
        TlsConnect::Refused(rustls::Error::AlertReceived(
            rustls::AlertDescription::CertificateRequired
        )),
        "no client certificate"
    );
    let foreign = rcgen::generate_simple_self_signed(vec!["dev1".into()]).unwrap();
    let foreign = (foreign.cert.pem(), foreign.signing_key.serialize_pem());
    assert_eq!(
        tls_connect(&hub, tls_client(&ca, Some(foreign)), "dev1").await,
        TlsConnect::Refused(rustls::Error::AlertReceived(
            rustls::AlertDescription::UnknownCA
        )),
        "certificate from another CA"
    );
    // A certificate the hub issued for dev1 is accepted.
    let issued = provision(&hub, "dev1");
    assert_eq!(
        tls_connect(&hub, tls_client(&ca, Some(issued)), "dev1").await,
        TlsConnect::ConnAck(0),
        "issued certificate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_devices_certificate_is_refused() {
    let hub = hub();
    let ca = hub.ca_pem();
    let dev1 = provision(&hub, "dev1");
    provision(&hub, "dev2");
    // TLS accepts the certificate (the hub's CA issued it), the broker refuses the
    // client id it does not name: CONNACK 5, not authorized.
    assert_eq!(
        tls_connect(&hub, tls_client(&ca, Some(dev1)), "dev2").await,
        TlsConnect::ConnAck(5)
    );
}
