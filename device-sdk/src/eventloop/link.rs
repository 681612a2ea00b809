//! The connection of one attempt, opened by the SDK itself so that its socket has TCP
//! keepalive: rumqttc 0.25 creates its own socket in a private function with no hook
//! for socket options.
//!
//! On unix, every attempt:
//! 1. makes a private directory (mode 0700) with a Unix socket listener in it;
//! 2. connects a `socket2` socket with `TCP_NODELAY` and the configured TCP keepalive
//!    (`SO_KEEPALIVE`, `TCP_KEEPIDLE`, `TCP_KEEPINTVL`, `TCP_KEEPCNT`) to the target,
//!    within [`CONNECT_TIMEOUT`], and does TLS on it with tokio-rustls and the SDK's
//!    `rustls::ClientConfig` (SNI: the target's host) when TLS is configured;
//! 3. points rumqttc at the listener (`Transport::Unix`): the relay ([`relay`])
//!    accepts exactly one connection, closes the listener and removes the directory,
//!    then copies bytes both ways between rumqttc and the stream of step 2.
//!
//! A failure of step 2 is the attempt's `ConnectionError` (`Io`, or `NetworkTimeout`),
//! reported as any failed attempt. When the upstream fails (a reset, the kernel giving
//! up on unanswered keepalive probes), the relay closes rumqttc's side, so its poll
//! fails and the connector reconnects; [`Link::cause`] then reports the upstream's
//! error rather than rumqttc's end of file.
//!
//! If the private directory or its listener cannot be made (no writable temporary
//! directory, a path too long for a Unix socket), the attempt falls back to rumqttc's
//! own socket (no TCP keepalive) with a warning. On non-unix targets rumqttc always
//! connects directly: there is no TCP keepalive there.

use rumqttc::{ConnectionError, MqttOptions};
use rumqttc_ring as rumqttc;

use crate::config::Config;

#[cfg(unix)]
mod relay;
#[cfg(unix)]
mod socket;
#[cfg(all(test, unix))]
mod tests;

/// Longest time the TCP connect and the TLS handshake of one attempt may take (as
/// rumqttc's default connection timeout).
#[cfg(unix)]
pub(crate) const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The MQTT options of one attempt, and what carries its bytes.
pub(super) struct Link {
    pub options: MqttOptions,
    #[cfg(unix)]
    relay: Option<relay::Relay>,
}

impl Link {
    /// The error to report for a connection whose poll failed with `error`: the
    /// upstream's own error when the relay ended with one.
    pub async fn cause(&mut self, error: ConnectionError) -> ConnectionError {
        #[cfg(unix)]
        if let Some(relay) = &mut self.relay {
            if let Some(upstream) = relay.upstream_error().await {
                return ConnectionError::Io(upstream);
            }
        }
        error
    }
}

/// Opens the connection of one attempt (see the module's doc).
pub(super) async fn open(config: &Config) -> Result<Link, ConnectionError> {
    #[cfg(unix)]
    {
        let listener = match relay::Listener::bind() {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(
                    "cannot make the private socket of the TCP keepalive relay ({e}): \
                     connecting without TCP keepalive"
                );
                return Ok(direct(config));
            }
        };
        let tls = super::connector::tls_config(config);
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            socket::connect(
                &config.target.host,
                config.target.port,
                config.tcp_keepalive.as_ref(),
                tls,
            ),
        )
        .await
        .map_err(|_| ConnectionError::NetworkTimeout)??;
        let mut options = super::connector::base_options(config, listener.path_str().to_owned(), 0);
        options.set_transport(rumqttc::Transport::Unix);
        let relay = relay::Relay::start(listener, tcp);
        Ok(Link {
            options,
            relay: Some(relay),
        })
    }
    #[cfg(not(unix))]
    {
        Ok(direct(config))
    }
}

/// rumqttc's own connection (its socket, its TLS).
fn direct(config: &Config) -> Link {
    Link {
        options: super::connector::mqtt_options(config),
        #[cfg(unix)]
        relay: None,
    }
}
