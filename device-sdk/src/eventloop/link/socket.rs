//! The SDK's own TCP connection: a `socket2` socket with `TCP_NODELAY` and TCP
//! keepalive, connected to the target, then TLS (tokio-rustls) when configured.

use std::{io, net::SocketAddr, sync::Arc};

use rustls::{pki_types::ServerName, ClientConfig};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::{client::TlsStream, TlsConnector};

use crate::config::TcpKeepalive;

/// The connected stream, plain or TLS.
pub(crate) enum Upstream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Connects to `host:port` (each resolved address in turn) with [`tcp_socket`], then
/// does TLS with `tls` (SNI: `host`) if given.
pub(crate) async fn connect(
    host: &str,
    port: u16,
    keepalive: Option<&TcpKeepalive>,
    tls: Option<Arc<ClientConfig>>,
) -> io::Result<Upstream> {
    let tcp = connect_tcp(host, port, keepalive).await?;
    let Some(tls) = tls else {
        return Ok(Upstream::Plain(tcp));
    };
    let name = ServerName::try_from(host.to_owned()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid TLS server name {host:?}: {e}"),
        )
    })?;
    let stream = TlsConnector::from(tls).connect(name, tcp).await?;
    Ok(Upstream::Tls(Box::new(stream)))
}

/// A TCP connection to `host:port` through [`tcp_socket`]: the first resolved address
/// that accepts, else the last error.
pub(crate) async fn connect_tcp(
    host: &str,
    port: u16,
    keepalive: Option<&TcpKeepalive>,
) -> io::Result<TcpStream> {
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        match tcp_socket(&addr, keepalive)?.connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{host} resolves to no address"),
        )
    }))
}

/// A TCP socket for `addr` with `TCP_NODELAY` (small packets such as command answers
/// must not wait for Nagle and delayed ACKs) and, if given, TCP keepalive.
pub(crate) fn tcp_socket(
    addr: &SocketAddr,
    keepalive: Option<&TcpKeepalive>,
) -> io::Result<TcpSocket> {
    let socket = Socket::new(
        Domain::for_address(*addr),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_tcp_nodelay(true)?;
    if let Some(keepalive) = keepalive {
        socket.set_tcp_keepalive(&params(keepalive))?;
    }
    socket.set_nonblocking(true)?;
    Ok(TcpSocket::from_std_stream(socket.into()))
}

/// `TCP_KEEPIDLE`, and where the system has them `TCP_KEEPINTVL` and `TCP_KEEPCNT`.
fn params(keepalive: &TcpKeepalive) -> socket2::TcpKeepalive {
    let params = socket2::TcpKeepalive::new().with_time(keepalive.idle);
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd",
        target_os = "netbsd",
    ))]
    let params = params
        .with_interval(keepalive.interval)
        .with_retries(keepalive.retries);
    params
}
