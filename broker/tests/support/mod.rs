//! Builders and helpers shared by the broker's integration tests.
//!
//! Every wait is bounded by [`WAIT`] and ends as soon as what it waits for happened (no
//! polling, no fixed sleeps); only "nothing happens" is observed for a while ([`QUIET`]).
//! Brokers bind 127.0.0.1:0 only.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use mir_broker::{
    ca::LocalCa, Broker, BrokerConfig, BrokerHandle, ClientInfo, ConnectRequest, DisconnectReason,
    HookError, Hooks, Refusal, TlsListenerConfig,
};
use rumqttc::{AsyncClient, ConnectionError, Event, MqttOptions, Packet, Publish, Transport};
use tokio::{
    sync::{mpsc, oneshot, Notify, Semaphore},
    task::JoinHandle,
};

/// Upper bound of every wait in the tests.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long "nothing happens" is observed.
pub const QUIET: Duration = Duration::from_millis(300);

/// What the hooks saw, in order.
#[derive(Debug, Clone)]
pub enum HookEvent {
    Connect(ClientInfo),
    Disconnect(ClientInfo, DisconnectReason),
    Publish {
        client_id: String,
        topic: String,
        payload: Bytes,
    },
    /// `admit` was asked (whatever it answered).
    Admit(ConnectRequest),
}

/// The answer of `admit`.
pub type Admission = Arc<dyn Fn(&ConnectRequest) -> Result<(), Refusal> + Send + Sync>;

/// Hooks that record every call; `on_publish` optionally waits for a permit of `gate`,
/// and fails while `fail_publishes` is set; `admit` answers with `admission`.
#[derive(Default)]
pub struct Recorder {
    events: Mutex<Vec<HookEvent>>,
    /// Woken on every recorded event.
    changed: Notify,
    gate: Option<Arc<Semaphore>>,
    admission: Option<Admission>,
    /// `admit` waits for a permit of it first.
    admit_gate: Option<Arc<Semaphore>>,
    pub fail_publishes: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl Hooks for Recorder {
    async fn admit(&self, request: &ConnectRequest) -> Result<(), Refusal> {
        self.push(HookEvent::Admit(request.clone()));
        if let Some(gate) = &self.admit_gate {
            gate.acquire().await.expect("gate open").forget();
        }
        match &self.admission {
            Some(admit) => admit(request),
            None => Ok(()),
        }
    }
    async fn on_connect(&self, client: &ClientInfo) {
        self.push(HookEvent::Connect(client.clone()));
    }
    async fn on_disconnect(&self, client: &ClientInfo, reason: DisconnectReason) {
        self.push(HookEvent::Disconnect(client.clone(), reason));
    }
    async fn on_publish(
        &self,
        client: &ClientInfo,
        topic: &str,
        payload: Bytes,
    ) -> Result<(), HookError> {
        self.push(HookEvent::Publish {
            client_id: client.client_id.clone(),
            topic: topic.to_string(),
            payload,
        });
        if let Some(gate) = &self.gate {
            gate.acquire().await.expect("gate open").forget();
        }
        if self
            .fail_publishes
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(HookError::NotKept("the test's store is down".into()));
        }
        Ok(())
    }
}

impl Recorder {
    fn push(&self, e: HookEvent) {
        self.events.lock().unwrap().push(e);
        self.changed.notify_waiters();
    }

    pub fn events(&self) -> Vec<HookEvent> {
        self.events.lock().unwrap().clone()
    }

    /// Waits until `cond` holds on the events (checked again on every new event), or
    /// panics after [`WAIT`].
    pub async fn wait_until(&self, what: &str, cond: impl Fn(&[HookEvent]) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            // Registered before the check, so that an event pushed in between wakes it.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if cond(&self.events()) {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!(
                    "timed out waiting for {what}; hook events: {:#?}",
                    self.events()
                );
            }
        }
    }

    pub fn connects(&self, client_id: &str) -> Vec<ClientInfo> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                HookEvent::Connect(c) if c.client_id == client_id => Some(c),
                _ => None,
            })
            .collect()
    }

    pub fn disconnects(&self, client_id: &str) -> Vec<DisconnectReason> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                HookEvent::Disconnect(c, r) if c.client_id == client_id => Some(r),
                _ => None,
            })
            .collect()
    }

    pub fn publishes(&self) -> Vec<(String, String, Bytes)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                HookEvent::Publish {
                    client_id,
                    topic,
                    payload,
                } => Some((client_id, topic, payload)),
                _ => None,
            })
            .collect()
    }

    pub fn publish_count(&self) -> usize {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, HookEvent::Publish { .. }))
            .count()
    }

    pub async fn wait_disconnect(&self, client_id: &str, reason: DisconnectReason) {
        self.wait_until(&format!("{client_id} disconnected with {reason:?}"), |evs| {
            evs.iter().any(
                |e| matches!(e, HookEvent::Disconnect(c, r) if c.client_id == client_id && *r == reason),
            )
        })
        .await;
    }

    pub async fn wait_connects(&self, client_id: &str, n: usize) {
        self.wait_until(&format!("{n} connects of {client_id}"), |evs| {
            evs.iter()
                .filter(|e| matches!(e, HookEvent::Connect(c) if c.client_id == client_id))
                .count()
                >= n
        })
        .await;
    }
}

