//! Custom device routes on the hub: every message a device publishes on one of its own
//! routes (`mir/{id}/x/{module}/{route}`, allowed by the broker's policy) goes to the
//! modules watching `GET /v1/routes/watch` (server-sent events), as the module's topic
//! rule would invoke it on AWS ([`CustomRouteEvent`]).
//!
//! - query: `module` (required), `route`, `deviceId`;
//! - each message: `id: <CustomRouteEvent::id>`, `event: <route>`, `data:
//!   <CustomRouteEvent JSON>`; a comment every [`KEEP_ALIVE`](crate::feed::watch::KEEP_ALIVE);
//! - the platform stores nothing of them: a message nobody watches is gone, as on AWS
//!   without a module's rule; a watcher that falls behind the channel ([`CAPACITY`]
//!   messages) gets a `lagged` message (how many it missed) and the stream ends.

use std::{convert::Infallible, sync::Arc};

use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::{
        sse::{Event as SseEvent, KeepAlive, Sse},
        IntoResponse, Response,
    },
};
use futures::Stream;
use tokio::sync::{broadcast, broadcast::error::RecvError, mpsc};
use tokio_util::sync::CancellationToken;

use mir_shared::{domain::feed::LAGGED, rule_event::CustomRouteEvent};

use crate::http::HttpState;

/// Messages the channel holds for a watcher that reads slower than they come.
pub const CAPACITY: usize = 1024;

/// The route's path.
pub const PATH: &str = mir_shared::rule_event::ROUTES_WATCH_PATH;

/// The custom route messages of one hub. Cloning shares the channel.
#[derive(Clone)]
pub struct CustomRoutes {
    tx: broadcast::Sender<Arc<CustomRouteEvent>>,
}

impl Default for CustomRoutes {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(CAPACITY).0,
        }
    }
}

impl CustomRoutes {
    /// Sends a message to the current watchers (none: it is dropped).
    pub fn publish(&self, event: CustomRouteEvent) {
        let _ = self.tx.send(Arc::new(event));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<CustomRouteEvent>> {
        self.tx.subscribe()
    }
}

/// Which messages a watcher wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteFilter {
    pub module: String,
    pub route: Option<String>,
    pub device_id: Option<String>,
}

/// Why a watch query is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteFilterError {
    #[error("module is required: /v1/routes/watch?module=<name>")]
    NoModule,
    #[error("unknown query parameter {0:?} (module, route, deviceId)")]
    Unknown(String),
}

impl RouteFilter {
    pub fn from_query<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, RouteFilterError> {
        let (mut module, mut route, mut device_id) = (None, None, None);
        for (k, v) in pairs {
            let v = Some(v.to_string()).filter(|v| !v.is_empty());
            match k {
                "module" => module = v,
                "route" => route = v,
                "deviceId" => device_id = v,
                other => return Err(RouteFilterError::Unknown(other.to_string())),
            }
        }
        Ok(Self {
            module: module.ok_or(RouteFilterError::NoModule)?,
            route,
            device_id,
        })
    }

    pub fn matches(&self, e: &CustomRouteEvent) -> bool {
        e.module == self.module
            && self.route.as_ref().is_none_or(|r| *r == e.route)
            && self
                .device_id
                .as_ref()
                .is_none_or(|d| *d == e.message.device_id)
    }
}

/// The handler.
pub async fn watch(
    State(state): State<HttpState>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let filter = match RouteFilter::from_query(params.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    {
        Ok(f) => f,
        Err(e) => {
            let body = serde_json::json!({ "error": e.to_string() }).to_string();
            return (
                StatusCode::BAD_REQUEST,
                [("content-type", "application/json")],
                body,
            )
                .into_response();
        }
    };
    let stream = messages(
        &state.core.custom_routes,
        filter,
        state.feed.shutdown().clone(),
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(crate::feed::watch::KEEP_ALIVE))
        .into_response()
}

/// The messages of one watcher, subscribed before this returns.
pub fn messages(
    routes: &CustomRoutes,
    filter: RouteFilter,
    shutdown: CancellationToken,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let mut rx = routes.subscribe();
    let (tx, out) = mpsc::channel::<SseEvent>(64);
    tokio::spawn(async move {
        loop {
            let item = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tx.closed() => return,
                r = rx.recv() => r,
            };
            let message = match item {
                Ok(e) if filter.matches(&e) => {
                    match SseEvent::default()
                        .id(e.id())
                        .event(&e.route)
                        .json_data(&*e)
                    {
                        Ok(m) => m,
                        Err(err) => {
                            tracing::warn!(error = %err, "custom routes: cannot encode a message");
                            continue;
                        }
                    }
                }
                Ok(_) => continue,
                Err(RecvError::Lagged(missed)) => {
                    tracing::info!(missed, "custom routes: a watcher lagged; its stream ends");
                    let _ = tx
                        .send(SseEvent::default().event(LAGGED).data(missed.to_string()))
                        .await;
                    return;
                }
                Err(RecvError::Closed) => return,
            };
            if tx.send(message).await.is_err() {
                return;
            }
        }
    });
    futures::stream::unfold(out, |mut out| async move {
        out.recv().await.map(|e| (Ok(e), out))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_names_its_module_and_may_narrow_to_a_route_and_a_device() {
        let f = RouteFilter::from_query([("module", "alerts"), ("route", "door")]).expect("ok");
        assert_eq!(f.route.as_deref(), Some("door"));
        assert_eq!(
            RouteFilter::from_query([("route", "door")]),
            Err(RouteFilterError::NoModule)
        );
        assert_eq!(
            RouteFilter::from_query([("module", "a"), ("labels", "x=y")]),
            Err(RouteFilterError::Unknown("labels".into()))
        );
        let route = mir_proto::topics::CustomRoute::new("alerts", "door").expect("names");
        let e = CustomRouteEvent::new("d1", "d1", &route, b"x", chrono::Utc::now());
        assert!(f.matches(&e));
        let other = mir_proto::topics::CustomRoute::new("alerts", "window").expect("names");
        let e2 = CustomRouteEvent::new("d1", "d1", &other, b"x", chrono::Utc::now());
        assert!(!f.matches(&e2));
    }
}
