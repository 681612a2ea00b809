//! The session table, routing, session expiry, and the budget of connections that
//! have not sent CONNECT yet.
//!
//! Every subscription of a device starts with `mir/{its id}/` (the policy), so a topic
//! `mir/{id}/...` can only match subscriptions of the session `{id}`: routing is one
//! table lookup, whatever the number of devices.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, RwLock,
    },
    time::Duration,
};

use bytes::Bytes;
use tokio::{
    sync::{oneshot, watch},
    time::Instant,
};
use tracing::{info, warn};

use super::{Kick, Link, QueueLimits, Session};
use crate::{
    metrics::{worth_logging, Limit, Metrics},
    BrokerConfig, DisconnectReason, Hooks,
};

/// The limits of [`BrokerConfig`], as the connections use them.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub max_payload: usize,
    pub max_inflight: usize,
    pub queue: QueueLimits,
    pub session_expiry: Duration,
    pub max_subscriptions: usize,
    pub max_filters: usize,
    pub max_connections: usize,
    pub max_pending: usize,
    pub connect_timeout: Duration,
}

impl Limits {
    fn new(c: &BrokerConfig) -> Self {
        Self {
            max_payload: c.max_payload,
            max_inflight: usize::from(c.max_inflight.max(1)),
            queue: QueueLimits {
                max_messages: c.max_queued_per_session.max(1),
                max_session_bytes: c.max_queued_bytes_per_session,
                max_total_bytes: c.max_queued_bytes,
            },
            session_expiry: c.session_expiry,
            max_subscriptions: c.max_subscriptions_per_connection,
            max_filters: c.max_filters_per_subscribe.max(1),
            max_connections: c.max_connections.max(1),
            max_pending: c.max_pending_connections.max(1),
            connect_timeout: c.connect_timeout,
        }
    }
}

/// Connections that have not sent CONNECT, oldest first.
#[derive(Default)]
struct Pending {
    next: u64,
    waiting: BTreeMap<u64, oneshot::Sender<()>>,
}

/// State shared by the listeners, the connections and the handles.
pub(crate) struct Shared {
    pub limits: Limits,
    pub hooks: Arc<dyn Hooks>,
    pub shutdown: watch::Receiver<bool>,
    pub metrics: Arc<Metrics>,
    sessions: RwLock<HashMap<String, Arc<Session>>>,
    pending: Mutex<Pending>,
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
        kick: Option<oneshot::Sender<Kick>>,
        done: Option<oneshot::Receiver<()>>,
    },
}

/// A connection's place in the pending budget; leaves it when dropped.
pub(crate) struct PendingSlot {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut p = self
            .shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        p.waiting.remove(&self.id);
        drop(p);
        Metrics::sub(&self.shared.metrics.pending, 1);
    }
}

