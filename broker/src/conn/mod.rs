//! One task per connection: the CONNECT phase (within the pending budget and the
//! connect timeout), the broker's checks, the admission hook, the session, then `run`:
//! the packet loop (authorization, keepalive, hooks, outbound flow control).

mod run;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::BytesMut;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    sync::oneshot,
    time::Instant,
};
use tracing::{debug, info, warn};

use crate::{
    codec::{self, Connect, ConnectCode, DecodeError, Packet},
    metrics::{worth_logging, Limit, Metrics, Rejection},
    session::{expire_later, Attach, Kick, PendingSlot, Shared},
    ClientCertificate, ClientInfo, ConnectRequest, DisconnectReason, Refusal,
};

/// Room for the fixed and variable headers (topic, packet id) around a payload.
const HEADER_SLACK: usize = 4096;
/// Longest wait for a previous connection with the same client id to end.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(5);
/// A client that does not read for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// First reservation of a read buffer.
const READ_MIN: usize = 256;
/// Largest reservation of a read buffer.
const READ_CHUNK: usize = 16 * 1024;

/// How a connection came in.
pub(crate) struct Transport {
    pub tls: bool,
    /// The client certificate (mTLS).
    pub certificate: Option<ClientCertificate>,
}

/// A connection that has not sent CONNECT yet: its place in the pending budget, the
/// signal that pushes it out, and its deadline.
pub(crate) struct Preconnect {
    /// Held only: dropping it leaves the budget.
    #[allow(dead_code)]
    pub slot: PendingSlot,
    pub evicted: oneshot::Receiver<()>,
    pub deadline: Instant,
}

/// A read buffer that grows with what arrives: it starts empty, and each read that
/// fills its spare room doubles the next reservation, up to [`READ_CHUNK`].
pub(crate) struct ReadBuf {
    pub buf: BytesMut,
    step: usize,
}

impl ReadBuf {
    fn new() -> Self {
        Self {
            buf: BytesMut::new(),
            step: READ_MIN,
        }
    }

    /// One read; `Ok(0)` at the end of the stream.
    async fn read_from<R: AsyncRead + Unpin>(&mut self, rd: &mut R) -> std::io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < self.step / 2 {
            self.buf.reserve(self.step);
        }
        let spare = self.buf.capacity() - self.buf.len();
        let n = rd.read_buf(&mut self.buf).await?;
        if n >= spare {
            self.step = (self.step * 2).min(READ_CHUNK);
        }
        Ok(n)
    }
}

/// Why no CONNECT could be read.
enum FirstRead {
    Io(std::io::Error),
    Decode(DecodeError),
}

