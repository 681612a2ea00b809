//! Desired and reported properties: which desired value is the newest per property,
//! which one a handler last got, and what a reported value looks like on the wire.
//!
//! Every new desired value is cached in the offline store ([`StoreOp::CacheDesired`])
//! so that a device booting without network calls its handlers with it.

use std::collections::HashMap;

use bytes::Bytes;
use mir_proto::{
    wire::{DesiredProperties, PropertyValue, ReportedProperties},
    MAX_PAYLOAD_BYTES,
};
use prost::Message;

use super::{
    store_op::{StoreOp, StoreQueue},
    Action, HandlerNames,
};
use crate::SdkError;

/// The desired values received and applied.
#[derive(Debug, Default)]
pub(super) struct Properties {
    /// Newest desired value received per property name (handled or not).
    received: HashMap<String, PropertyValue>,
    /// Last value handed to a property handler per name.
    applied: HashMap<String, PropertyValue>,
}

impl Properties {
    /// Takes the values cached in the store by an earlier run (encoded
    /// [`PropertyValue`]s), dropping corrupt ones.
    pub fn load_cached(&mut self, cached: Vec<(String, Vec<u8>)>) {
        for (_, bytes) in cached {
            match PropertyValue::decode(bytes.as_slice()) {
                Ok(v) => {
                    self.received.insert(v.name.clone(), v);
                }
                Err(e) => tracing::warn!("dropping a corrupt cached desired value: {e}"),
            }
        }
    }

    /// Desired properties from the hub: the newest value of each property reaches its
    /// handler (once), and is cached in the store.
    pub fn on_desired(
        &mut self,
        payload: &Bytes,
        handlers: &dyn HandlerNames,
        store: &mut StoreQueue,
    ) -> Vec<Action> {
        let desired = match DesiredProperties::decode(payload.clone()) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("dropping undecodable desired properties: {e}");
                return Vec::new();
            }
        };
        let mut actions = Vec::new();
        for value in desired.properties {
            let newest = self
                .received
                .get(&value.name)
                .is_none_or(|r| value.updated_at_ns >= r.updated_at_ns);
            if !newest {
                tracing::debug!(name = value.name, "ignoring an older desired value");
                continue;
            }
            if self.received.get(&value.name) != Some(&value) {
                store.push(StoreOp::CacheDesired(value.clone()));
            }
            self.received.insert(value.name.clone(), value.clone());
            if handlers.has_property(&value.name) {
                actions.extend(self.apply(value));
            }
        }
        actions
    }

    /// A property handler registered (or, at launch, found registered) gets the newest
    /// value received or cached in the store.
    pub fn on_registered(&mut self, name: &str) -> Option<Action> {
        let value = self.received.get(name)?.clone();
        self.apply(value)
    }

    fn apply(&mut self, value: PropertyValue) -> Option<Action> {
        if let Some(last) = self.applied.get(&value.name) {
            if value.updated_at_ns < last.updated_at_ns {
                tracing::debug!(
                    name = value.name,
                    "ignoring a desired value older than the applied one"
                );
                return None;
            }
            if value.updated_at_ns == last.updated_at_ns && value.payload == last.payload {
                return None;
            }
        }
        self.applied.insert(value.name.clone(), value.clone());
        Some(Action::ApplyProperty(value))
    }

    /// Last desired value applied per property name.
    pub fn applied(&self) -> impl Iterator<Item = &PropertyValue> {
        self.applied.values()
    }
}

/// The payload of reported properties with one value, refused when too large to publish.
pub(super) fn reported_payload(value: PropertyValue, topic: &str) -> Result<Bytes, SdkError> {
    let reported = ReportedProperties {
        properties: vec![value],
    };
    // AWS IoT Core counts the topic with the payload.
    let size = reported.encoded_len() + topic.len();
    if size > MAX_PAYLOAD_BYTES {
        return Err(SdkError::PayloadTooLarge {
            name: reported
                .properties
                .into_iter()
                .next()
                .map(|p| p.name)
                .unwrap_or_default(),
            size,
            limit: MAX_PAYLOAD_BYTES,
        });
    }
    Ok(reported.encode_to_vec().into())
}
