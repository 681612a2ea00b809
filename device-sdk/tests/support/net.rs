//! Misbehaving network peers on loopback: a broker that closes every connection right
//! after its CONNACK, a proxy that cuts the connection whenever the device sends a
//! marker, a proxy that kicks its first connections right after their CONNACK, and a
//! server-only TLS front for a plain broker.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Instant,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Accepts MQTT connections, answers CONNACK and closes them at once.
pub struct KickingBroker {
    pub addr: SocketAddr,
    connects: Arc<Mutex<Vec<Instant>>>,
    task: JoinHandle<()>,
}

impl KickingBroker {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connects = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&connects);
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = [0u8; 512];
                // The CONNECT packet (type 1) starts with 0x10.
                match socket.read(&mut buf).await {
                    Ok(n) if n > 0 && buf[0] == 0x10 => {}
                    _ => continue,
                }
                lock(&seen).push(Instant::now());
                // CONNACK, session not present, accepted; then close.
                let _ = socket.write_all(&[0x20, 0x02, 0x00, 0x00]).await;
                let _ = socket.flush().await;
                drop(socket);
            }
        });
        Self {
            addr,
            connects,
            task,
        }
    }

    pub fn target(&self) -> String {
        format!("mqtt://{}", self.addr)
    }

    /// When each CONNECT arrived.
    pub fn connects(&self) -> Vec<Instant> {
        lock(&self.connects).clone()
    }
}

impl Drop for KickingBroker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Forwards connections to `upstream`, and cuts one (both sides) as soon as the
/// client sends `marker`.
pub struct CuttingProxy {
    cuts: Arc<Mutex<usize>>,
    task: JoinHandle<()>,
}

impl CuttingProxy {
    pub async fn start_on(addr: SocketAddr, upstream: SocketAddr, marker: &'static [u8]) -> Self {
        let listener = bind_retrying(addr).await;
        let cuts = Arc::new(Mutex::new(0));
        let counted = Arc::clone(&cuts);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let counted = Arc::clone(&counted);
                tokio::spawn(async move {
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let down = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    });
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut tail: Vec<u8> = Vec::new();
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        tail.extend_from_slice(&buf[..n]);
                        if tail.windows(marker.len()).any(|w| w == marker) {
                            *lock(&counted) += 1;
                            break;
                        }
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        let keep = tail.len().saturating_sub(marker.len());
                        tail.drain(..keep);
                    }
                    down.abort();
                });
            }
        });
        Self { cuts, task }
    }

    /// Connections cut on the marker so far.
    pub fn cuts(&self) -> usize {
        *lock(&self.cuts)
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Forwards connections to `upstream`; the first `kicks` are closed (both sides) as
/// soon as the broker's first bytes (the CONNACK) reached the client.
pub struct KickingProxy {
    pub addr: SocketAddr,
    kicked: Arc<Mutex<usize>>,
    task: JoinHandle<()>,
}

impl KickingProxy {
    pub async fn start(upstream: SocketAddr, kicks: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let kicked = Arc::new(Mutex::new(0));
        let counted = Arc::clone(&kicked);
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let Ok(mut server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let kick = {
                    let mut n = lock(&counted);
                    let kick = *n < kicks;
                    if kick {
                        *n += 1;
                    }
                    kick
                };
                tokio::spawn(async move {
                    if !kick {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        return;
                    }
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut cr, &mut sw).await;
                    });
                    let mut buf = [0u8; 64];
                    if let Ok(n) = sr.read(&mut buf).await {
                        let _ = cw.write_all(&buf[..n]).await;
                        let _ = cw.flush().await;
                    }
                    up.abort();
                });
            }
        });
        Self { addr, kicked, task }
    }

    /// Connections kicked so far.
    pub fn kicked(&self) -> usize {
        *lock(&self.kicked)
    }
}

impl Drop for KickingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn bind_retrying(addr: SocketAddr) -> TcpListener {
    for _ in 0..100 {
        if let Ok(l) = TcpListener::bind(addr).await {
            return l;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("cannot bind {addr}");
}

/// A port nobody listens on (yet).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// TLS without client certificates in front of a plain broker at `upstream`: the
/// server certificate is issued by a private CA.
pub struct ServerOnlyTls {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl ServerOnlyTls {
    pub async fn start(cert_pem: &str, key_pem: &str, upstream: SocketAddr) -> Self {
        let certs = rustls_pemfile::certs(&mut cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("server certificate");
        let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
            .expect("server key")
            .expect("a key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(socket).await else {
                        return;
                    };
                    let Ok(mut plain) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        Self { addr, task }
    }
}

impl Drop for ServerOnlyTls {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Forwards to `upstream`; [`SilentProxy::go_silent`] makes the connections open at
/// that time swallow everything and close nothing, like a link that died without a
/// FIN or RST. Later connections are forwarded again (the link came back).
pub struct SilentProxy {
    pub addr: SocketAddr,
    links: Arc<Mutex<Vec<Arc<std::sync::atomic::AtomicBool>>>>,
    task: JoinHandle<()>,
}

impl SilentProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let links = Arc::new(Mutex::new(Vec::new()));
        let opened = Arc::clone(&links);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let flag = Arc::new(AtomicBool::new(false));
                lock(&opened).push(Arc::clone(&flag));
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                for (mut from, mut to) in [
                    (
                        Box::new(cr) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                        Box::new(sw) as Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
                    ),
                    (Box::new(sr), Box::new(cw)),
                ] {
                    let flag = Arc::clone(&flag);
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 16 * 1024];
                        while let Ok(n) = from.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                            if !flag.load(Ordering::SeqCst)
                                && to.write_all(&buf[..n]).await.is_err()
                            {
                                break;
                            }
                        }
                        // Keep both sockets open: the device must notice by itself.
                        std::future::pending::<()>().await;
                    });
                }
            }
        });
        Self { addr, links, task }
    }

    /// From now on nothing gets through the connections open now, and nothing is
    /// closed.
    pub fn go_silent(&self) {
        for link in lock(&self.links).iter() {
            link.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        lock(&self.links).len()
    }
}

impl Drop for SilentProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
