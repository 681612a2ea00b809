//! One task per connection: CONNECT, authorization, keepalive, hooks, outbound flow.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::{Bytes, BytesMut};
use mir_proto::topics::{DeviceTopic, Direction};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    sync::oneshot,
    time::Instant,
};
use tracing::{debug, info, warn};

use crate::{
    codec::{self, ConnectCode, DecodeError, Packet},
    session::{Attach, Session, Shared},
    ClientInfo, DisconnectReason, CONNECT_TIMEOUT, HEADER_SLACK,
};

/// Longest wait for a previous connection with the same client id to end.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(5);
/// A client that does not read for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Outbound bytes encoded per write.
const WRITE_BUDGET: usize = 64 * 1024;
/// Spare read-buffer capacity kept before each read.
const READ_CHUNK: usize = 16 * 1024;
/// Without keepalive, the timer still wakes up this often (it never fires).
const NO_KEEPALIVE: Duration = Duration::from_secs(24 * 3600);

/// Serves one connection until it ends; hooks are called as documented on [`crate::Hooks`].
pub(crate) async fn serve<S>(
    shared: Arc<Shared>,
    stream: S,
    peer: SocketAddr,
    tls: bool,
    cert_cn: Option<String>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let max_remaining = shared.max_payload.saturating_add(HEADER_SLACK);
    let mut rbuf = BytesMut::with_capacity(8 * 1024);
    let mut wbuf = BytesMut::with_capacity(8 * 1024);
    let mut stop = shared.shutdown.clone();

    // CONNECT.
    let first = tokio::select! {
        _ = stop.wait_for(|s| *s) => return,
        r = tokio::time::timeout(CONNECT_TIMEOUT, read_packet(&mut rd, &mut rbuf, max_remaining)) => r,
    };
    let connect = match first {
        Ok(Ok(Packet::Connect(c))) => c,
        Ok(Ok(other)) => {
            warn!(%peer, packet = ?other, "first packet is not CONNECT");
            return;
        }
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "connection closed before CONNECT");
            return;
        }
        Err(_) => {
            debug!(%peer, "no CONNECT in time");
            return;
        }
    };
    let refuse = if &connect.protocol_name[..] != b"MQTT" || connect.level != 4 {
        Some(ConnectCode::UnacceptableProtocol)
    } else if let Err(e) = mir_proto::DeviceId::check(&connect.client_id) {
        warn!(%peer, client_id = %connect.client_id, error = %e, "client id refused");
        Some(ConnectCode::IdentifierRejected)
    } else if tls && cert_cn.as_deref() != Some(connect.client_id.as_str()) {
        warn!(
            %peer,
            client_id = %connect.client_id,
            cert_cn = ?cert_cn,
            "certificate common name differs from the client id"
        );
        Some(ConnectCode::NotAuthorized)
    } else {
        None
    };
    if let Some(code) = refuse {
        codec::put_connack(&mut wbuf, false, code);
        let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
            let _ = wr.write_all(&wbuf).await;
            let _ = wr.shutdown().await;
        })
        .await;
        return;
    }

    // Session (taking over a previous connection with the same id).
    let conn_id = shared.next_conn_id();
    let (kick_tx, mut kick_rx) = oneshot::channel::<DisconnectReason>();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let (mut kick_tx, mut done_rx) = (Some(kick_tx), Some(done_rx));
    let deadline = Instant::now() + TAKEOVER_TIMEOUT;
    let (session, session_present, version) = loop {
        let force = Instant::now() >= deadline;
        match shared.attach(
            &connect.client_id,
            connect.clean_session,
            conn_id,
            force,
            &mut kick_tx,
            &mut done_rx,
        ) {
            Attach::Attached {
                session,
                session_present,
                version,
            } => break (session, session_present, version),
            Attach::Busy { kick, done } => {
                if let Some(kick) = kick {
                    let _ = kick.send(DisconnectReason::DuplicateClientId);
                }
                let wait = async {
                    match done {
                        Some(done) => {
                            let _ = tokio::time::timeout_at(deadline, done).await;
                        }
                        None => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                };
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    _ = wait => {}
                }
            }
        }
    };

    let info = ClientInfo {
        client_id: connect.client_id.clone(),
        session_id: uuid::Uuid::new_v4().to_string(),
        version,
        peer,
        tls,
        cert_common_name: cert_cn,
        clean_session: connect.clean_session,
    };
    codec::put_connack(&mut wbuf, session_present, ConnectCode::Accepted);
    let connack_sent = tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&wbuf)).await;
    wbuf.clear();
    if !matches!(connack_sent, Ok(Ok(()))) {
        // The CONNACK never left: the connection was not accepted, no hooks.
        shared.detach(&session, conn_id);
        return;
    }
    info!(
        client_id = %info.client_id,
        session_id = %info.session_id,
        version = info.version,
        %peer,
        tls,
        clean_session = info.clean_session,
        session_present,
        "client connected"
    );
    shared.hooks.on_connect(&info).await;

    let mut conn = Conn {
        shared: &shared,
        session: &session,
        info: &info,
        max_remaining,
    };
    if session_present {
        session.state().retransmit_into(&mut wbuf);
    }
    let keep_alive = (connect.keep_alive > 0)
        .then(|| Duration::from_millis(u64::from(connect.keep_alive) * 1500));
    let reason = conn
        .run(
            &mut rd,
            &mut wr,
            &mut rbuf,
            &mut wbuf,
            keep_alive,
            &mut kick_rx,
        )
        .await;

    shared.detach(&session, conn_id);
    let _ = tokio::time::timeout(Duration::from_secs(1), wr.shutdown()).await;
    info!(
        client_id = %info.client_id,
        session_id = %info.session_id,
        reason = reason.as_aws_str(),
        "client disconnected"
    );
    if !matches!(
        reason,
        DisconnectReason::ClientInitiated | DisconnectReason::ServerShutdown
    ) {
        if let Some(will) = connect.will {
            conn.publish_will(will).await;
        }
    }
    shared.hooks.on_disconnect(&info, reason).await;
    drop(done_tx);
}

