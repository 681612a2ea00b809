//! The event feed port: publishes stored events, with their device's labels, to the
//! subscribers of the platform (an EventBridge bus on AWS, the hub's feed locally), and
//! where the deployment turns it on, the decoded telemetry points that were stored.

use async_trait::async_trait;

use crate::domain::{FeedEvent, TelemetryPoint};

/// Why events could not be published, and whether trying again can help.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The bus could not be reached, throttled, or failed some entries for now: the
    /// first `published` events went out, the rest did not.
    #[error("event feed unavailable after {published} published: {message}")]
    Unavailable {
        published: usize,
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The bus refused an event for good (an invalid entry): retrying cannot help.
    #[error("event {id} refused by the event feed: {code}")]
    Refused { id: String, code: String },
}

impl FeedError {
    /// Whether the same publish may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, FeedError::Unavailable { .. })
    }

    /// The HTTP status an API answers with for this cause.
    pub fn http_status(&self) -> u16 {
        match self {
            FeedError::Unavailable { .. } => 503,
            FeedError::Refused { .. } => 500,
        }
    }
}

/// Publishes events to the feed's subscribers, at least once: a consumer deduplicates
/// by [`FeedEvent::id`].
#[async_trait]
pub trait FeedPublisher: Send + Sync {
    /// Publishes `events` in order. On [`FeedError::Unavailable`], its first
    /// `published` events went out and the rest did not.
    async fn publish(&self, events: &[FeedEvent]) -> Result<(), FeedError>;

    /// Publishes decoded telemetry points in order, with the same at-least-once terms
    /// (a consumer deduplicates by [`TelemetryPoint::id`]).
    async fn publish_telemetry(&self, points: &[TelemetryPoint]) -> Result<(), FeedError>;
}
