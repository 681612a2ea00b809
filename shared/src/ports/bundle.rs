//! [`Ports`]: every port a function may need, built once per environment (the AWS
//! adapters from the Lambda environment, the embedded store in the hub, a temporary
//! world in tests). Each function's `Deps` is derived from it with `TryFrom<&Ports>`,
//! taking only what its handler uses; a port the environment lacks is a
//! [`MissingPort`] at start, naming the port.

use std::sync::Arc;

use super::{
    CertificateIssuer, Clock, CommandStore, DevicePublisher, EventStore, FeedPublisher,
    SchemaStore, SystemClock, TelemetryReader, TelemetrySink, TwinStore,
};
use crate::service::SchemaCache;

/// The type of [`Ports::stale_after`].
pub type StaleAfter = chrono::Duration;

/// A device whose last heartbeat is older than this is offline (the presence sweep).
pub const DEFAULT_STALE_AFTER: chrono::Duration = chrono::Duration::seconds(90);

/// The type of [`Ports::certificate_grace`].
pub type CertificateGrace = chrono::Duration;

/// How long a device's earlier certificates stay active after a new one is issued
/// (the certificate rotation's grace period).
pub const DEFAULT_CERTIFICATE_GRACE: chrono::Duration = chrono::Duration::hours(24);

/// The ports of one environment. Cloning shares the adapters.
#[derive(Clone)]
pub struct Ports {
    pub twins: Option<Arc<dyn TwinStore>>,
    pub schemas: Option<Arc<dyn SchemaStore>>,
    pub commands: Option<Arc<dyn CommandStore>>,
    pub events: Option<Arc<dyn EventStore>>,
    pub telemetry_sink: Option<Arc<dyn TelemetrySink>>,
    pub telemetry_reader: Option<Arc<dyn TelemetryReader>>,
    pub publisher: Option<Arc<dyn DevicePublisher>>,
    /// `None` where the deployment issues no certificates (the API says so).
    pub certificates: Option<Arc<dyn CertificateIssuer>>,
    /// The event feed (the EventBridge bus, the hub's feed).
    pub feed: Option<Arc<dyn FeedPublisher>>,
    pub clock: Arc<dyn Clock>,
    /// Decoded schemas, shared by every function of the process.
    pub cache: Arc<SchemaCache>,
    /// The presence sweep's staleness threshold.
    pub stale_after: chrono::Duration,
    /// The certificate rotation's grace period.
    pub certificate_grace: chrono::Duration,
}

impl std::fmt::Debug for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let has = |b: bool| if b { "set" } else { "none" };
        f.debug_struct("Ports")
            .field("twins", &has(self.twins.is_some()))
            .field("schemas", &has(self.schemas.is_some()))
            .field("commands", &has(self.commands.is_some()))
            .field("events", &has(self.events.is_some()))
            .field("telemetry_sink", &has(self.telemetry_sink.is_some()))
            .field("telemetry_reader", &has(self.telemetry_reader.is_some()))
            .field("publisher", &has(self.publisher.is_some()))
            .field("certificates", &has(self.certificates.is_some()))
            .field("feed", &has(self.feed.is_some()))
            .field("stale_after", &self.stale_after)
            .field("certificate_grace", &self.certificate_grace)
            .finish()
    }
}

impl Default for Ports {
    /// No adapter at all: the wall clock, an empty cache, the default staleness.
    fn default() -> Self {
        Self {
            twins: None,
            schemas: None,
            commands: None,
            events: None,
            telemetry_sink: None,
            telemetry_reader: None,
            publisher: None,
            certificates: None,
            feed: None,
            clock: Arc::new(SystemClock),
            cache: Arc::new(SchemaCache::default()),
            stale_after: DEFAULT_STALE_AFTER,
            certificate_grace: DEFAULT_CERTIFICATE_GRACE,
        }
    }
}

/// A function needs a port its environment does not provide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the {port} port is not configured in this environment")]
pub struct MissingPort {
    pub port: &'static str,
}

fn need<'a, T: ?Sized>(port: &'static str, p: &'a Option<Arc<T>>) -> Result<&'a T, MissingPort> {
    p.as_deref().ok_or(MissingPort { port })
}

impl Ports {
    /// Every store on one adapter that implements them all (the embedded database).
    pub fn with_stores<S>(store: S) -> Self
    where
        S: TwinStore
            + SchemaStore
            + CommandStore
            + EventStore
            + TelemetrySink
            + TelemetryReader
            + Clone
            + 'static,
    {
        Self {
            twins: Some(Arc::new(store.clone())),
            schemas: Some(Arc::new(store.clone())),
            commands: Some(Arc::new(store.clone())),
            events: Some(Arc::new(store.clone())),
            telemetry_sink: Some(Arc::new(store.clone())),
            telemetry_reader: Some(Arc::new(store)),
            ..Self::default()
        }
    }

    pub fn twins(&self) -> Result<&dyn TwinStore, MissingPort> {
        need("twins", &self.twins)
    }

    pub fn schemas(&self) -> Result<&dyn SchemaStore, MissingPort> {
        need("schemas", &self.schemas)
    }