/// Builds and starts a broker on 127.0.0.1:0.
pub struct BrokerBuilder {
    config: BrokerConfig,
    gate: Option<Arc<Semaphore>>,
    admission: Option<Admission>,
    admit_gate: Option<Arc<Semaphore>>,
    plain: bool,
}

pub fn broker() -> BrokerBuilder {
    BrokerBuilder {
        config: BrokerConfig::default(),
        gate: None,
        admission: None,
        admit_gate: None,
        plain: true,
    }
}

impl BrokerBuilder {
    /// Changes any setting.
    pub fn config(mut self, change: impl FnOnce(&mut BrokerConfig)) -> Self {
        change(&mut self.config);
        self
    }
    /// `admit` waits for a permit of `gate` before it answers.
    pub fn admit_gate(mut self, gate: Arc<Semaphore>) -> Self {
        self.admit_gate = Some(gate);
        self
    }
    /// `admit` answers with `admission`.
    pub fn admit(
        mut self,
        admission: impl Fn(&ConnectRequest) -> Result<(), Refusal> + Send + Sync + 'static,
    ) -> Self {
        self.admission = Some(Arc::new(admission));
        self
    }
    pub fn max_payload(mut self, n: usize) -> Self {
        self.config.max_payload = n;
        self
    }
    pub fn max_inflight(mut self, n: u16) -> Self {
        self.config.max_inflight = n;
        self
    }
    pub fn max_queued(mut self, n: usize) -> Self {
        self.config.max_queued_per_session = n;
        self
    }
    /// `on_publish` waits for a permit of `gate` before returning.
    pub fn publish_gate(mut self, gate: Arc<Semaphore>) -> Self {
        self.gate = Some(gate);
        self
    }
    pub fn tls(mut self, tls: TlsListenerConfig) -> Self {
        self.config.tls = Some(tls);
        self
    }
    pub fn tls_only(mut self, tls: TlsListenerConfig) -> Self {
        self.plain = false;
        self.tls(tls)
    }

    pub async fn start(mut self) -> TestBroker {
        if self.plain {
            self.config.plain = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        }
        let hooks = Arc::new(Recorder {
            gate: self.gate,
            admission: self.admission,
            admit_gate: self.admit_gate,
            ..Recorder::default()
        });
        let (stop, stop_rx) = oneshot::channel::<()>();
        let broker = Broker::start(self.config, hooks.clone(), async {
            let _ = stop_rx.await;
        })
        .await
        .expect("broker starts");
        TestBroker {
            handle: broker.handle(),
            plain: broker.plain_addr(),
            tls: broker.tls_addr(),
            broker: Some(broker),
            hooks,
            stop: Some(stop),
        }
    }
}

pub struct TestBroker {
    pub broker: Option<Broker>,
    pub handle: BrokerHandle,
    pub hooks: Arc<Recorder>,
    pub plain: Option<SocketAddr>,
    pub tls: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
}

impl TestBroker {
    pub fn addr(&self) -> SocketAddr {
        self.plain.expect("plain listener")
    }

    /// Resolves the shutdown future and waits (bounded) for `stopped()`.
    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(broker) = self.broker.take() {
            tokio::time::timeout(WAIT, broker.stopped())
                .await
                .expect("broker stopped in time");
        }
    }
}

/// MQTT options for a plain connection, clean session, keepalive 30 s.
pub fn opts(id: &str, addr: SocketAddr) -> MqttOptions {
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(1 << 20, 1 << 20);
    o
}

