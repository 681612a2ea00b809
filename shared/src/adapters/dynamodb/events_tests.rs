//! Unit tests of the DynamoDB event keys.

use super::*;

#[test]
fn event_time_keys_order_like_the_times() {
    let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
    let t1 = t0 + chrono::Duration::nanoseconds(1);
    assert!(event_time_key(t0, "z") < event_time_key(t1, "a"));
    assert_eq!(day_of(t0), "2023-11-14");
}
