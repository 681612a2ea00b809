use std::{os::unix::fs::PermissionsExt, time::Duration};

use socket2::SockRef;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, UnixStream},
};

use super::{
    relay::{Listener, Relay},
    socket::{connect_tcp, Upstream},
};
use crate::config::TcpKeepalive;

const KEEPALIVE: TcpKeepalive = TcpKeepalive {
    idle: Duration::from_secs(17),
    interval: Duration::from_secs(4),
    retries: 6,
};

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_sdks_socket_has_tcp_nodelay_and_the_configured_keepalive_idle_interval_and_probes() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let stream = connect_tcp("127.0.0.1", port, Some(&KEEPALIVE))
        .await
        .expect("connect");
    let socket = SockRef::from(&stream);
    assert!(socket.tcp_nodelay().expect("nodelay"));
    assert!(socket.keepalive().expect("SO_KEEPALIVE"));
    assert_eq!(socket.tcp_keepalive_time().expect("idle"), KEEPALIVE.idle);
    assert_eq!(
        socket.tcp_keepalive_interval().expect("interval"),
        KEEPALIVE.interval
    );
    assert_eq!(socket.tcp_keepalive_retries().expect("probes"), 6);

    let stream = connect_tcp("localhost", port, None).await.expect("connect");
    let socket = SockRef::from(&stream);
    assert!(socket.tcp_nodelay().expect("nodelay"));
    assert!(!socket.keepalive().expect("SO_KEEPALIVE"));
}

#[tokio::test]
async fn a_target_that_refuses_is_an_io_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let err = connect_tcp("127.0.0.1", port, Some(&KEEPALIVE))
        .await
        .expect_err("refused");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
}

/// A relay in front of a TCP echo-less peer: the relay, its socket's path and
/// directory, and the peer's side of the TCP connection.
async fn relay() -> (Relay, String, std::path::PathBuf, tokio::net::TcpStream) {
    let server = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = server.local_addr().expect("addr").port();
    let upstream = connect_tcp("127.0.0.1", port, Some(&KEEPALIVE))
        .await
        .expect("connect");
    let (peer, _) = server.accept().await.expect("accept");
    let listener = Listener::bind().expect("listener");
    let path = listener.path_str().to_owned();
    let dir = listener.dir().to_owned();
    let mode = std::fs::metadata(&dir).expect("dir").permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "the relay's directory is private");
    (
        Relay::start(listener, Upstream::Plain(upstream)),
        path,
        dir,
        peer,
    )
}

#[tokio::test]
async fn the_relay_serves_one_connection_and_nothing_else_can_connect_after_it() {
    let (_relay, path, dir, mut peer) = relay().await;
    let mut local = UnixStream::connect(&path).await.expect("first connection");
    local.write_all(b"ping").await.expect("write");
    let mut buf = [0u8; 4];
    peer.read_exact(&mut buf).await.expect("read");
    assert_eq!(&buf, b"ping");
    peer.write_all(b"pong").await.expect("write");
    local.read_exact(&mut buf).await.expect("read");
    assert_eq!(&buf, b"pong");

    assert!(
        !std::path::Path::new(&path).exists(),
        "the socket is removed"
    );
    assert!(!dir.exists(), "its directory is removed");
    assert!(
        UnixStream::connect(&path).await.is_err(),
        "a second connection is refused"
    );
}

#[tokio::test]
async fn the_relay_closes_rumqttcs_side_when_the_upstream_ends() {
    let (mut relay, path, _dir, peer) = relay().await;
    let mut local = UnixStream::connect(&path).await.expect("connect");
    drop(peer);
    let mut buf = [0u8; 8];
    let read = tokio::time::timeout(Duration::from_secs(5), local.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    drop(local);
    // A clean end of the upstream is no error of its own.
    assert!(relay.upstream_error().await.is_none());
}

#[tokio::test]
async fn a_relay_dropped_before_its_connection_removes_its_directory() {
    let listener = Listener::bind().expect("listener");
    let dir = listener.dir().to_owned();
    let server = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = server.local_addr().expect("addr").port();
    let upstream = connect_tcp("127.0.0.1", port, None).await.expect("connect");
    let relay = Relay::start(listener, Upstream::Plain(upstream));
    assert!(dir.exists());
    drop(relay);
    // The aborted task drops its directory on the runtime.
    for _ in 0..100 {
        if !dir.exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} is still there", dir.display());
}

#[tokio::test]
async fn a_reset_upstream_closes_rumqttcs_side_and_is_reported_as_the_cause() {
    let (mut relay, path, _dir, peer) = relay().await;
    let mut local = UnixStream::connect(&path).await.expect("connect");
    // Linger 0: closing sends a RST, as a link the kernel gave up on ends in an error.
    SockRef::from(&peer)
        .set_linger(Some(Duration::ZERO))
        .expect("linger");
    drop(peer);
    let mut buf = [0u8; 8];
    let read = tokio::time::timeout(Duration::from_secs(5), local.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let cause = relay.upstream_error().await.expect("the upstream's error");
    assert_eq!(cause.kind(), std::io::ErrorKind::ConnectionReset, "{cause}");
}