/// Serves one connection until it ends; hooks are called as documented on [`crate::Hooks`].
pub(crate) async fn serve<S>(
    shared: Arc<Shared>,
    stream: S,
    peer: SocketAddr,
    transport: Transport,
    mut pre: Preconnect,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let max_remaining = shared.limits.max_payload.saturating_add(HEADER_SLACK);
    let mut rbuf = ReadBuf::new();
    let mut stop = shared.shutdown.clone();
    let metrics = shared.metrics.clone();

    // CONNECT, within the pending budget and the connect timeout.
    let first = tokio::select! {
        _ = stop.wait_for(|s| *s) => return,
        _ = &mut pre.evicted => {
            debug!(%peer, "closed before CONNECT to make room for newer connections");
            return;
        }
        r = tokio::time::timeout_at(pre.deadline, read_connect(&mut rd, &mut rbuf, max_remaining)) => r,
    };
    drop(pre);
    let connect = match first {
        Ok(Ok(Packet::Connect(c))) => c,
        Ok(Ok(other)) => {
            metrics.reject(Rejection::ProtocolError);
            warn!(%peer, packet = other.kind().name(), "first packet is not CONNECT: connection closed");
            return;
        }
        Ok(Err(FirstRead::Decode(e @ DecodeError::UnsupportedProtocol { .. }))) => {
            metrics.reject(Rejection::UnsupportedProtocol);
            warn!(%peer, error = %e, "CONNECT refused: unacceptable protocol version");
            refuse(&mut wr, ConnectCode::UnacceptableProtocol).await;
            return;
        }
        Ok(Err(FirstRead::Decode(e))) => {
            metrics.reject(Rejection::CodecError);
            warn!(%peer, error = %e, "malformed packet before CONNECT: connection closed");
            return;
        }
        Ok(Err(FirstRead::Io(e))) => {
            debug!(%peer, error = %e, "connection closed before CONNECT");
            return;
        }
        Err(_) => {
            let n = metrics.hit(Limit::ConnectTimeout);
            if worth_logging(n) {
                warn!(%peer, timeout = ?shared.limits.connect_timeout, total = n, "no CONNECT in time: connection closed");
            }
            return;
        }
    };
    let cert_cn = transport
        .certificate
        .as_ref()
        .and_then(|c| c.common_name.clone());
    if let Err((code, rejection)) = check_connect(&connect, &transport, cert_cn.as_deref()) {
        metrics.reject(rejection);
        match rejection {
            Rejection::IdentifierRejected => {
                warn!(%peer, client_id = %connect.client_id, "CONNECT refused: the client id is not a valid device id")
            }
            _ => warn!(
                %peer,
                client_id = %connect.client_id,
                cert_cn = ?cert_cn,
                "CONNECT refused: the certificate's common name is not the client id"
            ),
        }
        refuse(&mut wr, code).await;
        return;
    }

    // Admission, before any session is touched.
    let request = ConnectRequest {
        client_id: connect.client_id.clone(),
        peer,
        tls: transport.tls,
        certificate: transport.certificate.clone(),
        clean_session: connect.clean_session,
    };
    let admitted = tokio::select! {
        _ = stop.wait_for(|s| *s) => return,
        r = tokio::time::timeout(shared.limits.connect_timeout, shared.hooks.admit(&request)) => r,
    };
    let refusal = match admitted {
        Ok(Ok(())) => None,
        Ok(Err(r)) => Some((r, "")),
        Err(_) => Some((
            Refusal::Unavailable,
            " (the admission hook did not answer in time)",
        )),
    };
    if let Some((refusal, late)) = refusal {
        metrics.reject(Rejection::AdmissionRefused);
        warn!(
            %peer,
            client_id = %connect.client_id,
            tls = transport.tls,
            certificate_id = ?transport.certificate.as_ref().map(|c| &c.certificate_id),
            connack = refusal.connack_code(),
            "CONNECT refused by the hub: {refusal}{late}"
        );
        let code = match refusal {
            Refusal::Unavailable => ConnectCode::ServerUnavailable,
            _ => ConnectCode::NotAuthorized,
        };
        refuse(&mut wr, code).await;
        return;
    }

    // Session (taking over a previous connection with the same id).
    let conn_id = shared.next_conn_id();
    let (kick_tx, mut kick_rx) = oneshot::channel::<Kick>();
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
                    let _ = kick.send(Kick {
                        reason: DisconnectReason::DuplicateClientId,
                        will: true,
                    });
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
        tls: transport.tls,
        cert_common_name: cert_cn,
        certificate: transport.certificate,
        clean_session: connect.clean_session,
    };
    let mut wbuf = BytesMut::new();
    codec::put_connack(&mut wbuf, session_present, ConnectCode::Accepted);
    let connack_sent = tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&wbuf)).await;
    wbuf.clear();
    if !matches!(connack_sent, Ok(Ok(()))) {
        // The CONNACK never left: the connection was not accepted, no hooks.
        if shared.detach(&session, conn_id) {
            expire_later(&shared, &session);
        }
        return;
    }
    let gauge = if info.tls {
        &metrics.connections_tls
    } else {
        &metrics.connections_plain
    };
    Metrics::add(gauge, 1);
    info!(
        client_id = %info.client_id,
        session_id = %info.session_id,
        version = info.version,
        %peer,
        tls = info.tls,
        clean_session = info.clean_session,
        session_present,
        "client connected"
    );
    shared.hooks.on_connect(&info).await;

    let mut conn = run::Conn {
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
    let end = conn
        .run(
            &mut rd,
            &mut wr,
            &mut rbuf,
            &mut wbuf,
            keep_alive,
            &mut kick_rx,
        )
        .await;

    if shared.detach(&session, conn_id) {
        expire_later(&shared, &session);
    }
    Metrics::sub(gauge, 1);
    let _ = tokio::time::timeout(Duration::from_secs(1), wr.shutdown()).await;
    info!(
        client_id = %info.client_id,
        session_id = %info.session_id,
        reason = end.reason.as_aws_str(),
        "client disconnected"
    );
    if end.will {
        if let Some(will) = connect.will {
            conn.publish_will(will).await;
        }
    }
    shared.hooks.on_disconnect(&info, end.reason).await;
    drop(done_tx);
}

