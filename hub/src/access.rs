//! Who may use the hub's HTTP API: the `Host` header must name this hub (`localhost`,
//! an IP address, or one of `access.allowedHosts`), so that a web page cannot reach it
//! through DNS rebinding; and, when `access.apiToken` is set (required beyond loopback),
//! every request but `/healthz` and the console's own files
//! ([`console::is_public`](crate::console::is_public)) carries
//! `Authorization: Bearer <token>`, compared in constant time.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use subtle::ConstantTimeEq;

use crate::config::AccessConfig;

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessRefusal {
    #[error("the request has no Host header")]
    NoHost,
    #[error("Host {0:?} is not a name of this hub; add it to access.allowedHosts")]
    ForeignHost(String),
    #[error("this hub needs Authorization: Bearer <token> (access.apiToken)")]
    NoToken,
    #[error("the bearer token is not this hub's")]
    WrongToken,
}

impl AccessRefusal {
    pub fn http_status(&self) -> StatusCode {
        match self {
            AccessRefusal::NoHost => StatusCode::BAD_REQUEST,
            AccessRefusal::ForeignHost(_) => StatusCode::MISDIRECTED_REQUEST,
            AccessRefusal::NoToken | AccessRefusal::WrongToken => StatusCode::UNAUTHORIZED,
        }
    }
}

/// The rules of [`AccessConfig`], for the HTTP server.
#[derive(Clone)]
pub struct Access {
    token: Option<Arc<[u8]>>,
    allowed_hosts: Arc<[String]>,
}

impl Access {
    pub fn new(config: &AccessConfig) -> Self {
        Self {
            token: config.api_token.as_ref().map(|t| Arc::from(t.as_bytes())),
            allowed_hosts: config
                .allowed_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
        }
    }

    /// True when API calls need the bearer token (`access.apiToken` is set).
    pub fn token_required(&self) -> bool {
        self.token.is_some()
    }

    /// Checks one request's headers; `path` decides whether a token is needed.
    pub fn check(&self, path: &str, headers: &HeaderMap) -> Result<(), AccessRefusal> {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .ok_or(AccessRefusal::NoHost)?;
        if !self.is_own_host(host) {
            return Err(AccessRefusal::ForeignHost(host.to_string()));
        }
        let Some(token) = &self.token else {
            return Ok(());
        };
        if path == "/healthz" || crate::console::is_public(path) {
            return Ok(());
        }
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(AccessRefusal::NoToken)?;
        if bool::from(given.as_bytes().ct_eq(token)) {
            Ok(())
        } else {
            Err(AccessRefusal::WrongToken)
        }
    }

    fn is_own_host(&self, host: &str) -> bool {
        let name = host_name(host).to_ascii_lowercase();
        name == "localhost"
            || name.parse::<std::net::IpAddr>().is_ok()
            || self.allowed_hosts.contains(&name)
    }
}

/// The host of a `Host` header: without the port, and an IPv6 literal without brackets.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// The middleware: refuses with a JSON error naming the reason, and logs it.
pub async fn guard(State(access): State<Access>, request: Request, next: Next) -> Response {
    match access.check(request.uri().path(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            tracing::warn!(path = request.uri().path(), reason = %refusal, "HTTP request refused");
            let body = serde_json::json!({ "error": refusal.to_string() }).to_string();
            let mut resp = (refusal.http_status(), body).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            if refusal.http_status() == StatusCode::UNAUTHORIZED {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(host: Option<&str>, auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(host) = host {
            h.insert(header::HOST, HeaderValue::from_str(host).expect("header"));
        }
        if let Some(a) = auth {
            h.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(a).expect("header"),
            );
        }
        h
    }

    #[test]
    fn only_the_hubs_own_names_are_answered() {
        let access = Access::new(&AccessConfig {
            allowed_hosts: vec!["Hub.Lab".into()],
            ..AccessConfig::default()
        });
        for ok in [
            "localhost:8180",
            "127.0.0.1:8180",
            "[::1]:8180",
            "10.0.0.5",
            "hub.lab:8180",
        ] {
            assert_eq!(
                access.check("/v1/devices", &headers(Some(ok), None)),
                Ok(()),
                "{ok}"
            );
        }
        assert_eq!(
            access.check("/v1/devices", &headers(Some("evil.example:8180"), None)),
            Err(AccessRefusal::ForeignHost("evil.example:8180".into()))
        );
        assert_eq!(
            access.check("/v1/devices", &headers(None, None)),
            Err(AccessRefusal::NoHost)
        );
    }

    #[test]
    fn with_a_token_every_route_but_healthz_and_the_console_files_needs_it() {
        let access = Access::new(&AccessConfig {
            api_token: Some("0123456789abcdef".into()),
            ..AccessConfig::default()
        });
        let host = Some("localhost");
        assert_eq!(
            access.check("/v1/devices", &headers(host, None)),
            Err(AccessRefusal::NoToken)
        );
        assert_eq!(
            access.check("/metrics", &headers(host, Some("Bearer 0123456789abcdeX"))),
            Err(AccessRefusal::WrongToken)
        );
        assert_eq!(
            access.check(
                "/v1/devices",
                &headers(host, Some("Bearer 0123456789abcdef"))
            ),
            Ok(())
        );
        assert_eq!(access.check("/healthz", &headers(host, None)), Ok(()));
        for console in ["/", "/config.json", "/assets/app-X1.js"] {
            assert_eq!(
                access.check(console, &headers(host, None)),
                Ok(()),
                "{console}"
            );
        }
        assert_eq!(
            access.check("/", &headers(Some("evil.example"), None)),
            Err(AccessRefusal::ForeignHost("evil.example".into()))
        );
    }
}
