//! [`Invocation`]: what the platform allows one invocation of an HTTP function, as one
//! absolute deadline. On Lambda it is the context's deadline (`LambdaEvent.context.
//! deadline`, set by `lambda::run_api_within`); the local hub, which has no Lambda,
//! gives each request API Gateway's integration limit ([`API_GATEWAY_LIMIT`]). Handlers
//! get it as a value, so tests simulate "3 s left" without waiting for a real Lambda.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

/// API Gateway's integration timeout (HTTP API: 30 s; the API functions time out at 29 s).
pub const API_GATEWAY_LIMIT: Duration = Duration::from_secs(29);

/// One invocation's deadline: the wall-clock time by which it must have answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invocation {
    pub deadline: DateTime<Utc>,
}

impl Invocation {
    /// An invocation that must answer by `deadline`.
    pub fn until(deadline: DateTime<Utc>) -> Self {
        Self { deadline }
    }

    /// An invocation that started at `now` and may run for `limit`.
    pub fn starting(now: DateTime<Utc>, limit: Duration) -> Self {
        let limit = chrono::Duration::from_std(limit).unwrap_or(chrono::Duration::MAX);
        Self::until(
            now.checked_add_signed(limit)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        )
    }

    /// Lambda's deadline: milliseconds since the epoch (`Context::deadline`).
    pub fn from_epoch_ms(ms: u64) -> Self {
        let ms = i64::try_from(ms).unwrap_or(i64::MAX);
        Self::until(
            Utc.timestamp_millis_opt(ms)
                .single()
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        )
    }

    /// The time left at `now` (zero once the deadline has passed).
    pub fn remaining(&self, now: DateTime<Utc>) -> Duration {
        (self.deadline - now).to_std().unwrap_or(Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_left_counts_down_to_zero() {
        let now = Utc
            .timestamp_millis_opt(1_700_000_000_000)
            .single()
            .expect("a time");
        let inv = Invocation::starting(now, Duration::from_secs(3));
        assert_eq!(inv, Invocation::from_epoch_ms(1_700_000_003_000));
        assert_eq!(inv.remaining(now), Duration::from_secs(3));
        let later = now + chrono::Duration::milliseconds(2_500);
        assert_eq!(inv.remaining(later), Duration::from_millis(500));
        let past = now + chrono::Duration::seconds(4);
        assert_eq!(inv.remaining(past), Duration::ZERO);
    }

    #[test]
    fn absurd_deadlines_saturate_instead_of_panicking() {
        let inv = Invocation::from_epoch_ms(u64::MAX);
        assert!(inv.remaining(Utc::now()) > Duration::from_secs(3600));
        let inv = Invocation::starting(Utc::now(), Duration::MAX);
        assert!(inv.remaining(Utc::now()) > Duration::from_secs(3600));
    }
}
