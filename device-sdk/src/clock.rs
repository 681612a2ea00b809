//! The wall clock as the SDK reads it: a [`WallClock`] (the system clock by default,
//! or the application's time source) and whether its time can be trusted.
//!
//! A board without a real-time clock boots at 1970 until NTP (or GPS, or the cell
//! network) sets it. The SDK takes a reading earlier than [`CLOCK_FLOOR_UNIX_SECS`]
//! (or one the time source calls unsynced) as "not set": telemetry accepted then is
//! marked `clock_unsynced`, given its real time at publish once the clock is set in
//! the same run (the jump is measured against the monotonic clock), and otherwise
//! stored by the cloud at its receive time; retention never deletes such a record.

use std::fmt;

/// A time before this (2026-01-01T00:00:00Z, before this SDK was built) is a clock that
/// is not set yet.
pub const CLOCK_FLOOR_UNIX_SECS: i64 = 1_767_225_600;

/// [`CLOCK_FLOOR_UNIX_SECS`] in nanoseconds.
pub(crate) const CLOCK_FLOOR_NS: i64 = CLOCK_FLOOR_UNIX_SECS * 1_000_000_000;

/// Where the SDK reads the wall clock.
pub trait WallClock: Send + Sync + fmt::Debug + 'static {
    /// Nanoseconds since the Unix epoch.
    fn unix_ns(&self) -> i64;
    /// Whether the time source knows its time is set (NTP synchronised, GPS fix):
    /// `None` lets the SDK judge by [`CLOCK_FLOOR_UNIX_SECS`].
    fn is_synced(&self) -> Option<bool> {
        None
    }
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn unix_ns(&self) -> i64 {
        crate::session::unix_ns()
    }
}

/// One reading of a wall clock: its time and whether it is set.
pub(crate) fn read(clock: &dyn WallClock) -> (i64, bool) {
    let ns = clock.unix_ns();
    let synced = clock.is_synced().unwrap_or(ns >= CLOCK_FLOOR_NS);
    (ns, synced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed(i64, Option<bool>);

    impl WallClock for Fixed {
        fn unix_ns(&self) -> i64 {
            self.0
        }
        fn is_synced(&self) -> Option<bool> {
            self.1
        }
    }

    #[test]
    fn a_time_before_the_floor_is_a_clock_not_set() {
        assert_eq!(read(&Fixed(5, None)), (5, false));
        assert_eq!(read(&Fixed(CLOCK_FLOOR_NS, None)), (CLOCK_FLOOR_NS, true));
    }

    #[test]
    fn the_time_source_has_the_last_word() {
        assert_eq!(
            read(&Fixed(CLOCK_FLOOR_NS * 2, Some(false))),
            (CLOCK_FLOOR_NS * 2, false)
        );
        assert_eq!(read(&Fixed(5, Some(true))), (5, true));
    }

    #[test]
    fn the_system_clock_of_this_machine_is_set() {
        assert!(read(&SystemClock).1);
    }
}
