//! The loop of the live streams without replay (telemetry, heartbeats, schemas): one
//! watcher's task reads a broadcast channel and sends each document its filter takes as
//! a server-sent event (`id: <document id>`, `event:` when the document names one,
//! `data: <document JSON>`).
//!
//! - [`LiveDocument`]: what a document of such a stream says about itself;
//! - [`live`]: the watcher's messages. One connection sends an id once (among its last
//!   [`RECENT_IDS`]); a watcher that falls behind the channel gets a [`LAGGED`] message
//!   (how many it missed) and its stream ends; the stream ends when the hub shuts down
//!   or the client goes.

use std::{convert::Infallible, sync::Arc};

use axum::response::sse::Event as SseEvent;
use futures::Stream;
use serde::Serialize;
use tokio::sync::{
    broadcast::{self, error::RecvError},
    mpsc,
};

use mir_shared::domain::{feed::LAGGED, RecentIds};

use super::{
    watch::{receiver_stream, send_or_stop, RECENT_IDS},
    Feed,
};

/// A document of a live stream.
pub(super) trait LiveDocument: Serialize + Send + Sync + 'static {
    /// The SSE `id:` (the same for a document delivered twice).
    fn id(&self) -> &str;
    /// The SSE `event:`; none: the default (`message`).
    fn event(&self) -> Option<&str> {
        None
    }
}

/// The messages of one watcher of `rx` (subscribed by the caller, so what is sent after
/// the subscription is in the stream); `keep` is its filter, `stream` names the stream
/// in the logs.
pub(super) fn live<D: LiveDocument>(
    feed: &Feed,
    mut rx: broadcast::Receiver<Arc<D>>,
    keep: impl Fn(&D) -> bool + Send + 'static,
    stream: &'static str,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let (tx, out) = mpsc::channel(64);
    let feed = feed.clone();
    tokio::spawn(async move {
        let mut sent = RecentIds::new(RECENT_IDS);
        loop {
            let item = tokio::select! {
                _ = feed.shutdown().cancelled() => return,
                _ = tx.closed() => return,
                r = rx.recv() => r,
            };
            let message = match item {
                Ok(d) if keep(&d) && sent.insert(d.id()) => match message_of(&*d) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(stream, id = %d.id(), error = %e, "live stream: cannot encode a document");
                        continue;
                    }
                },
                Ok(_) => continue,
                Err(RecvError::Lagged(missed)) => {
                    tracing::info!(
                        stream,
                        missed,
                        "live stream: a watcher lagged; its stream ends"
                    );
                    let m = SseEvent::default().event(LAGGED).data(missed.to_string());
                    send_or_stop(&feed, &tx, m).await;
                    return;
                }
                Err(RecvError::Closed) => return,
            };
            if !send_or_stop(&feed, &tx, message).await {
                return;
            }
        }
    });
    receiver_stream(out)
}

fn message_of<D: LiveDocument>(d: &D) -> Result<SseEvent, axum::Error> {
    let m = SseEvent::default().id(d.id());
    match d.event() {
        Some(event) => m.event(event),
        None => m,
    }
    .json_data(d)
}
