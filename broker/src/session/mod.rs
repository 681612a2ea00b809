//! Sessions: subscriptions, the outbound queue and its in-flight window, kept while
//! offline for `clean_session = false`; `table`: the session table, routing, expiry.
//!
//! A session's queue is bounded three ways ([`QueueLimits`]): messages waiting, bytes
//! waiting or in flight to it, and bytes of all sessions together. The oldest are
//! dropped first (the message cap drops waiting ones; the byte caps drop in-flight
//! ones first, as they are older); a message that cannot fit is not queued. Every drop
//! is counted by its limit.
//!
//! Lock order: the session table before a session's state, never the reverse.

mod table;

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard},
};

use bytes::{Bytes, BytesMut};
use tokio::{
    sync::{oneshot, Notify},
    time::Instant,
};
use tracing::warn;

pub(crate) use table::{expire_later, Attach, PendingSlot, Shared};

use crate::{
    codec,
    metrics::{worth_logging, Limit, Metrics},
    DisconnectReason,
};

/// A message waiting for, or in flight to, one session.
#[derive(Debug, Clone)]
pub(crate) struct OutMsg {
    pub topic: Bytes,
    pub payload: Bytes,
    pub qos: u8,
}

impl OutMsg {
    /// What the message counts against the byte caps.
    fn size(&self) -> usize {
        self.topic.len() + self.payload.len()
    }
}

/// Asks a connection to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Kick {
    pub reason: DisconnectReason,
    /// Whether the connection's last will is published.
    pub will: bool,
}

/// The connection currently attached to a session.
pub(crate) struct Link {
    pub conn_id: u64,
    /// Asks the connection to close (taken by whoever kicks it).
    pub kick: Option<oneshot::Sender<Kick>>,
    /// Completes once the connection ended, hooks included.
    pub done: Option<oneshot::Receiver<()>>,
}

/// The bounds of one session's queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueLimits {
    pub max_messages: usize,
    pub max_session_bytes: usize,
    pub max_total_bytes: usize,
}

pub(crate) struct SessionState {
    /// (filter, granted qos)
    pub subs: Vec<(String, u8)>,
    pending: VecDeque<OutMsg>,
    /// Sent QoS 1 messages waiting for PUBACK, in send order.
    inflight: VecDeque<(u16, OutMsg)>,
    next_pkid: u16,
    pub link: Option<Link>,
    /// Bytes of `pending` and `inflight`.
    bytes: usize,
    /// When the last connection of a persistent session ended.
    pub offline_since: Option<Instant>,
    /// Whether an expiry timer watches this session (at most one does).
    pub expiry_armed: bool,
    metrics: Arc<Metrics>,
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
    pub fn new(client_id: &str, persistent: bool, metrics: Arc<Metrics>) -> Self {
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
                bytes: 0,
                offline_since: None,
                expiry_armed: false,
                metrics,
            }),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `topic` for this session if one of its subscriptions matches.
    /// Returns whether it was queued.
    fn deliver(&self, topic: &Bytes, payload: &Bytes, qos: u8, limits: &QueueLimits) -> bool {
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
        let msg = OutMsg {
            topic: topic.clone(),
            payload: payload.clone(),
            qos,
        };
        let (queued, hits) = st.enqueue(msg, limits);
        let metrics = st.metrics.clone();
        drop(st);
        for limit in hits {
            let n = metrics.hit(limit);
            if worth_logging(n) {
                let why = match limit {
                    Limit::SessionQueueMessages => {
                        "session queue full (messages): dropped the oldest message"
                    }
                    Limit::SessionQueueBytes => {
                        "session queue full (bytes): dropped the oldest message"
                    }
                    _ => "broker queue full (bytes): message not queued",
                };
                warn!(
                    client_id = %self.client_id,
                    limit = limit.as_str(),
                    total = n,
                    max_messages = limits.max_messages,
                    max_session_bytes = limits.max_session_bytes,
                    max_total_bytes = limits.max_total_bytes,
                    "{why}"
                );
            }
        }
        if queued {
            self.wake.notify_one();
        }
        queued
    }
}

/// What became of one topic filter of a SUBSCRIBE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SubOutcome {
    /// Granted with this QoS (QoS 2 is granted as 1).
    Granted(u8),
    /// Outside the device's topics (the policy).
    OutsidePolicy,
    /// The session holds `max_subscriptions_per_connection` already.
    TooMany,
}

impl SubOutcome {
    /// The SUBACK return code.
    pub fn code(self) -> u8 {
        match self {
            SubOutcome::Granted(qos) => qos,
            SubOutcome::OutsidePolicy | SubOutcome::TooMany => 0x80,
        }
    }
}