impl Shared {
    pub fn new(
        config: &BrokerConfig,
        hooks: Arc<dyn Hooks>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            limits: Limits::new(config),
            hooks,
            shutdown,
            metrics: Arc::new(Metrics::default()),
            sessions: RwLock::new(HashMap::new()),
            pending: Mutex::new(Pending::default()),
            next_conn: AtomicU64::new(1),
            last_version: AtomicU64::new(0),
        }
    }

    /// Enters a new connection into the pending budget. The receiver resolves when the
    /// connection is pushed out by newer ones (`max_pending_connections`): the oldest
    /// goes first, so a flood of silent connections cannot keep out a client that sends
    /// its CONNECT at once.
    pub fn enter_pending(self: &Arc<Self>) -> (PendingSlot, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let id = p.next;
        p.next += 1;
        p.waiting.insert(id, tx);
        let evicted = if p.waiting.len() > self.limits.max_pending {
            p.waiting.pop_first()
        } else {
            None
        };
        drop(p);
        Metrics::add(&self.metrics.pending, 1);
        if let Some((_, tx)) = evicted {
            let _ = tx.send(());
            let n = self.metrics.hit(Limit::PendingConnections);
            if worth_logging(n) {
                warn!(
                    max = self.limits.max_pending,
                    total = n,
                    "too many connections without CONNECT: closed the oldest"
                );
            }
        }
        let slot = PendingSlot {
            shared: self.clone(),
            id,
        };
        (slot, rx)
    }

    /// The next connection version: microseconds since the Unix epoch, or one more than
    /// the last version when the clock has not moved on (or went back). Strictly
    /// increasing within the process, and across restarts as long as the wall clock
    /// does not go back further than the downtime.
    pub(super) fn next_version(&self) -> u64 {
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

    #[cfg(test)]
    pub(super) fn set_last_version(&self, v: u64) {
        self.last_version.store(v, Ordering::Release);
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
    /// An offline persistent session past its expiry is not resumed.
    pub fn attach(
        &self,
        client_id: &str,
        clean: bool,
        conn_id: u64,
        force: bool,
        kick: &mut Option<oneshot::Sender<Kick>>,
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
                let expired = st.link.is_none()
                    && st
                        .offline_since
                        .is_some_and(|t| t.elapsed() >= self.limits.session_expiry);
                if expired {
                    self.count_expired(client_id);
                }
                if !clean && s.persistent && !expired {
                    session_present = true;
                    st.offline_since = None;
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
        kick: &mut Option<oneshot::Sender<Kick>>,
        done: &mut Option<oneshot::Receiver<()>>,
    ) -> Arc<Session> {
        let s = Arc::new(Session::new(client_id, !clean, self.metrics.clone()));
        s.state().link = Some(Link {
            conn_id,
            kick: kick.take(),
            done: done.take(),
        });
        table.insert(client_id.to_string(), s.clone());
        s
    }

    /// Detaches connection `conn_id`; a clean session is dropped with it. Returns
    /// whether a persistent session went offline without an expiry timer watching it
    /// (the caller starts one: [`expire_later`]).
    pub fn detach(&self, session: &Arc<Session>, conn_id: u64) -> bool {
        {
            let mut st = session.state();
            if st.link.as_ref().is_some_and(|l| l.conn_id == conn_id) {
                st.link = None;
                if session.persistent {
                    st.offline_since = Some(Instant::now());
                    let start = !st.expiry_armed;
                    st.expiry_armed = true;
                    return start;
                }
            }
        }
        if session.persistent {
            return false;
        }
        let mut table = self.table_mut();
        let ours = table
            .get(&session.client_id)
            .is_some_and(|s| Arc::ptr_eq(s, session) && s.state().link.is_none());
        if ours {
            table.remove(&session.client_id);
        }
        false
    }

    /// Forgets `session` if it is still offline and past its expiry. Returns when to
    /// look again: `None` when the timer's work is over (expired, replaced, or online
    /// again, in which case the timer is disarmed for the next disconnect).
    fn expire(&self, session: &Arc<Session>) -> Option<Instant> {
        let mut table = self.table_mut();
        let ours = table
            .get(&session.client_id)
            .is_some_and(|s| Arc::ptr_eq(s, session));
        if !ours {
            return None;
        }
        let mut st = session.state();
        let deadline = match (&st.link, st.offline_since) {
            (None, Some(since)) => since + self.limits.session_expiry,
            _ => {
                st.expiry_armed = false;
                return None;
            }
        };
        if Instant::now() < deadline {
            return Some(deadline);
        }
        drop(st);
        table.remove(&session.client_id);
        self.count_expired(&session.client_id);
        None
    }

    fn count_expired(&self, client_id: &str) {
        let n = self.metrics.hit(Limit::SessionExpiry);
        info!(
            client_id,
            expiry_secs = self.limits.session_expiry.as_secs_f64(),
            total = n,
            "persistent session expired: forgotten"
        );
    }

    /// Closes the connection of `client_id` with `reason` (its last will is not
    /// published) and forgets its session. Returns whether there was one.
    pub fn disconnect(&self, client_id: &str, reason: DisconnectReason) -> bool {
        let Some(session) = self.table_mut().remove(client_id) else {
            return false;
        };
        let mut st = session.state();
        let kick = st.link.as_mut().and_then(|l| l.kick.take());
        drop(st);
        if let Some(kick) = kick {
            let _ = kick.send(Kick {
                reason,
                will: false,
            });
        }
        info!(
            client_id,
            reason = reason.as_aws_str(),
            "client disconnected by the hub"
        );
        true
    }

    /// Routes a message to the session its topic belongs to (`mir/{id}/...`).
    /// Returns how many sessions it was delivered or queued to (0 or 1).
    pub fn route(&self, topic: &Bytes, payload: &Bytes, qos: u8) -> usize {
        let Some(id) = topic_owner(topic) else {
            return 0;
        };
        let session = self.table().get(id).cloned();
        match session {
            Some(s) => usize::from(s.deliver(topic, payload, qos, &self.limits.queue)),
            None => 0,
        }
    }

    /// Routes a message published by the owner of `session` on its own topic. The
    /// payload is copied: the frame it was cut from is not kept alive by the queue.
    pub fn route_own(&self, session: &Session, topic: &Bytes, payload: &Bytes, qos: u8) -> usize {
        let topic = Bytes::copy_from_slice(topic);
        let payload = Bytes::copy_from_slice(payload);
        usize::from(session.deliver(&topic, &payload, qos, &self.limits.queue))
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

    /// (online, offline) sessions.
    pub fn session_counts(&self) -> (u64, u64) {
        let table = self.table();
        let online = table.values().filter(|s| s.state().link.is_some()).count();
        (online as u64, (table.len() - online) as u64)
    }
}

/// Forgets `session` once it has been offline for the session expiry, unless a
/// connection resumed it by then. One timer per session: it follows the session's
/// later disconnects until it expires, is replaced, or is online when the timer wakes.
pub(crate) fn expire_later(shared: &Arc<Shared>, session: &Arc<Session>) {
    let weak = Arc::downgrade(session);
    let shared = shared.clone();
    tokio::spawn(async move {
        let mut stop = shared.shutdown.clone();
        let mut deadline = Instant::now() + shared.limits.session_expiry;
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep_until(deadline) => {}
            }
            let Some(session) = weak.upgrade() else {
                return;
            };
            match shared.expire(&session) {
                Some(later) => deadline = later,
                None => return,
            }
        }
    });
}

/// `{id}` of a topic `mir/{id}/...`.
pub(super) fn topic_owner(topic: &[u8]) -> Option<&str> {
    let rest = topic.strip_prefix(b"mir/")?;
    let end = rest.iter().position(|b| *b == b'/')?;
    std::str::from_utf8(&rest[..end]).ok()
}
