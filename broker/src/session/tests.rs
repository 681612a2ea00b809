#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

use super::table::topic_owner;
use super::*;
use crate::{BrokerConfig, ClientInfo, HookError, Hooks};

struct NoHooks;

#[async_trait::async_trait]
impl Hooks for NoHooks {
    async fn on_connect(&self, _: &ClientInfo) {}
    async fn on_disconnect(&self, _: &ClientInfo, _: DisconnectReason) {}
    async fn on_publish(&self, _: &ClientInfo, _: &str, _: Bytes) -> Result<(), HookError> {
        Ok(())
    }
}

fn msg(size: usize, qos: u8) -> OutMsg {
    OutMsg {
        topic: Bytes::from_static(b"t"),
        payload: Bytes::from(vec![0u8; size - 1]),
        qos,
    }
}

fn limits(max_messages: usize, max_session_bytes: usize, max_total_bytes: usize) -> QueueLimits {
    QueueLimits {
        max_messages,
        max_session_bytes,
        max_total_bytes,
    }
}

#[test]
fn connection_versions_only_go_up_and_start_from_the_wall_clock() {
    let (_tx, rx) = watch::channel(false);
    let shared = Shared::new(&BrokerConfig::default(), Arc::new(NoHooks), rx);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    let versions: Vec<u64> = (0..10_000).map(|_| shared.next_version()).collect();
    assert!(versions[0] >= before, "a restarted broker does not go back");
    assert!(
        versions.windows(2).all(|w| w[0] < w[1]),
        "strictly increasing, even within one microsecond"
    );
    // A clock that went back (or a version from the future) is overtaken, not repeated.
    shared.set_last_version(u64::MAX / 2);
    assert_eq!(shared.next_version(), u64::MAX / 2 + 1);
}

#[test]
fn the_owner_is_the_second_level() {
    assert_eq!(topic_owner(b"mir/dev-1/cmd/req"), Some("dev-1"));
    assert_eq!(topic_owner(b"mir/dev-1"), None);
    assert_eq!(topic_owner(b"other/dev-1/x"), None);
}

#[test]
fn packet_ids_skip_zero_and_those_in_flight() {
    let s = Session::new("a", true, Arc::default());
    let mut st = s.state();
    st.next_pkid = u16::MAX - 1;
    st.inflight.push_back((1, msg(1, 1)));
    assert_eq!(st.alloc_pkid(), u16::MAX);
    assert_eq!(st.alloc_pkid(), 2);
}

#[test]
fn the_window_bounds_qos1_but_not_qos0() {
    let s = Session::new("a", true, Arc::default());
    let mut st = s.state();
    let l = limits(10, 1 << 20, 1 << 20);
    for qos in [1, 1, 0] {
        assert_eq!(st.enqueue(msg(10, qos), &l), (true, vec![]));
    }
    let mut out = BytesMut::new();
    assert!(!st.drain_into(&mut out, 1, 1 << 20));
    assert_eq!(st.inflight.len(), 1);
    assert_eq!(st.pending.len(), 2);
    let pkid = st.inflight[0].0;
    st.acked(pkid);
    assert!(!st.drain_into(&mut out, 1, 1 << 20));
    assert_eq!((st.inflight.len(), st.pending.len()), (1, 0));
}

