//! The domain: twins, presence, device targets, events and their retention, commands, list pages and the documents of the hub's streams (events, telemetry, heartbeats, schemas). Pure data and rules, no I/O.

pub mod command;
pub mod device_stream;
pub mod event;
pub mod feed;
pub mod page;
pub mod presence;
pub mod retention;
pub mod targets;
pub mod telemetry_feed;
pub mod twin;

pub use command::{CommandRecord, CommandStatus};
pub use device_stream::{
    DeviceStreamFilter, DeviceStreamFilterError, HeartbeatPoint, HeartbeatStatus,
    SchemaAnnouncement,
};
pub use event::{
    CustomName, CustomNameError, Event, EventFilter, EventReason, EventType, UnknownReason,
};
pub use feed::{FeedEvent, FeedFilter, RecentIds};
pub use page::{Page, PageRequest};
pub use retention::{EventRetention, RetentionError};
pub use targets::{NameRef, Targets};
pub use telemetry_feed::{TelemetryFilter, TelemetryPoint};
pub use twin::{Twin, Versioned};

/// A rule of the domain was broken by the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("{0}")]
    Invalid(String),
}