/// Reads until one packet is decoded (used for CONNECT only).
async fn read_packet<R: AsyncRead + Unpin>(
    rd: &mut R,
    rbuf: &mut BytesMut,
    max_remaining: usize,
) -> Result<Packet, std::io::Error> {
    loop {
        match codec::decode(rbuf, max_remaining) {
            Ok(Some(p)) => return Ok(p),
            Ok(None) => {}
            Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        }
        if rd.read_buf(rbuf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}

struct Conn<'a> {
    shared: &'a Shared,
    session: &'a Arc<Session>,
    info: &'a ClientInfo,
    max_remaining: usize,
}

impl Conn<'_> {
    async fn run<R, W>(
        &mut self,
        rd: &mut R,
        wr: &mut W,
        rbuf: &mut BytesMut,
        wbuf: &mut BytesMut,
        keep_alive: Option<Duration>,
        kick: &mut oneshot::Receiver<DisconnectReason>,
    ) -> DisconnectReason
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut stop = self.shared.shutdown.clone();
        let mut last_seen = Instant::now();
        let period = keep_alive.unwrap_or(NO_KEEPALIVE);
        let timer = tokio::time::sleep(period);
        tokio::pin!(timer);
        // Anything left in the read buffer after CONNECT is processed first.
        let mut ready = !rbuf.is_empty();
        loop {
            if ready {
                ready = false;
                if let Err(reason) = self.process(rbuf, wbuf).await {
                    // Best effort: send what was acknowledged before closing.
                    let _ = tokio::time::timeout(Duration::from_secs(1), wr.write_all(wbuf)).await;
                    return reason;
                }
            }
            // Outbound: acks produced above, then queued messages within the window.
            loop {
                let more =
                    self.session
                        .state()
                        .drain_into(wbuf, self.shared.max_inflight, WRITE_BUDGET);
                if wbuf.is_empty() {
                    break;
                }
                let written = tokio::select! {
                    r = tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(wbuf)) => r,
                    _ = stop.wait_for(|s| *s) => return DisconnectReason::ServerShutdown,
                    r = &mut *kick => return r.unwrap_or(DisconnectReason::DuplicateClientId),
                };
                wbuf.clear();
                match written {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        debug!(client_id = %self.info.client_id, error = %e, "write failed");
                        return DisconnectReason::ConnectionLost;
                    }
                    Err(_) => {
                        warn!(client_id = %self.info.client_id, "client stopped reading");
                        return DisconnectReason::ConnectionLost;
                    }
                }
                if !more {
                    break;
                }
            }
            // Read in large chunks: frames split off the buffer keep their memory while
            // hooks or queues hold them, so the spare capacity shrinks.
            if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
                rbuf.reserve(READ_CHUNK);
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return DisconnectReason::ServerShutdown,
                r = &mut *kick => return r.unwrap_or(DisconnectReason::DuplicateClientId),
                r = rd.read_buf(rbuf) => match r {
                    Ok(0) => return DisconnectReason::ConnectionLost,
                    Ok(_) => {
                        last_seen = Instant::now();
                        ready = true;
                    }
                    Err(e) => {
                        debug!(client_id = %self.info.client_id, error = %e, "read failed");
                        return DisconnectReason::ConnectionLost;
                    }
                },
                _ = self.session.wake.notified() => {}
                _ = &mut timer => {
                    if let Some(ka) = keep_alive {
                        if last_seen.elapsed() >= ka {
                            warn!(client_id = %self.info.client_id, "keepalive timeout");
                            return DisconnectReason::KeepAliveTimeout;
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
    async fn process(
        &mut self,
        rbuf: &mut BytesMut,
        wbuf: &mut BytesMut,
    ) -> Result<(), DisconnectReason> {
        let id = self.info.client_id.as_str();
        loop {
            let packet = match codec::decode(rbuf, self.max_remaining) {
                Ok(Some(p)) => p,
                Ok(None) => return Ok(()),
                Err(DecodeError::TooLarge { size, max, publish }) => {
                    warn!(client_id = id, size, max, "packet too large");
                    return Err(if publish {
                        DisconnectReason::PayloadTooLarge
                    } else {
                        DisconnectReason::ProtocolError
                    });
                }
                Err(e) => {
                    warn!(client_id = id, error = %e, "protocol error");
                    return Err(DisconnectReason::ProtocolError);
                }
            };
            match packet {
                Packet::Publish(p) => {
                    if p.qos > 1 {
                        warn!(
                            client_id = id,
                            "QoS 2 publish refused (AWS IoT has no QoS 2)"
                        );
                        return Err(DisconnectReason::ProtocolError);
                    }
                    if p.payload.len() > self.shared.max_payload {
                        warn!(
                            client_id = id,
                            size = p.payload.len(),
                            max = self.shared.max_payload,
                            "payload too large"
                        );
                        return Err(DisconnectReason::PayloadTooLarge);
                    }
                    let topic = std::str::from_utf8(&p.topic).unwrap_or_default();
                    if !authorized(id, topic) {
                        warn!(client_id = id, topic, "publish not authorized");
                        return Err(DisconnectReason::AuthorizationFailure);
                    }
                    self.shared
                        .hooks
                        .on_publish(self.info, topic, p.payload.clone())
                        .await;
                    self.shared
                        .route_own(self.session, &p.topic, &p.payload, p.qos);
                    if p.qos == 1 {
                        codec::put_puback(wbuf, p.pkid);
                    }
                }
                Packet::PubAck(pkid) => self.session.state().acked(pkid),
                Packet::Subscribe { pkid, filters } => {
                    let codes: Vec<u8> = {
                        let mut st = self.session.state();
                        filters
                            .into_iter()
                            .map(|(filter, qos)| {
                                if !filter_allowed(id, &filter) {
                                    warn!(client_id = id, filter, "subscription refused");
                                    return 0x80;
                                }
                                let granted = qos.min(1);
                                match st.subs.iter_mut().find(|(f, _)| *f == filter) {
                                    Some(sub) => sub.1 = granted,
                                    None => st.subs.push((filter, granted)),
                                }
                                granted
                            })
                            .collect()
                    };
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
                Packet::Disconnect => return Err(DisconnectReason::ClientInitiated),
                Packet::Connect(_) => {
                    warn!(client_id = id, "second CONNECT");
                    return Err(DisconnectReason::ProtocolError);
                }
                Packet::Qos2Flow => {
                    warn!(client_id = id, "QoS 2 flow refused (AWS IoT has no QoS 2)");
                    return Err(DisconnectReason::ProtocolError);
                }
                Packet::ServerOnly(kind) => {
                    warn!(client_id = id, kind, "packet only a server sends");
                    return Err(DisconnectReason::ProtocolError);
                }
            }
        }
    }

    /// Publishes the last will of an ungracefully closed connection, if authorized.
    async fn publish_will(&mut self, will: codec::Will) {
        let id = self.info.client_id.as_str();
        let topic = std::str::from_utf8(&will.topic).unwrap_or_default();
        if !authorized(id, topic) || will.payload.len() > self.shared.max_payload {
            warn!(client_id = id, topic, "last will not authorized: dropped");
            return;
        }
        let payload: Bytes = will.payload.clone();
        self.shared
            .hooks
            .on_publish(self.info, topic, payload)
            .await;
        self.shared
            .route_own(self.session, &will.topic, &will.payload, will.qos.min(1));
    }
}

/// The device policy for PUBLISH: `mir/{own id}/{suffix}` of a device-to-cloud topic.
pub(crate) fn authorized(client_id: &str, topic: &str) -> bool {
    let Some(suffix) = topic
        .strip_prefix("mir/")
        .and_then(|r| r.strip_prefix(client_id))
        .and_then(|r| r.strip_prefix('/'))
    else {
        return false;
    };
    DeviceTopic::ALL
        .iter()
        .any(|t| t.suffix() == suffix && t.direction() == Direction::DeviceToCloud)
}

/// The device policy for SUBSCRIBE: a valid filter under `mir/{own id}/`.
pub(crate) fn filter_allowed(client_id: &str, filter: &str) -> bool {
    let Some(rest) = filter
        .strip_prefix("mir/")
        .and_then(|r| r.strip_prefix(client_id))
        .and_then(|r| r.strip_prefix('/'))
    else {
        return false;
    };
    if rest.is_empty() || filter.len() > usize::from(u16::MAX) || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = rest.split('/').collect();
    let last = levels.len() - 1;
    levels.iter().enumerate().all(|(i, level)| match *level {
        "#" => i == last,
        "+" => true,
        l => !l.contains(['+', '#']),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_publish_only_their_own_device_to_cloud_topics() {
        assert!(authorized("d1", "mir/d1/tlm"));
        assert!(authorized("d1", "mir/d1/cfg/desired/get"));
        assert!(!authorized("d1", "mir/d1/cmd/req"));
        assert!(!authorized("d1", "mir/d2/tlm"));
        assert!(!authorized("d1", "mir/d1x/tlm"));
        assert!(!authorized("d1", "mir/d1/unknown"));
        assert!(!authorized("d1", "other/d1/tlm"));
    }

    #[test]
    fn filters_must_stay_under_the_own_prefix() {
        assert!(filter_allowed("d1", "mir/d1/cmd/req"));
        assert!(filter_allowed("d1", "mir/d1/#"));
        assert!(filter_allowed("d1", "mir/d1/+/desired"));
        assert!(!filter_allowed("d1", "mir/+/cmd/req"));
        assert!(!filter_allowed("d1", "mir/d1/"));
        assert!(!filter_allowed("d1", "mir/d1/#/x"));
        assert!(!filter_allowed("d1", "mir/d1/a+"));
        assert!(!filter_allowed("d1", "#"));
        assert!(!filter_allowed("d1", "mir/d2/#"));
    }
}
