//! The documents of the event feed: stored events with their devices' labels, as the
//! `event-feed` function puts them on the EventBridge bus and the hub sends them to
//! its watchers.

use std::collections::HashMap;

use crate::domain::{twin::Meta, Event, FeedEvent};
use crate::ports::{StoreError, TwinStore};

/// The events with their devices' labels, one twin read per device. An event recorded
/// without its device's name gets the twin's name and namespace. A deleted device has
/// no labels. A twin that cannot be read for now fails the whole call (a retry can
/// label it); one that cannot be decoded is logged and its events go out without
/// labels.
pub async fn labelled(
    twins: &dyn TwinStore,
    events: Vec<Event>,
) -> Result<Vec<FeedEvent>, StoreError> {
    let mut metas: HashMap<String, Meta> = HashMap::new();
    let mut out = Vec::with_capacity(events.len());
    for mut e in events {
        if !metas.contains_key(&e.device_id) {
            let meta = meta_of(twins, &e.device_id).await?;
            metas.insert(e.device_id.clone(), meta);
        }
        let meta = metas.get(&e.device_id).cloned().unwrap_or_default();
        if e.name.is_empty() {
            e.name = meta.name;
            e.namespace = meta.namespace;
        }
        out.push(FeedEvent::new(e, meta.labels));
    }
    Ok(out)
}

async fn meta_of(twins: &dyn TwinStore, device_id: &str) -> Result<Meta, StoreError> {
    match twins.get(device_id).await {
        Ok(t) => Ok(t.map(|t| t.value.meta).unwrap_or_default()),
        Err(e) if e.is_retryable() => Err(e),
        Err(e) => {
            tracing::warn!(device_id, error = %e, "event feed: the twin cannot be read; no labels");
            Ok(Meta::default())
        }
    }
}

/// A batch of the event stream that went out only in part: its first `published`
/// events are on the feed, the rest are not (a retry starts from there).
#[derive(Debug, thiserror::Error)]
#[error("{published} events of the batch published, then: {error}")]
pub struct Partial {
    pub published: usize,
    #[source]
    pub error: super::HandlerError,
}

impl Partial {
    pub fn is_retryable(&self) -> bool {
        self.error.is_retryable()
    }
}
