//! Sessions, the session table and routing.
//!
//! Every subscription of a device starts with `mir/{its id}/` (the policy), so a topic
//! `mir/{id}/...` can only match subscriptions of the session `{id}`: routing is one
//! table lookup, whatever the number of devices.
//!
//! Lock order: the session table before a session's state, never the reverse.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, RwLock,
    },
};

use bytes::{Bytes, BytesMut};
use tokio::sync::{oneshot, watch, Notify};
use tracing::warn;

use crate::{codec, BrokerConfig, DisconnectReason, Hooks};

/// A message waiting for, or in flight to, one session.
#[derive(Debug, Clone)]
pub(crate) struct OutMsg {
    pub topic: Bytes,
    pub payload: Bytes,
    pub qos: u8,
}

/// The connection currently attached to a session.
pub(crate) struct Link {
    pub conn_id: u64,
    /// Asks the connection to close (taken by whoever kicks it).
    pub kick: Option<oneshot::Sender<DisconnectReason>>,
    /// Completes once the connection ended, hooks included.
    pub done: Option<oneshot::Receiver<()>>,
}

pub(crate) struct SessionState {
    /// (filter, granted qos)
    pub subs: Vec<(String, u8)>,
    pub pending: VecDeque<OutMsg>,
    /// Sent QoS 1 messages waiting for PUBACK, in send order.
    pub inflight: VecDeque<(u16, OutMsg)>,
    next_pkid: u16,
    pub link: Option<Link>,
    dropped: u64,
}

pub(crate) struct Session {
    pub client_id: String,
    /// `clean_session = false`: kept while offline.
    pub persistent: bool,
    /// Woken when `pending` grows.
    pub wake: Notify,
    state: Mutex<SessionState>,
}

