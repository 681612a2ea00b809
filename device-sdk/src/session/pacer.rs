//! Pacing of publishes under AWS IoT Core's per-connection limits (100 publishes and
//! 512 KiB per second): two token buckets, one of publishes and one of bytes, filled
//! at the configured rates. A bucket holds at most its burst, so that over any second
//! at most `burst + rate` leave: with the defaults ([`Pace::AWS`]) 20 + 80 publishes
//! and 128 + 384 KiB. A publish larger than the byte burst leaves once the bucket is
//! full (and the next ones wait for what it overdrew). Time comes in as arguments.

use std::time::{Duration, Instant};

/// Rates of publishes on one connection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    /// Publishes per second, and at most `publishes_burst` at once.
    pub publishes_per_sec: f64,
    pub publishes_burst: f64,
    /// Payload bytes per second, and at most `bytes_burst` at once.
    pub bytes_per_sec: f64,
    pub bytes_burst: f64,
}

impl Pace {
    /// Under AWS IoT Core's limits per connection: 100 publishes/s and 512 KiB/s.
    pub const AWS: Pace = Pace {
        publishes_per_sec: 80.0,
        publishes_burst: 20.0,
        bytes_per_sec: 384.0 * 1024.0,
        bytes_burst: 128.0 * 1024.0,
    };
}

/// Slack for the rounding of the buckets' floating-point arithmetic.
const EPSILON: f64 = 1e-6;

#[derive(Debug, Clone)]
pub(super) struct Pacer {
    pace: Pace,
    publishes: f64,
    bytes: f64,
    at: Option<Instant>,
}

impl Pacer {
    /// Full buckets.
    pub fn new(pace: Pace) -> Self {
        Self {
            pace,
            publishes: pace.publishes_burst,
            bytes: pace.bytes_burst,
            at: None,
        }
    }

    /// Fills the buckets for the time since the last call.
    pub fn refill(&mut self, now: Instant) {
        if let Some(at) = self.at {
            let dt = now.saturating_duration_since(at).as_secs_f64();
            self.publishes =
                (self.publishes + dt * self.pace.publishes_per_sec).min(self.pace.publishes_burst);
            self.bytes = (self.bytes + dt * self.pace.bytes_per_sec).min(self.pace.bytes_burst);
        }
        self.at = Some(now);
    }

    /// Whether a publish of `bytes` may leave now.
    pub fn allows(&self, bytes: usize) -> bool {
        let need = (bytes as f64).min(self.pace.bytes_burst);
        // Within rounding: a refill to exactly the need may come out a hair short.
        self.publishes >= 1.0 - EPSILON && self.bytes >= need - EPSILON
    }

    /// A publish of `bytes` left.
    pub fn take(&mut self, bytes: usize) {
        self.publishes -= 1.0;
        self.bytes -= bytes as f64;
    }

    /// When a publish of `bytes` may leave.
    pub fn ready_at(&self, bytes: usize) -> Option<Instant> {
        let at = self.at?;
        let need = (bytes as f64).min(self.pace.bytes_burst);
        let wait_publishes = (1.0 - self.publishes).max(0.0) / self.pace.publishes_per_sec;
        let wait_bytes = (need - self.bytes).max(0.0) / self.pace.bytes_per_sec;
        // Rounded up (the conversion truncates to whole nanoseconds).
        let wait = Duration::from_secs_f64(wait_publishes.max(wait_bytes));
        Some(at + wait + Duration::from_micros(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Publishes of `bytes` leaving as soon as allowed over `secs` seconds, counted per
    /// whole second.
    fn per_second(pace: Pace, bytes: usize, secs: u64) -> Vec<(u32, usize)> {
        let start = Instant::now();
        let mut pacer = Pacer::new(pace);
        let mut now = start;
        let mut seconds = vec![(0u32, 0usize); secs as usize];
        for _ in 0..1_000_000 {
            pacer.refill(now);
            if pacer.allows(bytes) {
                pacer.take(bytes);
                let s = now.duration_since(start).as_secs() as usize;
                seconds[s].0 += 1;
                seconds[s].1 += bytes;
            } else {
                now = pacer.ready_at(bytes).expect("refilled").max(now);
            }
            if now.duration_since(start) >= Duration::from_secs(secs) {
                break;
            }
        }
        seconds
    }

    #[test]
    fn small_publishes_stay_under_100_a_second() {
        let seconds = per_second(Pace::AWS, 200, 5);
        assert!(seconds.iter().all(|(n, _)| *n <= 100), "{seconds:?}");
        // After the first second's burst, the rate.
        assert!(
            seconds[1..].iter().all(|(n, _)| (79..=81).contains(n)),
            "{seconds:?}"
        );
    }

    #[test]
    fn full_batches_stay_under_512_kib_a_second() {
        let seconds = per_second(Pace::AWS, 127 * 1024, 5);
        assert!(seconds.iter().all(|(_, b)| *b <= 512 * 1024), "{seconds:?}");
        assert!(seconds[1..].iter().all(|(n, _)| *n >= 2), "{seconds:?}");
    }
}
