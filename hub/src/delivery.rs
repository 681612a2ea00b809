//! When rule invocations run: like AWS, not like a queue. IoT rules invoke Lambda
//! asynchronously, so each device message and lifecycle event becomes an invocation of
//! its own, acknowledged (PUBACK) before it runs, running concurrently with the others,
//! the same device's included, in no guaranteed order.
//!
//! - [`Dispatcher`]: runs invocations on tracked tasks, at most `maxConcurrency` at once;
//!   past `maxQueued` unfinished ones the publishing client waits (backpressure). When
//!   the hub stops, delays and retries are cut short and every accepted invocation runs.
//! - [`Chaos`] (`mir local --chaos`): a share of invocations is delivered twice and every
//!   delivery starts after a random delay, so invocations overtake one another, as AWS
//!   may deliver them. Each decision is a function of the seed and of the message alone,
//!   so replaying the same messages with the same seed (`--chaos-seed`) repeats them.

use std::{
    future::Future,
    hash::{Hash, Hasher},
    pin::Pin,
    sync::Arc,
    time::Duration,
};

use rand::{rngs::StdRng, Rng, SeedableRng};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::config::{ChaosConfig, DeliveryConfig};
use crate::core::Core;

/// One invocation, run once per delivery.
pub type Job = Arc<dyn Fn(Arc<Core>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The chaos decisions: pure, seeded.
#[derive(Debug, Clone, PartialEq)]
pub struct Chaos {
    pub seed: u64,
    duplicate_percent: u8,
    max_delay_ms: u64,
}

impl Chaos {
    /// `None` when chaos is off; an unset seed becomes a random one.
    pub fn from_config(c: &ChaosConfig) -> Option<Self> {
        c.enabled.then(|| Self {
            seed: c.seed.unwrap_or_else(rand::random),
            duplicate_percent: c.duplicate_percent.min(100),
            max_delay_ms: c.max_delay_ms,
        })
    }

    /// The delay before each delivery of the invocation whose input hashes to `key`: one
    /// entry, or two for a duplicated invocation.
    pub fn plan(&self, key: u64) -> Vec<Duration> {
        let mut rng = StdRng::seed_from_u64(self.seed ^ key);
        let copies = if rng.random_range(0..100u8) < self.duplicate_percent {
            2
        } else {
            1
        };
        (0..copies)
            .map(|_| Duration::from_millis(rng.random_range(0..=self.max_delay_ms)))
            .collect()
    }
}

/// A stable key of an invocation's input (client, topic or event kind, payload).
pub fn key_of(parts: &[&[u8]]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for p in parts {
        p.hash(&mut h);
    }
    h.finish()
}

/// Runs invocations concurrently, with the chaos of the configuration.
pub struct Dispatcher {
    core: Arc<Core>,
    chaos: Option<Chaos>,
    running: Arc<Semaphore>,
    queued: Arc<Semaphore>,
    tracker: TaskTracker,
}

impl Dispatcher {
    pub fn new(core: Arc<Core>, delivery: &DeliveryConfig, chaos: Option<Chaos>) -> Self {
        Self {
            core,
            chaos,
            running: Arc::new(Semaphore::new(delivery.max_concurrency)),
            queued: Arc::new(Semaphore::new(delivery.max_queued)),
            tracker: TaskTracker::new(),
        }
    }

    pub fn chaos(&self) -> Option<&Chaos> {
        self.chaos.as_ref()
    }

    /// Accepts an invocation whose input hashes to `key`; returns once it is queued (it
    /// waits only while `maxQueued` invocations are unfinished).
    pub async fn submit(&self, key: u64, job: Job) {
        let delays = match &self.chaos {
            Some(c) => c.plan(key),
            None => vec![Duration::ZERO],
        };
        for delay in delays {
            let Ok(queued) = self.queued.clone().acquire_owned().await else {
                return;
            };
            let running = self.running.clone();
            let core = self.core.clone();
            let draining = core.draining.clone();
            let job = job.clone();
            self.tracker.spawn(async move {
                let _queued = queued;
                if !delay.is_zero() {
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = draining.cancelled() => {}
                    }
                }
                let Ok(_running) = running.acquire_owned().await else {
                    return;
                };
                job(core).await;
            });
        }
    }

    /// Runs every accepted invocation to its end, without further delays, for at most
    /// `deadline`; returns whether all finished.
    pub async fn drain(&self, deadline: Duration) -> bool {
        self.core.draining.cancel();
        self.tracker.close();
        tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_ok()
    }

    /// Invocations accepted and not finished.
    /// The core the invocations run on.
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    pub fn in_flight(&self) -> usize {
        self.tracker.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chaos(seed: u64, duplicate_percent: u8) -> Chaos {
        Chaos {
            seed,
            duplicate_percent,
            max_delay_ms: 2_000,
        }
    }

    #[test]
    fn the_same_seed_and_message_give_the_same_decisions() {
        let key = key_of(&[b"w1", b"mir/w1/tlm", b"payload"]);
        assert_eq!(chaos(7, 50).plan(key), chaos(7, 50).plan(key));
        let plans: std::collections::HashSet<_> =
            (0..20).map(|seed| chaos(seed, 50).plan(key)).collect();
        assert!(plans.len() > 10, "other seeds decide otherwise: {plans:?}");
    }

    #[test]
    fn delays_stay_within_the_maximum_and_the_duplicate_share_is_about_right() {
        let c = chaos(42, 10);
        let plans: Vec<_> = (0..2_000u64)
            .map(|k| c.plan(key_of(&[&k.to_le_bytes()])))
            .collect();
        let twice = plans.iter().filter(|p| p.len() == 2).count();
        assert!((100..=300).contains(&twice), "{twice} of 2000 duplicated");
        assert!(plans.iter().all(|p| !p.is_empty() && p.len() <= 2));
        assert!(plans.iter().flatten().all(|d| *d <= Duration::from_secs(2)));
        let late = plans
            .iter()
            .flatten()
            .filter(|d| **d > Duration::from_secs(1))
            .count();
        assert!(late > 500, "delays spread over 0-2 s: {late} over 1 s");
    }

    #[test]
    fn no_duplicates_at_zero_percent_and_always_at_a_hundred() {
        let key = key_of(&[b"x"]);
        assert!((0..200).all(|s| chaos(s, 0).plan(key).len() == 1));
        assert!((0..200).all(|s| chaos(s, 100).plan(key).len() == 2));
    }

    #[test]
    fn chaos_off_is_none_and_an_unset_seed_is_chosen() {
        assert_eq!(Chaos::from_config(&ChaosConfig::default()), None);
        let on = ChaosConfig {
            enabled: true,
            ..ChaosConfig::default()
        };
        assert!(Chaos::from_config(&on).is_some());
        let seeded = ChaosConfig {
            seed: Some(9),
            ..on
        };
        assert_eq!(Chaos::from_config(&seeded).map(|c| c.seed), Some(9));
    }
}