impl SessionState {
    /// Applies a SUBSCRIBE of `client_id`: a filter already held gets the new QoS, a new
    /// one is added while the session holds fewer than `max_subs`.
    pub fn subscribe(
        &mut self,
        client_id: &str,
        filters: Vec<(String, u8)>,
        max_subs: usize,
    ) -> Vec<(String, SubOutcome)> {
        filters
            .into_iter()
            .map(|(filter, qos)| {
                if !crate::policy::may_subscribe(client_id, &filter) {
                    return (filter, SubOutcome::OutsidePolicy);
                }
                let granted = qos.min(1);
                if let Some(sub) = self.subs.iter_mut().find(|(f, _)| *f == filter) {
                    sub.1 = granted;
                } else if self.subs.len() >= max_subs {
                    return (filter, SubOutcome::TooMany);
                } else {
                    self.subs.push((filter.clone(), granted));
                }
                (filter, SubOutcome::Granted(granted))
            })
            .collect()
    }

    /// Makes room for `msg` and queues it. Returns whether it was queued and the limit
    /// behind each message dropped on the way (or behind `msg` not being queued).
    fn enqueue(&mut self, msg: OutMsg, l: &QueueLimits) -> (bool, Vec<Limit>) {
        let mut hits = Vec::new();
        let size = msg.size();
        if size > l.max_session_bytes {
            hits.push(Limit::SessionQueueBytes);
            return (false, hits);
        }
        while self.pending.len() >= l.max_messages.max(1) && self.drop_oldest_waiting() {
            hits.push(Limit::SessionQueueMessages);
        }
        while self.bytes + size > l.max_session_bytes && self.drop_oldest() {
            hits.push(Limit::SessionQueueBytes);
        }
        while !self.metrics.reserve_bytes(size, l.max_total_bytes) {
            if !self.drop_oldest() {
                hits.push(Limit::BrokerQueueBytes);
                return (false, hits);
            }
            hits.push(Limit::BrokerQueueBytes);
        }
        self.bytes += size;
        Metrics::add(&self.metrics.queued_messages, 1);
        self.pending.push_back(msg);
        (true, hits)
    }

    /// Drops the oldest message: the oldest in flight (each is older than every waiting
    /// one), else the oldest waiting. Returns whether there was one. A client's late
    /// PUBACK for a dropped message is ignored; its packet id comes back only after
    /// 65,535 others.
    fn drop_oldest(&mut self) -> bool {
        let msg = match self.inflight.pop_front() {
            Some((_, m)) => m,
            None => match self.pending.pop_front() {
                Some(m) => m,
                None => return false,
            },
        };
        self.release(&msg);
        true
    }

    fn drop_oldest_waiting(&mut self) -> bool {
        match self.pending.pop_front() {
            Some(msg) => {
                self.release(&msg);
                true
            }
            None => false,
        }
    }

    fn release(&mut self, msg: &OutMsg) {
        let size = msg.size();
        self.bytes = self.bytes.saturating_sub(size);
        self.metrics.release_bytes(size);
        Metrics::sub(&self.metrics.queued_messages, 1);
    }

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
        let mut sent = 0;
        let more = loop {
            let Some(front) = self.pending.front() else {
                break false;
            };
            if front.qos > 0 && self.inflight.len() >= max_inflight {
                break false;
            }
            if out.len() - start >= budget {
                break true;
            }
            let Some(msg) = self.pending.pop_front() else {
                break false;
            };
            sent += 1;
            if msg.qos == 0 {
                codec::put_publish(out, false, 0, 0, &msg.topic, &msg.payload);
                self.release(&msg);
            } else {
                let pkid = self.alloc_pkid();
                codec::put_publish(out, false, 1, pkid, &msg.topic, &msg.payload);
                self.inflight.push_back((pkid, msg));
            }
        };
        Metrics::add(&self.metrics.messages_out, sent);
        more
    }

    /// Encodes every in-flight message again with DUP set (resumed session).
    pub fn retransmit_into(&self, out: &mut BytesMut) {
        for (pkid, msg) in &self.inflight {
            codec::put_publish(out, true, 1, *pkid, &msg.topic, &msg.payload);
        }
        Metrics::add(&self.metrics.messages_out, self.inflight.len() as u64);
    }

    /// A PUBACK: the message leaves the window (an unknown id is ignored: its message
    /// may have been dropped).
    pub fn acked(&mut self, pkid: u16) {
        if let Some(pos) = self.inflight.iter().position(|(p, _)| *p == pkid) {
            if let Some((_, msg)) = self.inflight.remove(pos) {
                self.release(&msg);
            }
        }
    }
}

impl Drop for SessionState {
    fn drop(&mut self) {
        let n = self.pending.len() + self.inflight.len();
        self.metrics.release_bytes(self.bytes);
        Metrics::sub(&self.metrics.queued_messages, n as u64);
    }
}

#[cfg(test)]
mod tests;
