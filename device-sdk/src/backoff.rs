//! Reconnection delays and the reconnect policy, free of I/O.
//!
//! - [`Backoff`]: exponential backoff with "equal jitter": attempt `n` waits a uniformly
//!   random time in `[c/2, c]` where `c = min(max, base * 2^n)`, so delays spread
//!   between devices yet never shrink from one attempt to the next;
//! - [`Reconnect`]: when the next CONNECT may go out (never sooner than the connect
//!   interval after the last one, AWS IoT Core's one CONNECT per second per client id),
//!   when the backoff starts over (only once a connection stayed up
//!   [`STABLE_AFTER`]), and how many connections in a row were dropped right after
//!   their CONNACK (a likely duplicate client id or policy denial).

use std::time::{Duration, Instant};

/// Default first ceiling of the reconnection delay.
pub const DEFAULT_BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Default largest reconnection delay.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(128);
/// Default shortest time between two CONNECTs (AWS IoT Core accepts one per second per
/// client id).
pub const DEFAULT_CONNECT_INTERVAL: Duration = Duration::from_secs(1);
/// A connection that stayed up this long resets the backoff.
pub const STABLE_AFTER: Duration = Duration::from_secs(30);
/// A connection that ends sooner than this after its CONNACK counts as dropped right
/// after connecting.
pub const KICKED_WITHIN: Duration = Duration::from_secs(5);
/// Connections in a row dropped right after CONNACK before the status names the likely
/// cause ([`crate::LinkIssue::DroppedAfterConnect`]).
pub const KICKED_IN_A_ROW: u32 = 3;

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

    /// The next delay (in `[ceiling / 2, ceiling]`), and counts one more failed attempt.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        let half = nanos / 2;
        let spread = nanos - half;
        if spread == 0 {
            return Duration::from_nanos(half);
        }
        Duration::from_nanos(half + self.rng.next() % (spread + 1))
    }

    /// After a successful connection: the next failure starts from `base` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

/// What [`Reconnect::on_lost`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Retry {
    /// Wait this long before the next CONNECT.
    pub delay: Duration,
    /// Connections in a row that ended within [`KICKED_WITHIN`] of their CONNACK.
    pub kicked_in_a_row: u32,
    /// The ceiling the delay was drawn under.
    pub ceiling: Duration,
}

/// The reconnect policy of one device (no I/O: instants come in as arguments).
#[derive(Debug, Clone)]
pub(crate) struct Reconnect {
    backoff: Backoff,
    interval: Duration,
    last_connect: Option<Instant>,
    up_since: Option<Instant>,
    kicked_in_a_row: u32,
}

impl Reconnect {
    pub fn new(backoff: Backoff, interval: Duration) -> Self {
        Self {
            backoff,
            interval,
            last_connect: None,
            up_since: None,
            kicked_in_a_row: 0,
        }
    }

    /// A CONNECT is about to go out at `now`: when it may (at least the connect
    /// interval after the previous one). The attempt is recorded at that instant.
    pub fn connect_at(&mut self, now: Instant) -> Instant {
        let at = match self.last_connect {
            Some(last) => now.max(last + self.interval),
            None => now,
        };
        self.last_connect = Some(at);
        at
    }

    /// The broker accepted the connection.
    pub fn on_connack(&mut self, now: Instant) {
        self.up_since = Some(now);
    }

    /// The connection failed (or never came up): the delay before the next attempt.
    /// The backoff starts over only after a connection that stayed up
    /// [`STABLE_AFTER`]; one that ended within [`KICKED_WITHIN`] of its CONNACK adds
    /// to the run of connections dropped right after connecting.
    pub fn on_lost(&mut self, now: Instant) -> Retry {
        if let Some(up) = self.up_since.take() {
            let lasted = now.saturating_duration_since(up);
            if lasted >= STABLE_AFTER {
                self.backoff.reset();
                self.kicked_in_a_row = 0;
            } else if lasted < KICKED_WITHIN {
                self.kicked_in_a_row = self.kicked_in_a_row.saturating_add(1);
            } else {
                self.kicked_in_a_row = 0;
            }
        }
        let ceiling = self.backoff.ceiling();
        let delay = self.backoff.next_delay().max(self.interval);
        Retry {
            delay,
            kicked_in_a_row: self.kicked_in_a_row,
            ceiling,
        }
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
    fn delays_are_jittered_between_half_the_ceiling_and_the_ceiling() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(128), 42);
        for _ in 0..64 {
            b.next_delay();
        }
        // At the max: 1,000 delays in [64 s, 128 s], spread over the whole range.
        let delays: Vec<Duration> = (0..1000).map(|_| b.next_delay()).collect();
        assert!(delays
            .iter()
            .all(|d| *d >= Duration::from_secs(64) && *d <= Duration::from_secs(128)));
        let low = delays.iter().filter(|d| d.as_secs() < 80).count();
        let high = delays.iter().filter(|d| d.as_secs() >= 112).count();
        assert!(low > 150 && high > 150, "low {low}, high {high}");
    }

    #[test]
    fn successive_delays_never_shrink() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(128), 3);
        // Up to the max (1 s to 128 s: 8 ceilings), each delay is at least the last.
        let delays: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{delays:?}");
    }

    fn policy() -> Reconnect {
        Reconnect::new(
            Backoff::new(Duration::from_secs(1), Duration::from_secs(128), 9),
            DEFAULT_CONNECT_INTERVAL,
        )
    }

    #[test]
    fn connects_are_at_least_the_connect_interval_apart() {
        let mut p = policy();
        let t = Instant::now();
        assert_eq!(p.connect_at(t), t);
        assert_eq!(p.connect_at(t), t + Duration::from_secs(1));
        let later = t + Duration::from_secs(10);
        assert_eq!(p.connect_at(later), later);
    }

    #[test]
    fn a_connection_dropped_right_after_connack_does_not_reset_the_backoff() {
        let mut p = policy();
        let mut t = Instant::now();
        let mut ceilings = Vec::new();
        let mut kicked = Vec::new();
        for _ in 0..5 {
            p.on_connack(t);
            t += Duration::from_millis(10);
            let retry = p.on_lost(t);
            assert!(retry.delay >= Duration::from_secs(1));
            ceilings.push(retry.ceiling.as_secs());
            kicked.push(retry.kicked_in_a_row);
            t += retry.delay;
        }
        assert_eq!(ceilings, vec![1, 2, 4, 8, 16]);
        assert_eq!(kicked, vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_connection_that_stayed_up_resets_the_backoff_and_the_run() {
        let mut p = policy();
        let t = Instant::now();
        for _ in 0..3 {
            p.on_connack(t);
            p.on_lost(t);
        }
        p.on_connack(t);
        let retry = p.on_lost(t + STABLE_AFTER);
        assert_eq!(retry.ceiling, Duration::from_secs(1));
        assert_eq!(retry.kicked_in_a_row, 0);
    }

    #[test]
    fn failed_attempts_without_connack_keep_the_run_of_kicks() {
        let mut p = policy();
        let t = Instant::now();
        p.on_connack(t);
        assert_eq!(p.on_lost(t).kicked_in_a_row, 1);
        // A refused TCP connect: no CONNACK, the run stays.
        assert_eq!(p.on_lost(t).kicked_in_a_row, 1);
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_secs(1), 1);
        for _ in 0..100 {
            assert!(b.next_delay() <= Duration::from_secs(1));
        }
    }
}