/// A rumqttc client whose event loop runs in a task until its first error.
pub struct Device {
    pub client: AsyncClient,
    events: mpsc::UnboundedReceiver<Result<Packet, ConnectionError>>,
    task: JoinHandle<()>,
}

impl Device {
    pub fn start(opts: MqttOptions) -> Device {
        let (client, mut eventloop) = AsyncClient::new(opts, 1000);
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(p)) => {
                        if tx.send(Ok(p)).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Outgoing(_)) => {}
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
        });
        Device {
            client,
            events,
            task,
        }
    }

    /// Connects and waits for the CONNACK; returns `session_present`.
    pub async fn connect(opts: MqttOptions) -> (Device, bool) {
        let mut d = Device::start(opts);
        let present = d.connack().await.expect("connection accepted");
        (d, present)
    }

    /// The CONNACK's `session_present`, or the error that ended the connection.
    pub async fn connack(&mut self) -> Result<bool, ConnectionError> {
        match self.next(WAIT).await {
            Some(Ok(Packet::ConnAck(ack))) => Ok(ack.session_present),
            Some(Ok(other)) => panic!("expected CONNACK, got {other:?}"),
            Some(Err(e)) => Err(e),
            None => panic!("no CONNACK within {WAIT:?}"),
        }
    }

    /// The next incoming packet or the error that ended the event loop.
    pub async fn next(&mut self, within: Duration) -> Option<Result<Packet, ConnectionError>> {
        tokio::time::timeout(within, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next incoming PUBLISH within `within`, skipping other packets.
    pub async fn next_publish(&mut self, within: Duration) -> Option<Publish> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await? {
                Ok(Packet::Publish(p)) => return Some(p),
                Ok(_) => {}
                Err(e) => panic!("connection ended while waiting for a publish: {e}"),
            }
        }
    }

    /// The next packet matching `want`, skipping others.
    pub async fn expect_packet(&mut self, what: &str, want: impl Fn(&Packet) -> bool) -> Packet {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(Ok(p)) if want(&p) => return p,
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("connection ended while waiting for {what}: {e}"),
                None => panic!("no {what} within {WAIT:?}"),
            }
        }
    }

    /// Waits for the connection to be closed (by the broker) and returns the error.
    pub async fn expect_closed(&mut self) -> ConnectionError {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(Err(e)) => return e,
                Some(Ok(_)) => {}
                None => panic!("connection still open after {WAIT:?}"),
            }
        }
    }

    /// Subscribes and waits for the SUBACK's return codes.
    pub async fn subscribe(
        &mut self,
        filters: &[(&str, rumqttc::QoS)],
    ) -> Vec<rumqttc::SubscribeReasonCode> {
        let subs = filters
            .iter()
            .map(|(f, q)| rumqttc::SubscribeFilter::new(f.to_string(), *q));
        self.client
            .subscribe_many(subs)
            .await
            .expect("subscribe queued");
        match self
            .expect_packet("SUBACK", |p| matches!(p, Packet::SubAck(_)))
            .await
        {
            Packet::SubAck(ack) => ack.return_codes,
            _ => unreachable!(),
        }
    }

    /// Drops the connection without DISCONNECT.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// A local CA in a temporary directory.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: LocalCa,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::load_or_create(dir.path()).unwrap();
        Pki { dir, ca }
    }

    /// The broker's mTLS listener on 127.0.0.1:0, trusting this CA for clients.
    pub fn listener(&self) -> TlsListenerConfig {
        let server = self.ca.issue_server_cert(&[]).unwrap();
        TlsListenerConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            server_cert_chain_pem: server.cert_pem,
            server_key_pem: server.private_key_pem.unwrap(),
            client_ca_pem: self.ca.ca_cert_pem().to_string(),
        }
    }

    /// A new certificate of this CA for device `id`, and the options that connect with
    /// it to the mTLS listener at `addr`.
    pub fn device_opts(
        &self,
        id: &str,
        addr: SocketAddr,
    ) -> (MqttOptions, mir_broker::ca::IssuedCert) {
        let cert = self
            .ca
            .issue_device_cert(&mir_proto::DeviceId::new(id).unwrap())
            .unwrap();
        let key = cert.private_key_pem.clone().unwrap();
        let opts = tls_opts(
            id,
            addr,
            self.ca.ca_cert_pem(),
            Some((&cert.cert_pem, &key)),
        );
        (opts, cert)
    }
}

