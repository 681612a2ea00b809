//! Unit tests of the DynamoDB event keys.

use super::*;

#[test]
fn event_time_keys_order_like_the_times_and_read_back() {
    let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
    let t1 = t0 + chrono::Duration::nanoseconds(1);
    assert!(event_time_key(t0, "z") < event_time_key(t1, "a"));
    assert!(event_time_key(t0, "z") < event_time_key(t1, ""));
    assert_eq!(day_of(t0), "2023-11-14");
    for t in [
        t0,
        t1,
        DateTime::from_timestamp(-86_400, 5).unwrap_or_default(),
    ] {
        assert_eq!(time_of_key(&event_time_key(t, "id")), Some(t));
    }
    for bad in ["", "12:x", "abcdefghijklmnopqrst:x", "00000000000000000001"] {
        assert_eq!(time_of_key(bad), None, "{bad:?}");
    }
}

#[test]
fn event_ids_spread_evenly_over_the_shards_of_a_day() {
    let mut counts = [0u32; EVENT_SHARDS as usize];
    for i in 0..16_000 {
        let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, format!("e{i}").as_bytes());
        counts[shard_of(&id.to_string()) as usize] += 1;
    }
    let (min, max) = (counts.iter().min(), counts.iter().max());
    assert!(
        min.is_some_and(|m| *m > 800) && max.is_some_and(|m| *m < 1_200),
        "{counts:?}"
    );
    assert_eq!(shard_of("a"), shard_of("a"));
    assert_eq!(day_pk("2023-11-14", 3), "DAY#2023-11-14#03");
}
