//! The connector task: owns the connection. For every attempt it waits as the
//! reconnect policy ([`Reconnect`]) says, builds the MQTT options anew, creates a fresh
//! rumqttc client and event loop, and polls it until the connection fails, telling the
//! driver every event ([`NetMsg`]).

use std::{sync::Arc, time::Duration};

use rumqttc::{
    AsyncClient, ConnectionError, Event, Incoming, MqttOptions, TlsConfiguration, Transport,
};
use rumqttc_ring as rumqttc;
use tokio::sync::mpsc;

use super::{CLIENT_CHANNEL, PACKET_OVERHEAD};
use crate::{backoff::Reconnect, config::Config};
use mir_proto::{MAX_INFLIGHT, MAX_PAYLOAD_BYTES};

/// What the connector tells the driver.
pub(super) enum NetMsg {
    /// ConnAck of connection `epoch`, with the client that writes to it.
    Connected {
        epoch: u64,
        client: AsyncClient,
        session_present: bool,
    },
    Event {
        epoch: u64,
        event: Event,
    },
    /// Connection `epoch` failed (or never came up); the next attempt is in `retry_in`.
    Lost {
        epoch: u64,
        error: ConnectionError,
        retry_in: Duration,
        /// Whether it had been accepted (CONNACK).
        was_up: bool,
        /// Connections in a row dropped right after their CONNACK.
        kicked_in_a_row: u32,
    },
}

pub(crate) fn mqtt_options(config: &Config) -> MqttOptions {
    let mut options = MqttOptions::new(
        config.device_id.as_str(),
        config.target.host.clone(),
        config.target.port,
    );
    options
        .set_keep_alive(config.keep_alive)
        .set_clean_session(!config.persistent_session)
        .set_inflight(MAX_INFLIGHT)
        .set_max_packet_size(
            MAX_PAYLOAD_BYTES + PACKET_OVERHEAD,
            MAX_PAYLOAD_BYTES + PACKET_OVERHEAD,
        );
    let tls = match &config.tls_files {
        Some(files) => files.current(),
        None => config.tls.clone(),
    };
    if let Some(tls) = &tls {
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::clone(tls),
        )));
    }
    options
}

/// Connects, polls until the connection fails, waits as the reconnect policy says,
/// again, forever. Every attempt builds its MQTT options (and TLS configuration) anew.
pub(super) async fn connect_loop(
    config: Arc<Config>,
    tx: mpsc::Sender<NetMsg>,
    mut policy: Reconnect,
) {
    let target = config.target.to_string();
    let mut epoch = 0u64;
    let mut failures: u32 = 0;
    loop {
        let at = policy.connect_at(tokio::time::Instant::now().into_std());
        tokio::time::sleep_until(at.into()).await;
        epoch += 1;
        let (client, mut eventloop) = AsyncClient::new(mqtt_options(&config), CLIENT_CHANNEL);
        // Small packets (command answers, acks) must not wait for Nagle + delayed ACK.
        eventloop.network_options.set_tcp_nodelay(true);
        let mut was_up = false;
        let error = loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                    policy.on_connack(tokio::time::Instant::now().into_std());
                    was_up = true;
                    failures = 0;
                    let msg = NetMsg::Connected {
                        epoch,
                        client: client.clone(),
                        session_present: ack.session_present,
                    };
                    if tx.send(msg).await.is_err() {
                        return;
                    }
                }
                Ok(event) => {
                    if tx.send(NetMsg::Event { epoch, event }).await.is_err() {
                        return;
                    }
                }
                Err(e) => break e,
            }
        };
        // Everything this connection held is dropped here; the session resends it.
        drop(eventloop);
        drop(client);
        failures = failures.saturating_add(1);
        let retry = policy.on_lost(tokio::time::Instant::now().into_std());
        if failures == 1 || failures.is_power_of_two() {
            tracing::warn!(target, failures, "MQTT connection error: {error}");
        }
        let lost = NetMsg::Lost {
            epoch,
            error,
            retry_in: retry.delay,
            was_up,
            kicked_in_a_row: retry.kicked_in_a_row,
        };
        if tx.send(lost).await.is_err() {
            return;
        }
        tokio::time::sleep(retry.delay).await;
    }
}
