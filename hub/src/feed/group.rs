//! Worker mode: `GET /v1/events/watch?group=<name>` (a shared subscription). Each event
//! goes to exactly one member of the group connected when it is published.
//!
//! - **Assignment:** at publish time, round-robin among the group's members whose filter
//!   takes the event (members of one group normally share one filter). A member whose
//!   queue ([`MEMBER_QUEUE`]) is full is skipped for the next one; when every member's is
//!   full the event is not delivered to the group (a warning is logged; it stays in the
//!   store). A group drops an id it assigned recently ([`GROUP_RECENT_IDS`]), so an
//!   event the store published twice (a redelivered invocation) goes to one member once.
//! - **A member leaving** (its connection closed): the events still queued for it and the
//!   last [`IN_FLIGHT`] it was sent (which it may not have handled) are assigned again
//!   among the remaining members: **at least once** across a leave, so a worker's side
//!   effects must be idempotent; nothing is lost while members stay connected. With no
//!   member left, they are not delivered (they stay in the store: `GET /v1/events`).
//! - A group stream has no `Last-Event-ID` replay and is not told it lagged: the group is
//!   the unit of delivery, not the connection.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
};

use tokio::sync::mpsc;

use mir_shared::domain::{FeedEvent, FeedFilter, RecentIds};

/// Events queued for one member before it is skipped.
pub const MEMBER_QUEUE: usize = 4096;
/// How many of the events sent to a member are assigned again when it leaves.
pub const IN_FLIGHT: usize = 64;
/// How many assigned ids a group remembers to drop a republished event.
pub const GROUP_RECENT_IDS: usize = 16_384;

/// The groups of one hub.
#[derive(Default)]
pub struct Groups {
    inner: Mutex<HashMap<String, Group>>,
    next_id: AtomicU64,
}

struct Group {
    members: Vec<Member>,
    next: usize,
    assigned: RecentIds,
}

struct Member {
    id: u64,
    filter: FeedFilter,
    tx: mpsc::Sender<Arc<FeedEvent>>,
}

/// One member's membership: its queue, and what it was sent (see [`Membership::sent`]).
pub struct Membership {
    groups: Arc<Groups>,
    group: String,
    id: u64,
    pub rx: mpsc::Receiver<Arc<FeedEvent>>,
    recent: VecDeque<Arc<FeedEvent>>,
}

impl Groups {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        // A panic while holding the lock leaves plain data; keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Adds a member to `group` (created on its first member).
    pub fn join(self: &Arc<Self>, group: &str, filter: FeedFilter) -> Membership {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(MEMBER_QUEUE);
        self.lock()
            .entry(group.to_string())
            .or_insert_with(|| Group {
                members: Vec::new(),
                next: 0,
                assigned: RecentIds::new(GROUP_RECENT_IDS),
            })
            .members
            .push(Member { id, filter, tx });
        Membership {
            groups: self.clone(),
            group: group.to_string(),
            id,
            rx,
            recent: VecDeque::new(),
        }
    }

    /// Assigns `e` to one member of each group that wants it.
    pub fn dispatch(&self, e: &Arc<FeedEvent>) {
        for (name, group) in self.lock().iter_mut() {
            if !group.assigned.insert(&e.id) {
                continue;
            }
            if !group.assign(e) && group.members.iter().any(|m| m.filter.matches(e)) {
                tracing::warn!(group = %name, id = %e.id, "event feed: every member of the group is full; the event is not delivered to it");
            }
        }
    }
}

impl Group {
    /// Gives `e` to the next member (round-robin) whose filter takes it and whose queue
    /// has room. False when none did.
    fn assign(&mut self, e: &Arc<FeedEvent>) -> bool {
        let n = self.members.len();
        for step in 0..n {
            let i = (self.next + step) % n;
            let m = &self.members[i];
            if m.filter.matches(e) && m.tx.try_send(e.clone()).is_ok() {
                self.next = (i + 1) % n;
                return true;
            }
        }
        false
    }
}

impl Membership {
    /// Records that `e` was sent to the member (kept for a reassignment if it leaves).
    pub fn sent(&mut self, e: Arc<FeedEvent>) {
        if self.recent.len() == IN_FLIGHT {
            self.recent.pop_front();
        }
        self.recent.push_back(e);
    }
}

impl Drop for Membership {
    /// Leaves the group; what was queued for the member and the last it was sent go to
    /// the others.
    fn drop(&mut self) {
        self.rx.close();
        let mut orphans: Vec<Arc<FeedEvent>> = self.recent.drain(..).collect();
        while let Ok(e) = self.rx.try_recv() {
            orphans.push(e);
        }
        let mut groups = self.groups.lock();
        let Some(group) = groups.get_mut(&self.group) else {
            return;
        };
        group.members.retain(|m| m.id != self.id);
        if group.members.is_empty() {
            groups.remove(&self.group);
            return;
        }
        group.next = 0;
        let lost = orphans.iter().filter(|e| !group.assign(e)).count();
        if lost > 0 {
            tracing::warn!(group = %self.group, lost, "event feed: a member left and its events could not be assigned again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mir_shared::domain::{Event, EventReason};

    fn event(i: usize) -> Arc<FeedEvent> {
        let e = Event::new(
            EventReason::DeviceOnline,
            "d",
            chrono::Utc::now(),
            &i.to_string(),
            "on",
        );
        Arc::new(FeedEvent::new(e, Default::default()))
    }

    fn drain(m: &mut Membership) -> Vec<String> {
        let mut ids = Vec::new();
        while let Ok(e) = m.rx.try_recv() {
            ids.push(e.id.clone());
        }
        ids
    }

    #[test]
    fn events_go_round_robin_to_one_member_each_and_a_republished_one_once() {
        let groups = Arc::new(Groups::default());
        let mut a = groups.join("g", FeedFilter::default());
        let mut b = groups.join("g", FeedFilter::default());
        let mut other = groups.join("h", FeedFilter::default());
        let events: Vec<_> = (0..10).map(event).collect();
        for e in &events {
            groups.dispatch(e);
        }
        groups.dispatch(&events[0]);
        let (ga, gb) = (drain(&mut a), drain(&mut b));
        assert_eq!((ga.len(), gb.len()), (5, 5));
        assert!(ga.iter().all(|id| !gb.contains(id)));
        assert_eq!(drain(&mut other).len(), 10, "another group gets them all");
    }

    #[test]
    fn a_member_that_leaves_hands_its_queued_and_last_sent_events_to_the_others() {
        let groups = Arc::new(Groups::default());
        let mut a = groups.join("g", FeedFilter::default());
        let mut b = groups.join("g", FeedFilter::default());
        for e in (0..4).map(event) {
            groups.dispatch(&e);
        }
        let first = b.rx.try_recv().expect("b's first");
        b.sent(first.clone());
        drop(b);
        let got = drain(&mut a);
        assert_eq!(
            got.len(),
            4,
            "a had 2, b's sent one and queued one came over: {got:?}"
        );
        assert!(got.contains(&first.id));
        drop(a);
        assert!(groups.is_empty(), "a group without members is gone");
    }

    #[test]
    fn a_member_gets_only_what_its_filter_takes() {
        let groups = Arc::new(Groups::default());
        let mut a = groups.join(
            "g",
            FeedFilter {
                device_id: Some("other".into()),
                ..FeedFilter::default()
            },
        );
        let mut b = groups.join("g", FeedFilter::default());
        for e in (0..3).map(event) {
            groups.dispatch(&e);
        }
        assert!(drain(&mut a).is_empty());
        assert_eq!(drain(&mut b).len(), 3);
    }
}
