//! The broker's counters: plain atomics, read as one [`BrokerMetrics`] snapshot by
//! [`crate::BrokerHandle::metrics`]. [`BrokerMetrics::samples`] names each value as a
//! Prometheus sample; those names are stable.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $label:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
        }

        impl $name {
            /// Every value, in the order of [`Self::as_str`]'s documentation.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];
            pub(crate) const COUNT: usize = Self::ALL.len();

            /// The stable label value of the Prometheus samples.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $($name::$variant => $label,)*
                }
            }
        }
    };
}

named_enum! {
    /// Why the broker refused a client or closed its connection, besides its limits.
    Rejection {
        /// A malformed packet (the codec's checks of MQTT 3.1.1): connection closed.
        CodecError => "codec_error",
        /// A well-formed packet the broker does not take (first packet not CONNECT, a
        /// second CONNECT, QoS 2, a packet only servers send): connection closed.
        ProtocolError => "protocol_error",
        /// A protocol other than MQTT 3.1.1: CONNACK 1.
        UnsupportedProtocol => "unsupported_protocol",
        /// A client id that is not a device id: CONNACK 2.
        IdentifierRejected => "identifier_rejected",
        /// A certificate whose common name is not the client id (CONNACK 5), or a
        /// publish outside the device's topics (disconnect).
        AuthFailure => "auth_failure",
        /// A subscription outside the device's topics: SUBACK 0x80.
        SubscriptionRefused => "subscription_refused",
        /// [`crate::Hooks::admit`] refused the client (or did not answer in time).
        AdmissionRefused => "admission_refused",
        /// A PUBLISH over [`crate::BrokerConfig::max_payload`]: disconnect.
        PayloadTooLarge => "payload_too_large",
        /// [`crate::Hooks::on_publish`] did not keep a message: not acknowledged.
        HookError => "hook_error",
        /// A failed TLS handshake (no or a foreign certificate, ...).
        TlsHandshake => "tls_handshake",
    }
}

named_enum! {
    /// A limit of [`crate::BrokerConfig`] that was hit.
    Limit {
        /// `max_connections`: a connection closed as soon as accepted.
        Connections => "connections",
        /// `max_pending_connections`: the oldest connection without CONNECT closed.
        PendingConnections => "pending_connections",
        /// `connect_timeout`: no complete CONNECT in time.
        ConnectTimeout => "connect_timeout",
        /// `max_subscriptions_per_connection`: a filter refused (SUBACK 0x80).
        SubscriptionsPerConnection => "subscriptions_per_connection",
        /// `max_filters_per_subscribe`: a client disconnected.
        FiltersPerSubscribe => "filters_per_subscribe",
        /// `max_queued_per_session`: a message dropped.
        SessionQueueMessages => "session_queue_messages",
        /// `max_queued_bytes_per_session`: a message dropped.
        SessionQueueBytes => "session_queue_bytes",
        /// `max_queued_bytes`: a message dropped.
        BrokerQueueBytes => "broker_queue_bytes",
        /// `session_expiry`: an offline persistent session forgotten.
        SessionExpiry => "session_expiry",
    }
}

/// The live counters.
#[derive(Default)]
pub(crate) struct Metrics {
    pub connections_plain: AtomicU64,
    pub connections_tls: AtomicU64,
    pub pending: AtomicU64,
    /// Every open TCP connection of the broker, for `max_connections`.
    pub sockets: AtomicUsize,
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub queued_messages: AtomicU64,
    /// Reserved with a compare-and-swap, so it never exceeds `max_queued_bytes`.
    pub queued_bytes: AtomicUsize,
    rejections: [AtomicU64; Rejection::COUNT],
    limits: [AtomicU64; Limit::COUNT],
}