/// The broker's own checks of a CONNECT: a device id, and over mTLS the certificate's
/// common name equal to it.
fn check_connect(
    c: &Connect,
    transport: &Transport,
    cert_cn: Option<&str>,
) -> Result<(), (ConnectCode, Rejection)> {
    if mir_proto::DeviceId::check(&c.client_id).is_err() {
        return Err((
            ConnectCode::IdentifierRejected,
            Rejection::IdentifierRejected,
        ));
    }
    if transport.tls && cert_cn != Some(c.client_id.as_str()) {
        return Err((ConnectCode::NotAuthorized, Rejection::AuthFailure));
    }
    Ok(())
}

/// Sends a refusing CONNACK and closes.
async fn refuse<W: AsyncWrite + Unpin>(wr: &mut W, code: ConnectCode) {
    let mut buf = BytesMut::new();
    codec::put_connack(&mut buf, false, code);
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        let _ = wr.write_all(&buf).await;
        let _ = wr.shutdown().await;
    })
    .await;
}

/// Reads until one packet is decoded (the first, which must be CONNECT).
async fn read_connect<R: AsyncRead + Unpin>(
    rd: &mut R,
    rbuf: &mut ReadBuf,
    max_remaining: usize,
) -> Result<Packet, FirstRead> {
    loop {
        match codec::decode(&mut rbuf.buf, max_remaining) {
            Ok(Some(p)) => return Ok(p),
            Ok(None) => {}
            Err(e) => return Err(FirstRead::Decode(e)),
        }
        match rbuf.read_from(rd).await {
            Ok(0) => return Err(FirstRead::Io(std::io::ErrorKind::UnexpectedEof.into())),
            Ok(_) => {}
            Err(e) => return Err(FirstRead::Io(e)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_read_buffer_grows_with_what_arrives_and_not_with_what_is_announced() {
        let mut rbuf = ReadBuf::new();
        assert_eq!(rbuf.buf.capacity(), 0, "nothing before the first read");
        // A PUBLISH header announcing 2 MB: only what arrived is held.
        let mut header: &[u8] = &[0x30, 0x80, 0x80, 0x80, 0x01];
        assert_eq!(rbuf.read_from(&mut header).await.unwrap(), 5);
        assert_eq!(codec::decode(&mut rbuf.buf, 4 << 20), Ok(None));
        assert!(rbuf.buf.capacity() <= READ_MIN, "{}", rbuf.buf.capacity());
        // A steady stream: reservations double up to READ_CHUNK, never past it.
        let data = vec![0u8; 256 * 1024];
        let mut stream: &[u8] = &data;
        let mut most = 0;
        while rbuf.read_from(&mut stream).await.unwrap() > 0 {
            most = most.max(rbuf.step);
            rbuf.buf.clear();
        }
        assert_eq!(most, READ_CHUNK);
        assert!(
            rbuf.buf.capacity() <= 2 * READ_CHUNK,
            "{}",
            rbuf.buf.capacity()
        );
    }
}