impl Session {
    pub fn new(client_id: &str, persistent: bool) -> Self {
        Self {
            client_id: client_id.to_string(),
            persistent,
            wake: Notify::new(),
            state: Mutex::new(SessionState {
                subs: Vec::new(),
                pending: VecDeque::new(),
                inflight: VecDeque::new(),
                next_pkid: 0,
                link: None,
                dropped: 0,
            }),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `topic` for this session if one of its subscriptions matches.
    /// Returns whether it was queued.
    fn deliver(&self, topic: &Bytes, payload: &Bytes, qos: u8, max_queued: usize) -> bool {
        let Ok(topic_str) = std::str::from_utf8(topic) else {
            return false;
        };
        let mut st = self.state();
        let granted = st
            .subs
            .iter()
            .filter(|(f, _)| mir_proto::topics::matches(f, topic_str))
            .map(|(_, q)| *q)
            .max();
        let Some(granted) = granted else {
            return false;
        };
        let qos = qos.min(granted);
        if st.link.is_none() && (qos == 0 || !self.persistent) {
            return false;
        }
        if st.pending.len() >= max_queued.max(1) {
            st.pending.pop_front();
            st.dropped += 1;
            let dropped = st.dropped;
            if dropped == 1 || dropped.is_power_of_two() || dropped.is_multiple_of(1000) {
                warn!(
                    client_id = %self.client_id,
                    dropped,
                    max_queued,
                    "session queue full: dropped the oldest message"
                );
            }
        }
        st.pending.push_back(OutMsg {
            topic: topic.clone(),
            payload: payload.clone(),
            qos,
        });
        drop(st);
        self.wake.notify_one();
        true
    }
}

impl SessionState {
    fn alloc_pkid(&mut self) -> u16 {
        loop {
            self.next_pkid = self.next_pkid.wrapping_add(1);
            if self.next_pkid == 0 {
                continue;
            }
            let id = self.next_pkid;
            if self.inflight.is_empty() || !self.inflight.iter().any(|(p, _)| *p == id) {
                return id;
            }
        }
    }

    /// Encodes pending messages into `out` within the in-flight window, up to about
    /// `budget` bytes. Returns whether more could be sent right away.
    pub fn drain_into(&mut self, out: &mut BytesMut, max_inflight: usize, budget: usize) -> bool {
        let start = out.len();
        while let Some(front) = self.pending.front() {
            if front.qos > 0 && self.inflight.len() >= max_inflight {
                return false;
            }
            if out.len() - start >= budget {
                return true;
            }
            let Some(msg) = self.pending.pop_front() else {
                break;
            };
            if msg.qos == 0 {
                codec::put_publish(out, false, 0, 0, &msg.topic, &msg.payload);
            } else {
                let pkid = self.alloc_pkid();
                codec::put_publish(out, false, 1, pkid, &msg.topic, &msg.payload);
                self.inflight.push_back((pkid, msg));
            }
        }
        false
    }

    /// Encodes every in-flight message again with DUP set (resumed session).
    pub fn retransmit_into(&self, out: &mut BytesMut) {
        for (pkid, msg) in &self.inflight {
            codec::put_publish(out, true, 1, *pkid, &msg.topic, &msg.payload);
        }
    }

    pub fn acked(&mut self, pkid: u16) {
        if let Some(pos) = self.inflight.iter().position(|(p, _)| *p == pkid) {
            self.inflight.remove(pos);
        }
    }
}

/// State shared by the listeners, the connections and the handles.
pub(crate) struct Shared {
    pub max_payload: usize,
    pub max_inflight: usize,
    pub max_queued: usize,
    pub hooks: Arc<dyn Hooks>,
    pub shutdown: watch::Receiver<bool>,
    sessions: RwLock<HashMap<String, Arc<Session>>>,
    next_conn: AtomicU64,
    /// The last connection version handed out (see [`Shared::attach`]).
    last_version: AtomicU64,
}

/// Result of attaching a connection to the session table.
pub(crate) enum Attach {
    Attached {
        session: Arc<Session>,
        session_present: bool,
        /// This connection's version (AWS's `versionNumber`), higher than that of
        /// every connection attached before it.
        version: u64,
    },
    /// Another connection holds the id: it must be kicked and awaited first.
    Busy {
        kick: Option<oneshot::Sender<DisconnectReason>>,
        done: Option<oneshot::Receiver<()>>,
    },
}

impl Shared {
    pub fn new(
        config: &BrokerConfig,
        hooks: Arc<dyn Hooks>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            max_payload: config.max_payload,
            max_inflight: usize::from(config.max_inflight.max(1)),
            max_queued: config.max_queued_per_session.max(1),
            hooks,
            shutdown,
            sessions: RwLock::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            last_version: AtomicU64::new(0),
        }
    }

    /// The next connection version: microseconds since the Unix epoch, or one more than
    /// the last version when the clock has not moved on (or went back). Strictly
    /// increasing within the process, and across restarts as long as the wall clock
    /// does not go back further than the downtime.
    fn next_version(&self) -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let prev = self
            .last_version
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| {
                Some(now.max(last.saturating_add(1)))
            })
            .unwrap_or_else(|last| last);
        now.max(prev.saturating_add(1))
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    fn table(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Session>>> {
        self.sessions.read().unwrap_or_else(|e| e.into_inner())
    }

    fn table_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Session>>> {
        self.sessions.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Attaches connection `conn_id` to the session of `client_id`, or reports the
    /// connection that holds it. `force` steals a session whose holder did not end in time.
    /// The connection's version is taken under the table lock, so a connection that
    /// takes over a client id always has a higher version than the one it replaced.
    pub fn attach(
        &self,
        client_id: &str,
        clean: bool,
        conn_id: u64,
        force: bool,
        kick: &mut Option<oneshot::Sender<DisconnectReason>>,
        done: &mut Option<oneshot::Receiver<()>>,
    ) -> Attach {
        let mut table = self.table_mut();
        let existing = table.get(client_id).cloned();
        let mut session_present = false;
        let session = match existing {
            Some(s) => {
                let mut st = s.state();
                if let Some(link) = st.link.as_mut() {
                    if !force {
                        return Attach::Busy {
                            kick: link.kick.take(),
                            done: link.done.take(),
                        };
                    }
                }
                if !clean && s.persistent {
                    session_present = true;
                    st.link = Some(Link {
                        conn_id,
                        kick: kick.take(),
                        done: done.take(),
                    });
                    drop(st);
                    s
                } else {
                    drop(st);
                    self.fresh(&mut table, client_id, clean, conn_id, kick, done)
                }
            }
            None => self.fresh(&mut table, client_id, clean, conn_id, kick, done),
        };
        Attach::Attached {
            session,
            session_present,
            version: self.next_version(),
        }
    }

    fn fresh(
        &self,
        table: &mut HashMap<String, Arc<Session>>,
        client_id: &str,
        clean: bool,
        conn_id: u64,
        kick: &mut Option<oneshot::Sender<DisconnectReason>>,
        done: &mut Option<oneshot::Receiver<()>>,
    ) -> Arc<Session> {
        let s = Arc::new(Session::new(client_id, !clean));
        s.state().link = Some(Link {
            conn_id,
            kick: kick.take(),
            done: done.take(),
        });
        table.insert(client_id.to_string(), s.clone());
        s
    }

    /// Detaches connection `conn_id`; a clean session is dropped with it.
    pub fn detach(&self, session: &Arc<Session>, conn_id: u64) {
        {
            let mut st = session.state();
            if st.link.as_ref().is_some_and(|l| l.conn_id == conn_id) {
                st.link = None;
            }
        }
        if session.persistent {
            return;
        }
        let mut table = self.table_mut();
        let ours = table
            .get(&session.client_id)
            .is_some_and(|s| Arc::ptr_eq(s, session) && s.state().link.is_none());
        if ours {
            table.remove(&session.client_id);
        }
    }

    /// Routes a message to the session its topic belongs to (`mir/{id}/...`).
    /// Returns how many sessions it was delivered or queued to (0 or 1).
    pub fn route(&self, topic: &Bytes, payload: &Bytes, qos: u8) -> usize {
        let Some(id) = topic_owner(topic) else {
            return 0;
        };
        let session = self.table().get(id).cloned();
        match session {
            Some(s) => usize::from(s.deliver(topic, payload, qos, self.max_queued)),
            None => 0,
        }
    }

    /// Routes a message published by the owner of `session` on its own topic.
    pub fn route_own(&self, session: &Session, topic: &Bytes, payload: &Bytes, qos: u8) -> usize {
        usize::from(session.deliver(topic, payload, qos, self.max_queued))
    }

    pub fn is_connected(&self, client_id: &str) -> bool {
        self.table()
            .get(client_id)
            .is_some_and(|s| s.state().link.is_some())
    }

    pub fn connected_clients(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .table()
            .values()
            .filter(|s| s.state().link.is_some())
            .map(|s| s.client_id.clone())
            .collect();
        ids.sort();
        ids
    }
}

/// `{id}` of a topic `mir/{id}/...`.
fn topic_owner(topic: &[u8]) -> Option<&str> {
    let rest = topic.strip_prefix(b"mir/")?;
    let end = rest.iter().position(|b| *b == b'/')?;
    std::str::from_utf8(&rest[..end]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_versions_only_go_up_and_start_from_the_wall_clock() {
        let (_tx, rx) = watch::channel(false);
        struct NoHooks;
        #[async_trait::async_trait]
        impl Hooks for NoHooks {
            async fn on_connect(&self, _: &crate::ClientInfo) {}
            async fn on_disconnect(&self, _: &crate::ClientInfo, _: DisconnectReason) {}
            async fn on_publish(&self, _: &crate::ClientInfo, _: &str, _: Bytes) {}
        }
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
        shared.last_version.store(u64::MAX / 2, Ordering::Release);
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
        let s = Session::new("a", true);
        let mut st = s.state();
        st.next_pkid = u16::MAX - 1;
        let msg = OutMsg {
            topic: Bytes::new(),
            payload: Bytes::new(),
            qos: 1,
        };
        st.inflight.push_back((1, msg));
        assert_eq!(st.alloc_pkid(), u16::MAX);
        assert_eq!(st.alloc_pkid(), 2);
    }

    #[test]
    fn the_window_bounds_qos1_but_not_qos0() {
        let s = Session::new("a", true);
        let mut st = s.state();
        for qos in [1, 1, 0] {
            st.pending.push_back(OutMsg {
                topic: Bytes::from_static(b"mir/a/cmd/req"),
                payload: Bytes::new(),
                qos,
            });
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
}
