//! The hub's metrics, in the Prometheus text format at `GET /metrics` (prometheus-client),
//! and its health at `GET /healthz`.
//!
//! Counters move as the hub works: messages in by topic kind (from devices), messages
//! out by topic kind (to devices), invocations and failures by function, dead letters.
//! Histograms: invocation time by function, and the store's latency, measured by a read
//! at each scrape and health check. Read at each scrape: invocations in flight, and the
//! broker's own samples (`mir_broker_*`: connections by listener, pending connections,
//! sessions, messages, queued messages and bytes, rejections by reason, limit hits).

use std::{
    collections::BTreeMap,
    sync::{Mutex, MutexGuard},
    time::Instant,
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};

use mir_broker::MetricKind;
use mir_shared::ports::{StoreError, TwinStore};

/// The metrics stay usable after a panic elsewhere: their state is only counters.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// The topic after `mir/{id}/`, e.g. `tlm`, `cfg/reported`, `cmd/req`.
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FunctionLabel {
    pub function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabel {
    pub function: String,
    /// `true` when a retry could help (retried, then dead-lettered).
    pub retryable: String,
}

type Timings = Family<FunctionLabel, Histogram, fn() -> Histogram>;

fn latency_buckets() -> Histogram {
    // 0.5 ms to about 8 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

/// Every metric of the hub.
pub struct HubMetrics {
    registry: Mutex<Registry>,
    pub messages_in: Family<KindLabel, Counter>,
    pub messages_out: Family<KindLabel, Counter>,
    pub invocations: Family<FunctionLabel, Counter>,
    pub failures: Family<FailureLabel, Counter>,
    pub dead_letters: Counter,
    pub dead_letter_write_failures: Counter,
    pub invocation_seconds: Timings,
    pub store_seconds: Histogram,
    pub store_errors: Counter,
    pub in_flight: Gauge,
    /// The broker's samples (`mir_broker_*`), registered at the first scrape.
    broker: Mutex<BTreeMap<&'static str, BrokerFamily>>,
}

type SampleLabels = Vec<(String, String)>;

enum BrokerFamily {
    Gauge(Family<SampleLabels, Gauge>),
    Counter(Family<SampleLabels, Counter>),
}

impl Default for HubMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("mir_hub");
        let m = Self {
            messages_in: Family::default(),
            messages_out: Family::default(),
            invocations: Family::default(),
            failures: Family::default(),
            dead_letters: Counter::default(),
            dead_letter_write_failures: Counter::default(),
            invocation_seconds: Family::new_with_constructor(latency_buckets),
            store_seconds: latency_buckets(),
            store_errors: Counter::default(),
            in_flight: Gauge::default(),
            registry: Mutex::new(Registry::default()),
            broker: Mutex::new(BTreeMap::new()),
        };
        let r = &mut registry;
        r.register(
            "messages_in",
            "Messages devices published, by topic kind",
            m.messages_in.clone(),
        );
        r.register(
            "messages_out",
            "Messages published to devices, by topic kind",
            m.messages_out.clone(),
        );
        r.register(
            "invocations",
            "Function invocations (retries included), by function",
            m.invocations.clone(),
        );
        r.register(
            "invocation_failures",
            "Failed invocations, by function and whether a retry could help",
            m.failures.clone(),
        );
        r.register(
            "dead_letters",
            "Invocations written to dead-letters.jsonl",
            m.dead_letters.clone(),
        );
        r.register(
            "dead_letter_write_failures",
            "Dead letters that could not be written",
            m.dead_letter_write_failures.clone(),
        );
        r.register(
            "invocation_seconds",
            "Time of one invocation, by function",
            m.invocation_seconds.clone(),
        );
        r.register(
            "store_seconds",
            "Latency of a twin read, probed at each scrape and health check",
            m.store_seconds.clone(),
        );
        r.register(
            "store_errors",
            "Failed store probes",
            m.store_errors.clone(),
        );
        r.register(
            "invocations_in_flight",
            "Invocations accepted and not finished",
            m.in_flight.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            ..m
        }
    }
}