    pub fn commands(&self) -> Result<&dyn CommandStore, MissingPort> {
        need("commands", &self.commands)
    }

    pub fn events(&self) -> Result<&dyn EventStore, MissingPort> {
        need("events", &self.events)
    }

    pub fn telemetry_sink(&self) -> Result<&dyn TelemetrySink, MissingPort> {
        need("telemetry sink", &self.telemetry_sink)
    }

    pub fn telemetry_reader(&self) -> Result<&dyn TelemetryReader, MissingPort> {
        need("telemetry reader", &self.telemetry_reader)
    }

    pub fn publisher(&self) -> Result<&dyn DevicePublisher, MissingPort> {
        need("device publisher", &self.publisher)
    }

    pub fn feed(&self) -> Result<&dyn FeedPublisher, MissingPort> {
        need("event feed", &self.feed)
    }

    /// The feed for decoded telemetry: optional by design, `None` unless the deployment
    /// turns the telemetry feed on (on AWS, by giving the telemetry function the bus).
    pub fn telemetry_feed(&self) -> Option<&dyn FeedPublisher> {
        self.feed.as_deref()
    }

    /// Optional by design: `None` where no certificates are issued.
    pub fn certificates(&self) -> Option<&dyn CertificateIssuer> {
        self.certificates.as_deref()
    }

    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    pub fn cache(&self) -> &SchemaCache {
        &self.cache
    }
}

/// Declares a function's `Deps`: the ports its handler uses, named as in [`Ports`]
/// (`twins`, `schemas`, `commands`, `events`, `sink` (the telemetry sink), `telemetry`
/// (the telemetry reader), `publisher`, `certificates` (optional), `feed`, `cache`,
/// `clock`, `stale_after`, `certificate_grace`, `telemetry_feed` (optional)), with its `TryFrom<&Ports>`. A port the
/// environment lacks is a [`MissingPort`] naming it.
///
/// ```
/// mir_shared::deps! {
///     /// The ports of a heartbeat handler.
///     pub struct Deps { twins, events }
/// }
/// let ports = mir_shared::ports::Ports::default();
/// let missing = Deps::try_from(&ports).err();
/// assert_eq!(missing, Some(mir_shared::ports::MissingPort { port: "twins" }));
/// ```
#[macro_export]
macro_rules! deps {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($field:ident),+ $(,)? }) => {
        $(#[$meta])*
        $vis struct $name<'a> {
            $(pub $field: $crate::deps!(@type $field 'a),)+
        }

        impl<'a> ::core::convert::TryFrom<&'a $crate::ports::Ports> for $name<'a> {
            type Error = $crate::ports::MissingPort;

            fn try_from(ports: &'a $crate::ports::Ports) -> ::core::result::Result<Self, Self::Error> {
                Ok(Self {
                    $($field: $crate::deps!(@get $field ports),)+
                })
            }
        }
    };
    (@type twins $l:lifetime) => { &$l dyn $crate::ports::TwinStore };
    (@type schemas $l:lifetime) => { &$l dyn $crate::ports::SchemaStore };
    (@type commands $l:lifetime) => { &$l dyn $crate::ports::CommandStore };
    (@type events $l:lifetime) => { &$l dyn $crate::ports::EventStore };
    (@type sink $l:lifetime) => { &$l dyn $crate::ports::TelemetrySink };
    (@type telemetry $l:lifetime) => { &$l dyn $crate::ports::TelemetryReader };
    (@type publisher $l:lifetime) => { &$l dyn $crate::ports::DevicePublisher };
    (@type certificates $l:lifetime) => { Option<&$l dyn $crate::ports::CertificateIssuer> };
    (@type feed $l:lifetime) => { &$l dyn $crate::ports::FeedPublisher };
    (@type telemetry_feed $l:lifetime) => { Option<&$l dyn $crate::ports::FeedPublisher> };
    (@type cache $l:lifetime) => { &$l $crate::service::SchemaCache };
    (@type clock $l:lifetime) => { &$l dyn $crate::ports::Clock };
    (@type stale_after $l:lifetime) => { $crate::ports::StaleAfter };
    (@type certificate_grace $l:lifetime) => { $crate::ports::CertificateGrace };
    (@get sink $p:ident) => { $p.telemetry_sink()? };
    (@get telemetry $p:ident) => { $p.telemetry_reader()? };
    (@get certificates $p:ident) => { $p.certificates() };
    (@get telemetry_feed $p:ident) => { $p.telemetry_feed() };
    (@get cache $p:ident) => { $p.cache() };
    (@get clock $p:ident) => { $p.clock() };
    (@get stale_after $p:ident) => { $p.stale_after };
    (@get certificate_grace $p:ident) => { $p.certificate_grace };
    (@get $field:ident $p:ident) => { $p.$field()? };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_port_is_named() {
        let ports = Ports::default();
        let Err(e) = ports.twins() else {
            panic!("no twins port was configured")
        };
        assert_eq!(e, MissingPort { port: "twins" });
        assert_eq!(
            e.to_string(),
            "the twins port is not configured in this environment"
        );
        assert!(ports.certificates().is_none());
    }
}
