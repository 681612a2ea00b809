//! The packet loop of an accepted connection.

use std::{sync::Arc, time::Duration};

use bytes::{Bytes, BytesMut};
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt},
    sync::oneshot,
    time::Instant,
};
use tracing::{debug, warn};

use super::{ReadBuf, WRITE_TIMEOUT};
use crate::{
    codec::{self, DecodeError, Packet, Publish},
    metrics::{worth_logging, Limit, Metrics, Rejection},
    policy,
    session::{Kick, Session, Shared, SubOutcome},
    ClientInfo, DisconnectReason,
};

/// Outbound bytes encoded per write.
const WRITE_BUDGET: usize = 64 * 1024;
/// Without keepalive, the timer still wakes up this often (it never fires).
const NO_KEEPALIVE: Duration = Duration::from_secs(24 * 3600);

/// How a connection ends, its last will published unless the client said goodbye or
/// the broker (or the hub) ended it on purpose.
fn end(reason: DisconnectReason) -> Kick {
    Kick {
        reason,
        will: !matches!(
            reason,
            DisconnectReason::ClientInitiated | DisconnectReason::ServerShutdown
        ),
    }
}

pub(super) struct Conn<'a> {
    pub shared: &'a Shared,
    pub session: &'a Arc<Session>,
    pub info: &'a ClientInfo,
    pub max_remaining: usize,
}

