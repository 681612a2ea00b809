//! The connector task: owns the connection. For every attempt it waits as the
//! reconnect policy ([`Reconnect`]) says, opens the connection with TCP keepalive
//! ([`link`]), builds the MQTT options anew, creates a fresh rumqttc client and event
//! loop on that connection, and polls it until the connection fails, telling the
//! driver every event ([`NetMsg`]).
//!
//! rumqttc pings every keep-alive and only fails when the next ping is due with the
//! last one unanswered (up to two keep-alives of silence). The connector also gives up
//! on a connection that received nothing within [`ping_timeout`] of a PINGREQ, so a
//! dead link is noticed about one keep-alive plus that timeout after it died.

use std::{sync::Arc, time::Duration};

use rumqttc::{
    AsyncClient, ConnectionError, Event, Incoming, MqttOptions, Outgoing, StateError,
    TlsConfiguration, Transport,
};
use rumqttc_ring as rumqttc;
use tokio::sync::mpsc;

use super::{
    link::{self, Link},
    CLIENT_CHANNEL, PACKET_OVERHEAD,
};
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

/// The MQTT options of every attempt, to the broker at `host:port` (rumqttc's transport
/// left as TCP).
pub(super) fn base_options(config: &Config, host: String, port: u16) -> MqttOptions {
    let mut options = MqttOptions::new(config.device_id.as_str(), host, port);
    options
        .set_keep_alive(config.keep_alive)
        .set_clean_session(!config.persistent_session)
        .set_inflight(MAX_INFLIGHT)
        .set_max_packet_size(
            MAX_PAYLOAD_BYTES + PACKET_OVERHEAD,
            MAX_PAYLOAD_BYTES + PACKET_OVERHEAD,
        );
    options
}

/// The TLS configuration of this attempt: the credential files read again, else the
/// one built; `None` for plain MQTT.
pub(super) fn tls_config(config: &Config) -> Option<Arc<rustls::ClientConfig>> {
    match &config.tls_files {
        Some(files) => files.current(),
        None => config.tls.clone(),
    }
}

/// The options of rumqttc's own connection to the target (its socket, its TLS).
pub(crate) fn mqtt_options(config: &Config) -> MqttOptions {
    let mut options = base_options(config, config.target.host.clone(), config.target.port);
    if let Some(tls) = tls_config(config) {
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    }
    options
}

/// Connects, polls until the connection fails, waits as the reconnect policy says,
/// again, forever. Every attempt opens its connection ([`link::open`]) and builds its
/// MQTT options (and TLS configuration) anew.
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
        let mut attempt = Attempt {
            config: &config,
            tx: &tx,
            policy: &mut policy,
            failures: &mut failures,
            epoch,
            was_up: false,
        };
        let error = match link::open(&config).await {
            Ok(link) => match attempt.poll(link).await {
                Some(error) => error,
                None => return,
            },
            Err(error) => error,
        };
        let was_up = attempt.was_up;
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

/// One connection attempt, polled until it fails.
struct Attempt<'a> {
    config: &'a Config,
    tx: &'a mpsc::Sender<NetMsg>,
    policy: &'a mut Reconnect,
    failures: &'a mut u32,
    epoch: u64,
    /// Whether it had been accepted (CONNACK).
    was_up: bool,
}

impl Attempt<'_> {
    /// Polls a fresh rumqttc client and event loop on `link` until the connection
    /// fails: its error, or `None` when the driver is gone.
    async fn poll(&mut self, mut link: Link) -> Option<ConnectionError> {
        let epoch = self.epoch;
        let (client, mut eventloop) = AsyncClient::new(link.options.clone(), CLIENT_CHANNEL);
        // Small packets (command answers, acks) must not wait for Nagle + delayed ACK
        // (rumqttc's own socket; the SDK's has it already).
        eventloop.network_options.set_tcp_nodelay(true);
        // When a PINGREQ went out with nothing received since.
        let mut pinged: Option<tokio::time::Instant> = None;
        let patience = ping_timeout(self.config.keep_alive);
        let error = loop {
            let polled = tokio::select! {
                polled = eventloop.poll() => polled,
                _ = sleep_until(pinged.map(|t| t + patience)) => {
                    // The connection is given up: its event loop is dropped below.
                    break ConnectionError::MqttState(StateError::AwaitPingResp);
                }
            };
            match &polled {
                Ok(Event::Outgoing(Outgoing::PingReq)) => {
                    pinged.get_or_insert_with(tokio::time::Instant::now);
                }
                Ok(Event::Incoming(_)) => pinged = None,
                _ => {}
            }
            match polled {
                Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                    self.policy
                        .on_connack(tokio::time::Instant::now().into_std());
                    self.was_up = true;
                    *self.failures = 0;
                    let msg = NetMsg::Connected {
                        epoch,
                        client: client.clone(),
                        session_present: ack.session_present,
                    };
                    self.tx.send(msg).await.ok()?;
                }
                Ok(event) => self.tx.send(NetMsg::Event { epoch, event }).await.ok()?,
                Err(e) => break link.cause(e).await,
            }
        };
        // Everything this connection held is dropped here (the link too: its relay
        // closes both sides); the session resends it.
        drop(eventloop);
        drop(client);
        drop(link);
        Some(error)
    }
}

/// How long after a PINGREQ a silent connection is given up: half the keep-alive, at
/// most 5 s.
pub(crate) fn ping_timeout(keep_alive: Duration) -> Duration {
    (keep_alive / 2).min(Duration::from_secs(5))
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ping_waits_half_the_keep_alive_for_an_answer_and_never_more_than_5_s() {
        assert_eq!(ping_timeout(Duration::from_secs(2)), Duration::from_secs(1));
        assert_eq!(
            ping_timeout(Duration::from_secs(30)),
            Duration::from_secs(5)
        );
        assert_eq!(
            ping_timeout(Duration::from_secs(1200)),
            Duration::from_secs(5)
        );
    }
}