impl Metrics {
    pub fn reject(&self, r: Rejection) -> u64 {
        self.rejections[r as usize].fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Counts a hit of `limit`; returns the count, to log the first hits and then fewer.
    pub fn hit(&self, limit: Limit) -> u64 {
        self.limits[limit as usize].fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn sub(counter: &AtomicU64, n: u64) {
        // Paired with an earlier add: never below zero.
        let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_sub(n))
        });
    }

    /// Reserves `n` queued bytes unless that would pass `max`.
    pub fn reserve_bytes(&self, n: usize, max: usize) -> bool {
        self.queued_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                v.checked_add(n).filter(|total| *total <= max)
            })
            .is_ok()
    }

    pub fn release_bytes(&self, n: usize) {
        let _ = self
            .queued_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(v.saturating_sub(n))
            });
    }

    pub fn snapshot(&self, sessions_online: u64, sessions_offline: u64) -> BrokerMetrics {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut rejections = [0; Rejection::COUNT];
        for (out, a) in rejections.iter_mut().zip(&self.rejections) {
            *out = load(a);
        }
        let mut limits = [0; Limit::COUNT];
        for (out, a) in limits.iter_mut().zip(&self.limits) {
            *out = load(a);
        }
        BrokerMetrics {
            connections_plain: load(&self.connections_plain),
            connections_tls: load(&self.connections_tls),
            pending_connections: load(&self.pending),
            sessions_online,
            sessions_offline,
            messages_in: load(&self.messages_in),
            messages_out: load(&self.messages_out),
            queued_messages: load(&self.queued_messages),
            queued_bytes: self.queued_bytes.load(Ordering::Relaxed) as u64,
            rejections,
            limits,
        }
    }
}

/// Whether the `n`th occurrence of something frequent is worth a log line: the first,
/// then the powers of two and every thousandth, each with the count so far.
pub(crate) fn worth_logging(n: u64) -> bool {
    n == 1 || n.is_power_of_two() || n.is_multiple_of(1000)
}

/// A snapshot of the broker's counters (gauges are values at the time of the call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerMetrics {
    /// Accepted MQTT connections (CONNACK sent) on the plain listener.
    pub connections_plain: u64,
    /// Accepted MQTT connections on the mTLS listener.
    pub connections_tls: u64,
    /// TCP connections that have not sent a complete CONNECT yet.
    pub pending_connections: u64,
    /// Sessions with a connection.
    pub sessions_online: u64,
    /// Persistent sessions kept without a connection.
    pub sessions_offline: u64,
    /// PUBLISH packets (and last wills) accepted from clients.
    pub messages_in: u64,
    /// PUBLISH packets written to clients, retransmissions included.
    pub messages_out: u64,
    /// Messages waiting for, or in flight to, sessions.
    pub queued_messages: u64,
    /// Their bytes (topic + payload).
    pub queued_bytes: u64,
    rejections: [u64; Rejection::COUNT],
    limits: [u64; Limit::COUNT],
}

/// Prometheus metric type of a [`Sample`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Gauge,
    Counter,
}

/// One value of [`BrokerMetrics`], named for Prometheus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricKind,
    /// At most one label (name, value).
    pub label: Option<(&'static str, &'static str)>,
    pub value: u64,
}

impl BrokerMetrics {
    /// How often the broker refused a client or closed a connection for `r`.
    pub fn rejections(&self, r: Rejection) -> u64 {
        self.rejections[r as usize]
    }

    /// How often `limit` was hit.
    pub fn limit_hits(&self, limit: Limit) -> u64 {
        self.limits[limit as usize]
    }

