//! The event feed on an aws context: API Gateway does not stream, so
//! [`Client::watch`](super::Client::watch) polls `GET /v1/events` (signed like every
//! request) and gives the same stream as a hub's server-sent events: `id` the event id,
//! `event` the reason, `data` the [`FeedEvent`](mir_shared::domain::FeedEvent) JSON.
//!
//! Layout: [`open`] (checks what can be polled, lists the label filter's devices and
//! takes the baseline, so a refusal is the caller's error), the [`Poller`] loop, then
//! the stream's notices; the decisions are [`cursor`]'s.
//!
//! - One poll every [`POLL_INTERVAL`]: the pages from [`cursor::MARGIN`] before the
//!   newest event seen, at most [`MAX_PAGES`] of [`cursor::PAGE_LIMIT`] events.
//! - Messages without an id are notices (`data` a sentence): [`SKIPPED`] when a poll
//!   fell behind, [`RETRYING`] when a request failed in a way a retry may fix; the
//!   poller keeps its place and asks again after a backoff doubling from twice
//!   [`POLL_INTERVAL`] to [`MAX_RETRY_WAIT`], so the stream does not end for those (it does not
//!   use `Last-Event-ID`). Any other failure is the stream's last item.
//! - Telemetry and worker groups are not polled: [`AwsUnsupported`].

pub mod cursor;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures::StreamExt;

use mir_shared::domain::{feed::WATCH_PATH, telemetry_feed::TELEMETRY_WATCH_PATH, FeedFilter};

use super::{AwsUnsupported, Client, ClientError, ClientResult, EventStream};
use cursor::Cursor;

/// The wait between polls (one API request each while it keeps up).
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// At most this many pages per poll; past it the poll reports [`SKIPPED`].
pub const MAX_PAGES: usize = 10;
/// The longest wait before asking again after a failed request.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(30);

/// The notice (message without an id) of a poll that fell behind: `data` says which
/// events may be missing.
pub const SKIPPED: &str = "skipped";
/// The notice of a failed request the poller tries again: `data` says why.
pub const RETRYING: &str = "retrying";

/// The polled stream of `path` with `query` (the hub's watch query) on `client`.
pub(super) async fn open(
    client: Client,
    path: &str,
    query: &[(&str, String)],
) -> ClientResult<EventStream> {
    if path == TELEMETRY_WATCH_PATH {
        return Err(ClientError::Unsupported(AwsUnsupported::TelemetryWatch));
    }
    if path != WATCH_PATH {
        return Err(ClientError::Unsupported(AwsUnsupported::Stream {
            path: path.to_string(),
        }));
    }
    if query.iter().any(|(k, _)| *k == "group") {
        return Err(ClientError::Unsupported(AwsUnsupported::WorkerGroup));
    }
    let filter = FeedFilter::from_query(query.iter().map(|(k, v)| (*k, v.as_str())))
        .map_err(|e| ClientError::BadFilter(e.to_string()))?;
    let mut poller = Poller {
        client,
        cursor: Cursor::new(filter, chrono::Utc::now()),
        pending: VecDeque::new(),
        wait: POLL_INTERVAL,
        ended: false,
    };
    poller.round().await?;
    Ok(futures::stream::unfold(poller, |mut p| async move {
        let item = p.next().await?;
        Some((item, p))
    })
    .boxed())
}

struct Poller {
    client: Client,
    cursor: Cursor,
    /// Judged, not yet taken from the stream.
    pending: VecDeque<eventsource_stream::Event>,
    /// Before the next poll.
    wait: Duration,
    ended: bool,
}

impl Poller {
    async fn next(&mut self) -> Option<ClientResult<eventsource_stream::Event>> {
        loop {
            if let Some(message) = self.pending.pop_front() {
                return Some(Ok(message));
            }
            if self.ended {
                return None;
            }
            tokio::time::sleep(self.wait).await;
            match self.round().await {
                Ok(()) => self.wait = POLL_INTERVAL,
                Err(e) if e.is_retryable() => {
                    self.wait = (self.wait * 2).min(MAX_RETRY_WAIT);
                    let wait = self.wait;
                    self.pending
                        .push_back(notice(RETRYING, format!("{e}; polling again in {wait:?}")));
                }
                Err(e) => {
                    self.ended = true;
                    return Some(Err(e));
                }
            }
        }
    }

    /// One poll: the label filter's devices when due, then the pages.
    async fn round(&mut self) -> ClientResult<()> {
        if let Some(targets) = self.cursor.devices_due(Instant::now()) {
            let list = self.client.list_devices(&targets).await?;
            self.cursor.set_devices(&list.devices, Instant::now());
        }
        let mut query = self.cursor.query();
        let mut events = Vec::new();
        let mut truncated = false;
        for page in 1..=MAX_PAGES {
            let list = self.client.list_events(&query).await?;
            events.extend(list.events);
            match list.next_token {
                Some(token) if page == MAX_PAGES => {
                    truncated = !token.is_empty();
                }
                Some(token) if !token.is_empty() => query.next_token = Some(token),
                _ => break,
            }
        }
        let batch = self.cursor.take(events, truncated);
        if let Some(gap) = batch.skipped {
            self.pending.push_back(notice(SKIPPED, gap.to_string()));
        }
        for event in batch.events {
            let data = serde_json::to_string(&event).map_err(|e| ClientError::Decode {
                what: format!("event {}", event.id),
                reason: e.to_string(),
            })?;
            self.pending.push_back(eventsource_stream::Event {
                event: event.reason.as_str().to_string(),
                data,
                id: event.id,
                retry: None,
            });
        }
        Ok(())
    }
}

