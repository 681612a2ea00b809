//! The hub's server-sent streams as typed, deduplicated, reconnecting streams.
//!
//! A [`Subscription`] reads one route (`/v1/events/watch`, `/v1/telemetry/watch`, a
//! worker group): it drops an id among the last [`RECENT_IDS`] it yielded, reopens a
//! dropped connection (or one the hub ended, or that said it lagged) after a backoff
//! from [`FIRST_BACKOFF`] doubling to [`MAX_BACKOFF`], and, for events, resumes with
//! `Last-Event-ID` (the hub replays what was stored since). A refusal (4xx, a bad URL,
//! a stream an aws context does not give) ends the stream with the error.
//!
//! On an aws context the event stream is the CLI client's poller
//! (`mir_cli::client::poll`: `GET /v1/events` once a second); its notices (it fell
//! behind, a request is retried) are logged as warnings.
//!
//! Layout: the constants, [`Stream`], [`Subscription`] (open, then `next`: reconnects,
//! notices, dedup, decoding).

use std::{marker::PhantomData, time::Duration};

use futures::{stream::BoxStream, StreamExt};
use serde::de::DeserializeOwned;

use mir_cli::client::{poll, Client, EventStream};
use mir_shared::domain::{feed::LAGGED, RecentIds};

use crate::ModuleError;

/// How many yielded ids a stream remembers to drop duplicates.
pub const RECENT_IDS: usize = 10_000;
/// The wait before the first reconnect.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest wait between reconnects.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A stream of `T` documents (events, telemetry points).
pub type Stream<T> = BoxStream<'static, Result<T, ModuleError>>;

/// One subscription to one of the hub's streams.
pub(crate) struct Subscription<T> {
    pub(crate) client: Client,
    pub(crate) path: &'static str,
    pub(crate) query: Vec<(&'static str, String)>,
    /// Reconnect with `Last-Event-ID` (the event feed without a group).
    pub(crate) resume: bool,
    last_id: Option<String>,
    seen: RecentIds,
    conn: Option<EventStream>,
    backoff: Duration,
    ended: bool,
    _doc: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned + Send + 'static> Subscription<T> {
    /// Opens the first connection (so that what is published after this returns is in
    /// the stream) and gives the stream.
    pub(crate) async fn open(
        client: Client,
        path: &'static str,
        query: Vec<(&'static str, String)>,
        resume: bool,
    ) -> Result<Stream<T>, ModuleError> {
        let conn = client.watch(path, &query, None).await?;
        let sub = Subscription {
            client,
            path,
            query,
            resume,
            last_id: None,
            seen: RecentIds::new(RECENT_IDS),
            conn: Some(conn),
            backoff: FIRST_BACKOFF,
            ended: false,
            _doc: PhantomData,
        };
        Ok(futures::stream::unfold(sub, |mut sub| async move {
            let item = sub.next().await?;
            Some((item, sub))
        })
        .boxed())
    }

    async fn next(&mut self) -> Option<Result<T, ModuleError>> {
        if self.ended {
            return None;
        }
        loop {
            let Some(conn) = self.conn.as_mut() else {
                tokio::time::sleep(self.backoff).await;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                let last = if self.resume {
                    self.last_id.as_deref()
                } else {
                    None
                };
                match self.client.watch(self.path, &self.query, last).await {
                    Ok(c) => self.conn = Some(c),
                    Err(e) if e.is_retryable() => {
                        tracing::warn!(path = self.path, error = %e, "module stream: reconnecting");
                    }
                    Err(e) => {
                        self.ended = true;
                        return Some(Err(e.into()));
                    }
                }
                continue;
            };
            let message = match conn.next().await {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    tracing::warn!(path = self.path, error = %e, "module stream: the connection broke");
                    self.conn = None;
                    continue;
                }
                None => {
                    self.conn = None;
                    continue;
                }
            };
            if message.event == LAGGED {
                tracing::warn!(path = self.path, missed = %message.data, "module stream: the hub says this stream lagged; reconnecting");
                self.conn = None;
                continue;
            }
            if message.id.is_empty() {
                if [poll::SKIPPED, poll::RETRYING].contains(&message.event.as_str()) {
                    tracing::warn!(path = self.path, notice = %message.data, "module stream: the poller's notice");
                }
                continue;
            }
            self.backoff = FIRST_BACKOFF;
            if self.resume {
                self.last_id = Some(message.id.clone());
            }
            if !self.seen.insert(&message.id) {
                continue;
            }
            return Some(serde_json::from_str(&message.data).map_err(|source| {
                ModuleError::Decode {
                    id: message.id,
                    source,
                }
            }));
        }
    }
}