#[test]
fn the_byte_cap_of_a_session_drops_the_oldest_in_flight_first() {
    let metrics = Arc::new(Metrics::default());
    let s = Session::new("a", true, metrics.clone());
    let mut st = s.state();
    let l = limits(100, 30, 1 << 20);
    for i in 0..3u8 {
        let m = OutMsg {
            topic: Bytes::from_static(b"t"),
            payload: Bytes::from(vec![i; 9]),
            qos: 1,
        };
        assert_eq!(st.enqueue(m, &l), (true, vec![]));
    }
    // Two in flight (0 and 1), one waiting (2).
    st.drain_into(&mut BytesMut::new(), 2, 1 << 20);
    assert_eq!((st.inflight.len(), st.pending.len()), (2, 1));
    // 30 + 15 > 30: the two oldest go, both in flight; 2 and the new one stay.
    let (queued, hits) = st.enqueue(msg(15, 1), &l);
    assert!(queued);
    assert_eq!(hits, vec![Limit::SessionQueueBytes; 2]);
    assert_eq!((st.inflight.len(), st.pending.len()), (0, 2));
    assert_eq!(st.pending[0].payload[0], 2);
    assert_eq!(st.bytes, 25);
    assert_eq!(metrics.snapshot(0, 0).queued_bytes, 25);
    assert_eq!(metrics.snapshot(0, 0).queued_messages, 2);
    // Larger than the whole cap: never queued, nothing else dropped.
    assert_eq!(
        st.enqueue(msg(31, 1), &l),
        (false, vec![Limit::SessionQueueBytes])
    );
    assert_eq!(st.bytes, 25);
    // A late PUBACK of a dropped message changes nothing.
    st.acked(1);
    assert_eq!(st.bytes, 25);
}

#[test]
fn the_message_cap_of_a_session_drops_the_oldest_waiting_message() {
    let s = Session::new("a", true, Arc::default());
    let mut st = s.state();
    let l = limits(2, 1 << 20, 1 << 20);
    for i in 0..3u8 {
        st.enqueue(
            OutMsg {
                topic: Bytes::from_static(b"t"),
                payload: Bytes::from(vec![i]),
                qos: 1,
            },
            &l,
        );
    }
    let left: Vec<u8> = st.pending.iter().map(|m| m.payload[0]).collect();
    assert_eq!(left, vec![1, 2]);
}

#[test]
fn the_broker_byte_cap_counts_every_session_and_frees_what_they_release() {
    let metrics = Arc::new(Metrics::default());
    let a = Session::new("a", true, metrics.clone());
    let b = Session::new("b", true, metrics.clone());
    let c = Session::new("c", true, metrics.clone());
    let l = limits(100, 1 << 20, 50);
    for _ in 0..4 {
        assert!(a.state().enqueue(msg(10, 1), &l).0);
    }
    // 40 of 50 used by `a`: `b` has room for one, then makes room by dropping its own
    // oldest; `c` has nothing to drop and its message is not queued.
    assert_eq!(b.state().enqueue(msg(10, 1), &l), (true, vec![]));
    assert_eq!(
        b.state().enqueue(msg(10, 1), &l),
        (true, vec![Limit::BrokerQueueBytes])
    );
    assert_eq!(
        c.state().enqueue(msg(10, 1), &l),
        (false, vec![Limit::BrokerQueueBytes])
    );
    assert_eq!(metrics.snapshot(0, 0).queued_bytes, 50);
    assert_eq!(metrics.snapshot(0, 0).queued_messages, 5);
    drop(a);
    let after = metrics.snapshot(0, 0);
    assert_eq!(
        (after.queued_bytes, after.queued_messages),
        (10, 1),
        "a dropped session frees its queue"
    );
    assert!(c.state().enqueue(msg(10, 1), &l).0);
}

#[test]
fn a_session_holds_at_most_max_subscriptions_and_renewing_one_does_not_count() {
    let s = Session::new("d1", true, Arc::default());
    let mut st = s.state();
    let filters = |names: &[&str]| names.iter().map(|f| (f.to_string(), 2)).collect::<Vec<_>>();
    let got = st.subscribe("d1", filters(&["mir/d1/a", "mir/d1/b", "mir/d2/a"]), 2);
    let outcomes: Vec<SubOutcome> = got.into_iter().map(|(_, o)| o).collect();
    assert_eq!(
        outcomes,
        vec![
            SubOutcome::Granted(1),
            SubOutcome::Granted(1),
            SubOutcome::OutsidePolicy
        ]
    );
    let got = st.subscribe("d1", filters(&["mir/d1/c", "mir/d1/a"]), 2);
    let outcomes: Vec<u8> = got.into_iter().map(|(_, o)| o.code()).collect();
    assert_eq!(
        outcomes,
        vec![0x80, 1],
        "a third is refused, renewing the first is not"
    );
    assert_eq!(st.subs.len(), 2);
}