/// A message without an id: `event` the kind, `data` the sentence.
fn notice(kind: &str, data: String) -> eventsource_stream::Event {
    eventsource_stream::Event {
        event: kind.to_string(),
        data,
        id: String::new(),
        retry: None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };

    use aws_credential_types::Credentials;
    use axum::{http::StatusCode, response::IntoResponse, routing::get, Router};

    use super::*;

    /// A fake API Gateway whose `GET /v1/events` answers the n-th request (from 0) with
    /// `answer(n)`.
    async fn api(answer: fn(usize) -> (StatusCode, String)) -> Client {
        let count = Arc::new(AtomicUsize::new(0));
        let app = Router::new().route(
            "/v1/events",
            get(move || {
                let n = count.fetch_add(1, Ordering::SeqCst);
                async move {
                    let (status, body) = answer(n);
                    (status, [("content-type", "application/json")], body).into_response()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let creds = Credentials::new("AKIDTEST", "secret", None, None, "test");
        Client::new(&format!("http://{addr}"))
            .expect("client")
            .with_signer(crate::sigv4::Signer::with_credentials("eu-west-1", creds))
    }

    fn one_event() -> String {
        let time = (chrono::Utc::now() + chrono::Duration::seconds(1)).to_rfc3339();
        serde_json::json!({"events": [{
            "id": "e1", "time": time, "type": "Normal", "reason": "DeviceOnline",
            "deviceId": "w1", "message": "online"
        }]})
        .to_string()
    }

    #[test]
    fn it_polls_once_a_second_at_most_ten_pages_and_waits_at_most_30_s_after_failures() {
        assert_eq!(POLL_INTERVAL, Duration::from_secs(1));
        assert_eq!(MAX_PAGES, 10);
        assert_eq!(cursor::PAGE_LIMIT, 1_000);
        assert_eq!(cursor::RECENT_IDS, 50_000);
        assert_eq!(MAX_RETRY_WAIT, Duration::from_secs(30));
    }

    #[tokio::test]
    async fn a_failure_a_retry_may_fix_is_a_notice_and_the_poller_keeps_its_place() {
        let client = api(|n| match n {
            0 => (StatusCode::OK, r#"{"events": []}"#.into()),
            1 => (
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"error": "busy"}"#.into(),
            ),
            _ => (StatusCode::OK, one_event()),
        })
        .await;
        let mut stream = client
            .watch(WATCH_PATH, &[], None)
            .await
            .expect("the baseline");
        let notice = stream
            .next()
            .await
            .expect("a notice")
            .expect("not an error");
        assert_eq!(notice.event, RETRYING);
        assert_eq!(notice.id, "");
        assert_eq!(notice.data, "busy; polling again in 2s");
        let event = stream
            .next()
            .await
            .expect("the event")
            .expect("not an error");
        assert_eq!(
            (event.id.as_str(), event.event.as_str()),
            ("e1", "DeviceOnline")
        );
    }

    #[tokio::test]
    async fn a_refusal_is_the_streams_last_item_and_a_refused_baseline_is_the_callers_error() {
        let client = api(|n| match n {
            0 => (StatusCode::OK, r#"{"events": []}"#.into()),
            _ => (StatusCode::FORBIDDEN, r#"{"error": "denied"}"#.into()),
        })
        .await;
        let mut stream = client.watch(WATCH_PATH, &[], None).await.expect("baseline");
        let last = stream.next().await.expect("an item");
        assert!(
            matches!(&last, Err(ClientError::Api { status: 403, .. })),
            "{last:?}"
        );
        assert!(stream.next().await.is_none(), "the stream ended");
        let refused = client.watch(WATCH_PATH, &[], None).await.err();
        assert!(
            matches!(refused, Some(ClientError::Api { status: 403, .. })),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn telemetry_worker_groups_and_other_streams_are_refused_without_a_request() {
        let client = api(|_| panic!("no request")).await;
        let refusal = |path: &'static str, query: Vec<(&'static str, String)>| {
            let client = client.clone();
            async move { client.watch(path, &query, None).await.err() }
        };
        assert!(matches!(
            refusal(TELEMETRY_WATCH_PATH, vec![]).await,
            Some(ClientError::Unsupported(AwsUnsupported::TelemetryWatch))
        ));
        assert!(matches!(
            refusal(WATCH_PATH, vec![("group", "g".into())]).await,
            Some(ClientError::Unsupported(AwsUnsupported::WorkerGroup))
        ));
        assert!(matches!(
            refusal("/v1/routes/watch", vec![]).await,
            Some(ClientError::Unsupported(AwsUnsupported::Stream { .. }))
        ));
    }
}
