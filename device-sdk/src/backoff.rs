//! Reconnection delays: exponential backoff with full jitter (AWS's recommendation):
//! attempt `n` waits a uniformly random time in `[0, min(max, base * 2^n)]`.

use std::time::Duration;

/// Default first ceiling of the reconnection delay.
pub const DEFAULT_BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Default largest reconnection delay.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(128);

/// Reconnection delays of one device.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
    rng: SplitMix64,
}

impl Backoff {
    /// `base` is the ceiling of the first delay, `max` the ceiling of every delay;
    /// `seed` makes the jitter differ between devices.
    pub fn new(base: Duration, max: Duration, seed: u64) -> Self {
        Self {
            base,
            max: max.max(base),
            attempt: 0,
            rng: SplitMix64(seed),
        }
    }

    /// The ceiling of the next delay.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The next delay (full jitter), and counts one more failed attempt.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.rng.next() % (nanos + 1))
    }

    /// After a successful connection: the next failure starts from `base` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

/// A small PRNG for the jitter (no dependency, not for cryptography).
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A seed from the device id and the clock.
pub(crate) fn seed(device_id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in device_id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h ^ u64::try_from(crate::session::unix_ns()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_from_the_base_up_to_the_max() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(128), 7);
        let mut ceilings = Vec::new();
        for _ in 0..10 {
            ceilings.push(b.ceiling().as_secs());
            b.next_delay();
        }
        assert_eq!(ceilings, vec![1, 2, 4, 8, 16, 32, 64, 128, 128, 128]);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_secs(1));
        assert_eq!(b.attempt(), 0);
    }

    #[test]
    fn delays_are_full_jitter_within_the_ceiling_and_spread() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(128), 42);
        for _ in 0..64 {
            b.next_delay();
        }
        // At the max: 1,000 delays in [0, 128 s], spread over the whole range.
        let delays: Vec<Duration> = (0..1000).map(|_| b.next_delay()).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(128)));
        let low = delays.iter().filter(|d| d.as_secs() < 32).count();
        let high = delays.iter().filter(|d| d.as_secs() >= 96).count();
        assert!(low > 150 && high > 150, "low {low}, high {high}");
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_secs(1), 1);
        for _ in 0..100 {
            assert!(b.next_delay() <= Duration::from_secs(1));
        }
    }
}