impl Conn<'_> {
    pub(super) async fn run<R, W>(
        &mut self,
        rd: &mut R,
        wr: &mut W,
        rbuf: &mut ReadBuf,
        wbuf: &mut BytesMut,
        keep_alive: Option<Duration>,
        kick: &mut oneshot::Receiver<Kick>,
    ) -> Kick
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut stop = self.shared.shutdown.clone();
        let mut last_seen = Instant::now();
        let period = keep_alive.unwrap_or(NO_KEEPALIVE);
        let timer = tokio::time::sleep(period);
        tokio::pin!(timer);
        let kicked = |r: Result<Kick, _>| r.unwrap_or(end(DisconnectReason::DuplicateClientId));
        // Anything left in the read buffer after CONNECT is processed first.
        let mut ready = !rbuf.buf.is_empty();
        loop {
            if ready {
                ready = false;
                if let Err(ended) = self.process(&mut rbuf.buf, wbuf).await {
                    // Best effort: send what was acknowledged before closing.
                    let _ = tokio::time::timeout(Duration::from_secs(1), wr.write_all(wbuf)).await;
                    return ended;
                }
            }
            // Outbound: acks produced above, then queued messages within the window.
            loop {
                let more = self.session.state().drain_into(
                    wbuf,
                    self.shared.limits.max_inflight,
                    WRITE_BUDGET,
                );
                if wbuf.is_empty() {
                    break;
                }
                let written = tokio::select! {
                    r = tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(wbuf)) => r,
                    _ = stop.wait_for(|s| *s) => return end(DisconnectReason::ServerShutdown),
                    r = &mut *kick => return kicked(r),
                };
                wbuf.clear();
                match written {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        debug!(client_id = %self.info.client_id, error = %e, "write failed");
                        return end(DisconnectReason::ConnectionLost);
                    }
                    Err(_) => {
                        warn!(client_id = %self.info.client_id, "client stopped reading");
                        return end(DisconnectReason::ConnectionLost);
                    }
                }
                if !more {
                    break;
                }
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return end(DisconnectReason::ServerShutdown),
                r = &mut *kick => return kicked(r),
                r = rbuf.read_from(rd) => match r {
                    Ok(0) => return end(DisconnectReason::ConnectionLost),
                    Ok(_) => {
                        last_seen = Instant::now();
                        ready = true;
                    }
                    Err(e) => {
                        debug!(client_id = %self.info.client_id, error = %e, "read failed");
                        return end(DisconnectReason::ConnectionLost);
                    }
                },
                _ = self.session.wake.notified() => {}
                _ = &mut timer => {
                    if let Some(ka) = keep_alive {
                        if last_seen.elapsed() >= ka {
                            warn!(client_id = %self.info.client_id, "keepalive timeout");
                            return end(DisconnectReason::KeepAliveTimeout);
                        }
                        timer.as_mut().reset(last_seen + ka);
                    } else {
                        timer.as_mut().reset(Instant::now() + period);
                    }
                }
            }
        }
    }

    /// Handles every complete packet in `rbuf`, writing responses into `wbuf`.
    async fn process(&mut self, rbuf: &mut BytesMut, wbuf: &mut BytesMut) -> Result<(), Kick> {
        let id = self.info.client_id.as_str();
        let metrics = &self.shared.metrics;
        loop {
            let packet = match codec::decode(rbuf, self.max_remaining) {
                Ok(Some(p)) => p,
                Ok(None) => return Ok(()),
                Err(DecodeError::TooLarge {
                    size,
                    max,
                    publish: true,
                }) => {
                    metrics.reject(Rejection::PayloadTooLarge);
                    warn!(
                        client_id = id,
                        size, max, "PUBLISH too large: disconnecting"
                    );
                    return Err(end(DisconnectReason::PayloadTooLarge));
                }
                Err(e) => {
                    metrics.reject(Rejection::CodecError);
                    warn!(client_id = id, error = %e, "malformed packet: disconnecting");
                    return Err(end(DisconnectReason::ProtocolError));
                }
            };
            match packet {
                Packet::Publish(p) => self.publish(p, wbuf).await?,
                Packet::PubAck(pkid) => self.session.state().acked(pkid),
                Packet::Subscribe { pkid, filters } => {
                    let codes = self.subscribe(filters)?;
                    codec::put_suback(wbuf, pkid, &codes);
                }
                Packet::Unsubscribe { pkid, filters } => {
                    self.session
                        .state()
                        .subs
                        .retain(|(f, _)| !filters.contains(f));
                    codec::put_unsuback(wbuf, pkid);
                }
                Packet::PingReq => codec::put_pingresp(wbuf),
                Packet::Disconnect => return Err(end(DisconnectReason::ClientInitiated)),
                Packet::Connect(_) => return Err(self.protocol_error("second CONNECT")),
                Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_) => {
                    return Err(self.protocol_error("QoS 2 flow refused (AWS IoT has no QoS 2)"))
                }
                Packet::ConnAck { .. }
                | Packet::SubAck { .. }
                | Packet::UnsubAck(_)
                | Packet::PingResp => return Err(self.protocol_error("a packet only servers send")),
            }
        }
    }

    fn protocol_error(&self, what: &'static str) -> Kick {
        self.shared.metrics.reject(Rejection::ProtocolError);
        warn!(client_id = %self.info.client_id, "{what}: disconnecting");
        end(DisconnectReason::ProtocolError)
    }

    async fn publish(&mut self, p: Publish, wbuf: &mut BytesMut) -> Result<(), Kick> {
        let id = self.info.client_id.as_str();
        let metrics = &self.shared.metrics;
        if p.qos > 1 {
            return Err(self.protocol_error("QoS 2 PUBLISH refused (AWS IoT has no QoS 2)"));
        }
        let max = self.shared.limits.max_payload;
        if p.payload.len() > max {
            metrics.reject(Rejection::PayloadTooLarge);
            warn!(
                client_id = id,
                size = p.payload.len(),
                max,
                "payload too large: disconnecting"
            );
            return Err(end(DisconnectReason::PayloadTooLarge));
        }
        let topic = p.topic_str();
        if !policy::may_publish(id, topic) {
            metrics.reject(Rejection::AuthFailure);
            warn!(
                client_id = id,
                topic, "publish outside the device's topics: disconnecting"
            );
            return Err(end(DisconnectReason::AuthorizationFailure));
        }
        Metrics::add(&metrics.messages_in, 1);
        match self
            .shared
            .hooks
            .on_publish(self.info, topic, p.payload.clone())
            .await
        {
            Ok(()) => {
                self.shared
                    .route_own(self.session, &p.topic, &p.payload, p.qos);
                if p.qos == 1 {
                    codec::put_puback(wbuf, p.pkid);
                }
                Ok(())
            }
            Err(e) => {
                metrics.reject(Rejection::HookError);
                if p.qos == 1 {
                    warn!(
                        client_id = id,
                        topic,
                        pkid = p.pkid,
                        error = %e,
                        "the hub did not keep a QoS 1 message: not acknowledged, disconnecting so that the client sends it again"
                    );
                    Err(end(DisconnectReason::ServerError))
                } else {
                    warn!(client_id = id, topic, error = %e, "the hub did not keep a QoS 0 message: dropped");
                    Ok(())
                }
            }
        }
    }

    /// SUBACK return codes for `filters`, or the end of a client that sent too many.
    fn subscribe(&mut self, filters: Vec<(String, u8)>) -> Result<Vec<u8>, Kick> {
        let id = self.info.client_id.as_str();
        let limits = &self.shared.limits;
        let metrics = &self.shared.metrics;
        if filters.len() > limits.max_filters {
            metrics.hit(Limit::FiltersPerSubscribe);
            warn!(
                client_id = id,
                filters = filters.len(),
                max = limits.max_filters,
                "SUBSCRIBE with too many topic filters: disconnecting (as AWS IoT does)"
            );
            return Err(end(DisconnectReason::ProtocolError));
        }
        let outcomes = self
            .session
            .state()
            .subscribe(id, filters, limits.max_subscriptions);
        Ok(outcomes
            .into_iter()
            .map(|(filter, outcome)| {
                match outcome {
                    SubOutcome::Granted(_) => {}
                    SubOutcome::OutsidePolicy => {
                        metrics.reject(Rejection::SubscriptionRefused);
                        warn!(client_id = id, filter, "subscription outside the device's topics refused");
                    }
                    SubOutcome::TooMany => {
                        let n = metrics.hit(Limit::SubscriptionsPerConnection);
                        if worth_logging(n) {
                            warn!(
                                client_id = id,
                                filter,
                                max = limits.max_subscriptions,
                                total = n,
                                "subscription refused: the session holds the most subscriptions allowed"
                            );
                        }
                    }
                }
                outcome.code()
            })
            .collect())
    }

    /// Publishes the last will of an ungracefully closed connection, if authorized.
    pub(super) async fn publish_will(&mut self, will: codec::Will) {
        let id = self.info.client_id.as_str();
        let topic = std::str::from_utf8(&will.topic).unwrap_or_default();
        if !policy::may_publish(id, topic) || will.payload.len() > self.shared.limits.max_payload {
            warn!(client_id = id, topic, "last will not authorized: dropped");
            return;
        }
        Metrics::add(&self.shared.metrics.messages_in, 1);
        let payload: Bytes = will.payload.clone();
        match self
            .shared
            .hooks
            .on_publish(self.info, topic, payload)
            .await
        {
            Ok(()) => {
                self.shared
                    .route_own(self.session, &will.topic, &will.payload, will.qos.min(1));
            }
            Err(e) => {
                self.shared.metrics.reject(Rejection::HookError);
                warn!(client_id = id, topic, error = %e, "the hub did not keep the last will: dropped");
            }
        }
    }
}
