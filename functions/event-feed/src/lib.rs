//! `event-feed`: publishes every event the platform stores, with its device's labels,
//! to the event feed: on AWS the EventBridge bus (`source` `mir`, `detail-type` the
//! reason, `detail` the [`FeedEvent`](mir_shared::domain::FeedEvent) document), locally
//! the hub's feed.
//!
//! On AWS the events table's DynamoDB stream invokes it with the new items (the event
//! source mapping filters out everything but inserted events), so no handler that
//! records an event pays for publishing it. An event appended again (a redelivered
//! input: same key, same item) changes nothing in the table and so puts no second
//! record on the stream; delivery is still at least once (a retried batch), and
//! consumers deduplicate by the event's `id`.
//!
//! - [`handle`]: labels the batch (one twin read per device) and publishes it in order.
//!   A failure that a retry can fix is a [`Partial`] saying how many events went out,
//!   so the stream is retried from the first one that did not. An event the bus refuses
//!   for good is logged and skipped, so it cannot hold up the events behind it; it stays
//!   in the store (`GET /v1/events`).

use serde::Serialize;

use mir_shared::{
    domain::Event,
    ports::FeedError,
    service::{
        feed::{labelled, Partial},
        HandlerError,
    },
};

mir_shared::deps! {
    /// The ports `event-feed` uses.
    pub struct Deps { twins, feed }
}

/// What one batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedOutcome {
    /// Events on the feed.
    pub published: usize,
    /// Events the bus refused for good (logged).
    pub refused: usize,
}

/// Publishes `events`, in order, with their devices' labels.
pub async fn handle(deps: &Deps<'_>, events: Vec<Event>) -> Result<FeedOutcome, Partial> {
    let documents = labelled(deps.twins, events).await.map_err(|e| Partial {
        published: 0,
        error: HandlerError::Store(e),
    })?;
    let mut outcome = FeedOutcome::default();
    let mut rest = documents.as_slice();
    while !rest.is_empty() {
        match deps.feed.publish(rest).await {
            Ok(()) => {
                outcome.published += rest.len();
                rest = &[];
            }
            Err(FeedError::Refused { id, code }) => {
                // Everything before the refused event went out; it is skipped.
                let at = rest.iter().position(|e| e.id == id).unwrap_or(0);
                tracing::error!(event_id = %id, %code, "event feed: the bus refused the event; skipped");
                outcome.published += at;
                outcome.refused += 1;
                rest = rest.get(at + 1..).unwrap_or_default();
            }
            Err(FeedError::Unavailable {
                published,
                message,
                source,
            }) => {
                return Err(Partial {
                    published: outcome.published + outcome.refused + published,
                    error: HandlerError::Feed(FeedError::Unavailable {
                        published,
                        message,
                        source,
                    }),
                });
            }
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests;