impl HubMetrics {
    /// Counts a message of `topic` (`mir/{id}/{kind}`) in `family`.
    pub fn count_topic(family: &Family<KindLabel, Counter>, topic: &str) {
        let kind = match mir_proto::topics::parse(topic) {
            Ok((_, t)) => t.suffix().to_string(),
            Err(_) => "other".to_string(),
        };
        family.get_or_create(&KindLabel { kind }).inc();
    }

    /// One invocation of `function`, its time and outcome.
    pub fn invoked(&self, function: &str, started: Instant, failure: Option<bool>) {
        let label = FunctionLabel {
            function: function.to_string(),
        };
        self.invocations.get_or_create(&label).inc();
        self.invocation_seconds
            .get_or_create(&label)
            .observe(started.elapsed().as_secs_f64());
        if let Some(retryable) = failure {
            self.failures
                .get_or_create(&FailureLabel {
                    function: function.to_string(),
                    retryable: retryable.to_string(),
                })
                .inc();
        }
    }

    /// Reads one twin to measure the store (a missing twin is a normal answer).
    pub async fn probe_store(&self, twins: &dyn TwinStore) -> Result<(), StoreError> {
        let started = Instant::now();
        let read = twins.get("healthz-probe").await;
        self.store_seconds.observe(started.elapsed().as_secs_f64());
        if read.is_err() {
            self.store_errors.inc();
        }
        read.map(|_| ())
    }

    /// Takes the broker's samples (`mir_broker_*`: connections, sessions, messages,
    /// queued messages and bytes, rejections and limit hits) as they are now.
    pub fn observe_broker(&self, snapshot: &mir_broker::BrokerMetrics) {
        let mut families = lock(&self.broker);
        let mut registry = lock(&self.registry);
        for s in snapshot.samples() {
            let family = families.entry(s.name).or_insert_with(|| match s.kind {
                MetricKind::Gauge => {
                    let f = Family::<SampleLabels, Gauge>::default();
                    registry.register(s.name, s.help, f.clone());
                    BrokerFamily::Gauge(f)
                }
                MetricKind::Counter => {
                    let f = Family::<SampleLabels, Counter>::default();
                    let name = s.name.strip_suffix("_total").unwrap_or(s.name);
                    registry.register(name, s.help, f.clone());
                    BrokerFamily::Counter(f)
                }
            });
            let labels: SampleLabels = s
                .label
                .map(|(k, v)| vec![(k.to_string(), v.to_string())])
                .unwrap_or_default();
            match family {
                BrokerFamily::Gauge(f) => {
                    f.get_or_create(&labels)
                        .set(i64::try_from(s.value).unwrap_or(i64::MAX));
                }
                // The broker's counters only grow: the family catches up with them.
                BrokerFamily::Counter(f) => {
                    let c = f.get_or_create(&labels);
                    let now = c.get();
                    if s.value > now {
                        c.inc_by(s.value - now);
                    }
                }
            }
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &lock(&self.registry));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_show_in_the_text_format_by_label() {
        let m = HubMetrics::default();
        HubMetrics::count_topic(&m.messages_in, "mir/d1/tlm");
        HubMetrics::count_topic(&m.messages_in, "mir/d1/tlm");
        HubMetrics::count_topic(&m.messages_out, "mir/d1/cmd/req");
        m.invoked("telemetry", Instant::now(), Some(true));
        let text = m.render();
        assert!(
            text.contains("mir_hub_messages_in_total{kind=\"tlm\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("mir_hub_messages_out_total{kind=\"cmd/req\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "mir_hub_invocation_failures_total{function=\"telemetry\",retryable=\"true\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("mir_hub_invocation_seconds_count{function=\"telemetry\"} 1"),
            "{text}"
        );
    }
}
