//! A plain TCP proxy in front of the hub's HTTP API that records both directions of
//! every connection: the CLI talks to it as it would to the API, and the test reads
//! what was sent (the raw bytes, or the HTTP/1.1 requests parsed).

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The bytes of one connection, per direction.
#[derive(Debug, Default, Clone)]
struct Connection {
    sent: Vec<u8>,
    received: Vec<u8>,
}

type Log = Arc<Mutex<Vec<Connection>>>;

/// A recording proxy; it runs until the runtime it was started on stops.
#[derive(Debug, Clone)]
pub struct RecordingProxy {
    addr: SocketAddr,
    log: Log,
}

impl RecordingProxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`;
    /// the proxy's tasks run on `runtime`.
    pub fn start(runtime: &tokio::runtime::Handle, upstream: SocketAddr) -> RecordingProxy {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind the recording proxy");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let addr = listener.local_addr().expect("the proxy's address");
        let log = Log::default();
        let connections = log.clone();
        runtime.spawn(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let index = {
                    let mut all = connections.lock().expect("the proxy log");
                    all.push(Connection::default());
                    all.len() - 1
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let up = pipe(cr, sw, connections.clone(), index, true);
                let down = pipe(sr, cw, connections.clone(), index, false);
                tokio::spawn(async move {
                    tokio::join!(up, down);
                });
            }
        });
        RecordingProxy { addr, log }
    }

    /// `http://127.0.0.1:PORT`: give it to the CLI as the API.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn connections(&self) -> Vec<Connection> {
        self.log.lock().expect("the proxy log").clone()
    }

    /// Everything the clients sent, as text.
    pub fn sent(&self) -> String {
        self.text(|c| c.sent)
    }

    /// Everything the upstream answered, as text.
    pub fn received(&self) -> String {
        self.text(|c| c.received)
    }

    fn text(&self, side: fn(Connection) -> Vec<u8>) -> String {
        let bytes: Vec<u8> = self.connections().into_iter().flat_map(side).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The HTTP requests sent so far, in the order of their connections.
    pub fn requests(&self) -> Vec<HttpRequest> {
        self.connections()
            .iter()
            .flat_map(|c| HttpRequest::parse_all(&c.sent))
            .collect()
    }

    /// The last `METHOD PATH` request; panics listing the requests when there is none.
    pub fn last(&self, method: &str, path: &str) -> HttpRequest {
        let all = self.requests();
        all.iter()
            .rev()
            .find(|r| r.method == method && r.path == path)
            .cloned()
            .unwrap_or_else(|| {
                let seen: Vec<String> = all
                    .iter()
                    .map(|r| format!("{} {}", r.method, r.path))
                    .collect();
                panic!("no {method} {path} among the requests {seen:?}")
            })
    }
}

/// Copies `from` to `to`, recording each chunk before it is forwarded (so that what
/// the peer answered to is always in the log).
async fn pipe(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    log: Log,
    index: usize,
    sent: bool,
) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        if let Ok(mut all) = log.lock() {
            let c = &mut all[index];
            let side = if sent { &mut c.sent } else { &mut c.received };
            side.extend_from_slice(&buf[..n]);
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// One HTTP/1.1 request as it went over the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequest {
    pub method: String,
    /// The path without the query.
    pub path: String,
    /// The raw query string (empty when none).
    pub query: String,
    /// Header names in lower case, in the order sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// The value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "the body of {} {} is not JSON ({e}): {}",
                self.method,
                self.path,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The complete requests in `bytes` (one connection's stream); bodies by
    /// `content-length` (the CLI does not send chunked bodies).
    fn parse_all(mut bytes: &[u8]) -> Vec<HttpRequest> {
        let mut out = Vec::new();
        while let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
            let mut lines = head.split("\r\n");
            let mut start = lines.next().unwrap_or_default().split(' ');
            let method = start.next().unwrap_or_default().to_string();
            let target = start.next().unwrap_or_default();
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            let mut request = HttpRequest {
                method,
                path: path.to_string(),
                query: query.to_string(),
                headers,
                body: Vec::new(),
            };
            assert!(
                request.header("transfer-encoding").is_none(),
                "the recording proxy does not parse chunked bodies: {head}"
            );
            let length: usize = request
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let rest = &bytes[end + 4..];
            if rest.len() < length {
                break;
            }
            request.body = rest[..length].to_vec();
            bytes = &rest[length..];
            out.push(request);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelined_requests_are_split_by_their_content_length_and_a_partial_one_is_left_out() {
        let wire = b"PATCH /v1/devices/w?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}\
GET /v1/devices HTTP/1.1\r\nAuthorization: AWS4\r\n\r\n\
POST /v1/config HTTP/1.1\r\ncontent-length: 10\r\n\r\n{\"a\"";
        let all = HttpRequest::parse_all(wire);
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(
            (
                all[0].method.as_str(),
                all[0].path.as_str(),
                all[0].query.as_str()
            ),
            ("PATCH", "/v1/devices/w", "x=1")
        );
        assert_eq!(all[0].json(), serde_json::json!({}));
        assert_eq!(all[1].header("authorization"), Some("AWS4"));
        assert!(all[1].body.is_empty());
    }
}