/// MQTT options for the mTLS listener, trusting `server_ca_pem`, with an optional
/// client certificate `(cert_pem, key_pem)`.
pub fn tls_opts(
    id: &str,
    addr: SocketAddr,
    server_ca_pem: &str,
    client: Option<(&str, &str)>,
) -> MqttOptions {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(server_ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                .map(|c| c.unwrap())
                .collect();
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    let mut o = opts(id, addr);
    o.set_transport(Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(Arc::new(config)),
    ));
    o
}

/// The TLS alert the broker sent if a refused handshake is what ended the connection
/// (rumqttc reports it from the handshake or, with TLS 1.3, where the client certificate is
/// judged after the client's side of the handshake, from reading the CONNACK).
pub fn tls_alert(e: &ConnectionError) -> Option<rustls::AlertDescription> {
    use rumqttc::{StateError, TlsError};
    let io = match e {
        ConnectionError::Tls(TlsError::TLS(rustls::Error::AlertReceived(alert))) => {
            return Some(*alert)
        }
        ConnectionError::Tls(TlsError::Io(io))
        | ConnectionError::Io(io)
        | ConnectionError::MqttState(StateError::Io(io))
        | ConnectionError::MqttState(StateError::Deserialization(rumqttc::Error::Io(io))) => io,
        _ => return None,
    };
    match io.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(alert) => Some(*alert),
        _ => None,
    }
}

/// A bare TCP MQTT client, for what rumqttc will not send (silence, odd CONNECTs).
pub struct RawClient {
    pub stream: tokio::net::TcpStream,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> RawClient {
        RawClient {
            stream: tokio::net::TcpStream::connect(addr).await.unwrap(),
        }
    }

    /// Sends CONNECT (protocol `level`) and returns the CONNACK return code and
    /// session_present, or `None` if the broker closed the connection first.
    pub async fn handshake(&mut self, id: &str, level: u8, keep_alive: u16) -> Option<(u8, bool)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut body = vec![0, 4];
        body.extend_from_slice(b"MQTT");
        body.extend_from_slice(&[level, 0b10]);
        body.extend_from_slice(&keep_alive.to_be_bytes());
        body.extend_from_slice(&(id.len() as u16).to_be_bytes());
        body.extend_from_slice(id.as_bytes());
        let mut packet = vec![0x10, body.len() as u8];
        packet.extend_from_slice(&body);
        self.stream.write_all(&packet).await.unwrap();
        let mut ack = [0u8; 4];
        match tokio::time::timeout(WAIT, self.stream.read_exact(&mut ack)).await {
            Ok(Ok(_)) => {
                assert_eq!(ack[..2], [0x20, 2], "CONNACK header");
                Some((ack[3], ack[2] == 1))
            }
            _ => None,
        }
    }

    /// Waits until the broker closes the connection; returns how long it took.
    pub async fn wait_closed(&mut self, within: Duration) -> Option<Duration> {
        use tokio::io::AsyncReadExt;
        let start = tokio::time::Instant::now();
        let mut buf = [0u8; 256];
        let deadline = start + within;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
                Ok(Ok(_)) => {}
                Err(_) => return None,
            }
        }
    }
}

/// A frame: first byte, remaining length, body.
pub fn frame(byte1: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![byte1];
    let mut len = body.len();
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        out.push(b);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// A length-prefixed string or binary field.
pub fn field(s: &[u8]) -> Vec<u8> {
    let mut v = (s.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(s);
    v
}

/// A CONNECT of MQTT 3.1.1 with `flags`, keepalive 30 and `payload` (client id first).
pub fn connect_packet(flags: u8, payload: &[&[u8]]) -> Vec<u8> {
    let mut body = field(b"MQTT");
    body.extend_from_slice(&[4, flags, 0, 30]);
    for p in payload {
        body.extend_from_slice(p);
    }
    frame(0x10, &body)
}

impl RawClient {
    pub async fn send(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        // The broker may close before reading everything: a failed write is a close.
        let _ = self.stream.write_all(bytes).await;
    }

    /// Reads `n` bytes, or `None` if the broker closed the connection first.
    pub async fn read(&mut self, n: usize) -> Option<Vec<u8>> {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; n];
        match tokio::time::timeout(WAIT, self.stream.read_exact(&mut buf)).await {
            Ok(Ok(_)) => Some(buf),
            Ok(Err(_)) => None,
            Err(_) => panic!("no {n} bytes and no close within {WAIT:?}"),
        }
    }
}