    /// Every value as a Prometheus sample. The names are stable:
    /// `mir_broker_connections{listener="plain"|"tls"}`,
    /// `mir_broker_pending_connections`, `mir_broker_sessions{state="online"|"offline"}`,
    /// `mir_broker_messages_in_total`, `mir_broker_messages_out_total`,
    /// `mir_broker_queued_messages`, `mir_broker_queued_bytes`,
    /// `mir_broker_rejections_total{reason}` (one per [`Rejection`], label
    /// [`Rejection::as_str`]) and `mir_broker_limit_hits_total{limit}` (one per
    /// [`Limit`]).
    pub fn samples(&self) -> Vec<Sample> {
        use MetricKind::{Counter, Gauge};
        let one = |name, help, kind, label, value| Sample {
            name,
            help,
            kind,
            label,
            value,
        };
        let mut out = vec![
            one(
                "mir_broker_connections",
                "Accepted MQTT connections.",
                Gauge,
                Some(("listener", "plain")),
                self.connections_plain,
            ),
            one(
                "mir_broker_connections",
                "Accepted MQTT connections.",
                Gauge,
                Some(("listener", "tls")),
                self.connections_tls,
            ),
            one(
                "mir_broker_pending_connections",
                "TCP connections without a complete CONNECT yet.",
                Gauge,
                None,
                self.pending_connections,
            ),
            one(
                "mir_broker_sessions",
                "Sessions, with a connection (online) or kept without one (offline).",
                Gauge,
                Some(("state", "online")),
                self.sessions_online,
            ),
            one(
                "mir_broker_sessions",
                "Sessions, with a connection (online) or kept without one (offline).",
                Gauge,
                Some(("state", "offline")),
                self.sessions_offline,
            ),
            one(
                "mir_broker_messages_in_total",
                "PUBLISH packets accepted from clients.",
                Counter,
                None,
                self.messages_in,
            ),
            one(
                "mir_broker_messages_out_total",
                "PUBLISH packets written to clients.",
                Counter,
                None,
                self.messages_out,
            ),
            one(
                "mir_broker_queued_messages",
                "Messages waiting for or in flight to sessions.",
                Gauge,
                None,
                self.queued_messages,
            ),
            one(
                "mir_broker_queued_bytes",
                "Bytes (topic and payload) of the queued messages.",
                Gauge,
                None,
                self.queued_bytes,
            ),
        ];
        for r in Rejection::ALL {
            out.push(one(
                "mir_broker_rejections_total",
                "Clients refused and connections closed, by reason.",
                Counter,
                Some(("reason", r.as_str())),
                self.rejections(*r),
            ));
        }
        for l in Limit::ALL {
            out.push(one(
                "mir_broker_limit_hits_total",
                "Limits of the broker that were hit, by limit.",
                Counter,
                Some(("limit", l.as_str())),
                self.limit_hits(*l),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arrays_hold_one_counter_per_reason_and_limit() {
        let m = Metrics::default();
        assert_eq!(m.rejections.len(), Rejection::ALL.len());
        assert_eq!(m.limits.len(), Limit::ALL.len());
        for (i, r) in Rejection::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        for (i, l) in Limit::ALL.iter().enumerate() {
            assert_eq!(*l as usize, i);
        }
    }

    #[test]
    fn samples_carry_every_counter_under_its_stable_name() {
        let m = Metrics::default();
        m.reject(Rejection::CodecError);
        m.reject(Rejection::CodecError);
        m.hit(Limit::SessionExpiry);
        assert!(m.reserve_bytes(10, 10));
        assert!(!m.reserve_bytes(1, 10), "the byte cap is never passed");
        let s = m.snapshot(3, 4);
        assert_eq!(s.rejections(Rejection::CodecError), 2);
        assert_eq!(s.limit_hits(Limit::SessionExpiry), 1);
        let samples = s.samples();
        assert_eq!(samples.len(), 9 + Rejection::ALL.len() + Limit::ALL.len());
        let find = |name: &str, label: Option<(&str, &str)>| {
            samples
                .iter()
                .find(|x| x.name == name && x.label == label)
                .map(|x| x.value)
        };
        assert_eq!(
            find(
                "mir_broker_rejections_total",
                Some(("reason", "codec_error"))
            ),
            Some(2)
        );
        assert_eq!(
            find(
                "mir_broker_limit_hits_total",
                Some(("limit", "session_expiry"))
            ),
            Some(1)
        );
        assert_eq!(
            find("mir_broker_sessions", Some(("state", "offline"))),
            Some(4)
        );
        assert_eq!(find("mir_broker_queued_bytes", None), Some(10));
        assert!(samples.iter().all(|x| x.name.starts_with("mir_broker_")));
        assert!(samples
            .iter()
            .filter(|x| x.kind == MetricKind::Counter)
            .all(|x| x.name.ends_with("_total")));
    }

    #[test]
    fn frequent_events_are_logged_less_and_less_often() {
        let logged: Vec<u64> = (1..=3000).filter(|n| worth_logging(*n)).collect();
        assert_eq!(&logged[..4], &[1, 2, 4, 8]);
        assert!(logged.contains(&1000) && logged.contains(&2048));
        assert!(logged.len() < 20);
    }
}
