//! Ports: the narrow traits handlers are written against. Adapters implement them for
//! the embedded database (local hub, tests) and for AWS (DynamoDB, Timestream, IoT).
//! [`Ports`] bundles them for one environment.

mod bundle;
mod feed;
mod telemetry;

pub use bundle::{
    CertificateGrace, MissingPort, Ports, StaleAfter, DEFAULT_CERTIFICATE_GRACE,
    DEFAULT_STALE_AFTER,
};
pub use feed::{FeedError, FeedPublisher};
pub use telemetry::{
    PointKey, TelemetryCursor, TelemetryOrder, TelemetryQuery, TelemetryReader, TelemetrySeries,
    TelemetrySink,
};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::domain::{
    command::CommandOutcome,
    page::{self, Page, PageRequest},
    presence::Beat,
    CommandRecord, Event, EventFilter, Targets, Twin, Versioned,
};

/// What went wrong in a store, and whether trying again can help.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The item changed since it was read (optimistic concurrency): read again and retry.
    #[error("version conflict on {0}")]
    Conflict(String),
    #[error("item too large: {0}")]
    TooLarge(String),
    #[error("invalid stored data: {0}")]
    Corrupt(String),
    /// The caller's page token is not one this store gave out.
    #[error(transparent)]
    BadPageToken(#[from] crate::domain::page::BadPageToken),
    /// The store could not be reached or refused for now (throttling, network).
    #[error("store unavailable: {message}")]
    Unavailable {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl StoreError {
    pub fn unavailable(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::Unavailable {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Conflict(_) | StoreError::Unavailable { .. }
        )
    }

    /// The HTTP status an API answers with for this cause.
    pub fn http_status(&self) -> u16 {
        match self {
            StoreError::NotFound(_) => 404,
            StoreError::AlreadyExists(_) | StoreError::Conflict(_) => 409,
            StoreError::TooLarge(_) => 413,
            StoreError::BadPageToken(_) => 400,
            StoreError::Corrupt(_) => 500,
            StoreError::Unavailable { .. } => 503,
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The largest item a store keeps: DynamoDB's item limit (400 KB). The API checks
/// against it whatever the adapter, so that every environment refuses the same input.
pub const MAX_STORED_ITEM_BYTES: usize = 400 * 1024;

/// How long a deleted device's [`Tombstone`] is kept (DynamoDB TTL, the embedded
/// store's pruning): longer than any redelivery (IoT rules retry for at most an hour).
pub const TOMBSTONE_TTL_DAYS: i64 = 30;

/// What deleting a device leaves behind, so that its messages still on their way (or
/// a device that goes on sending) do not create it again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tombstone {
    pub device_id: String,
    pub deleted_at: DateTime<Utc>,
}

/// What [`TwinStore::provision`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Provisioned {
    Created(Versioned<Twin>),
    /// The device was deleted: nothing was written.
    Deleted(Tombstone),
}

/// What [`TwinStore::beat`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeatWrite {
    Written,
    /// Online, with a heartbeat recent enough: nothing written.
    Fresh,
    /// Not for the one-write path: apply the presence rules to the twin.
    NotApplied,
}

/// Device twins. Writes are conditional on the version read (optimistic concurrency),
/// and name/namespace is unique.
#[async_trait]
pub trait TwinStore: Send + Sync {
    async fn get(&self, device_id: &str) -> StoreResult<Option<Versioned<Twin>>>;
    async fn get_by_name(
        &self,
        name: &str,
        namespace: &str,
    ) -> StoreResult<Option<Versioned<Twin>>>;
    /// One page of the twins `targets` selects (no order across pages is promised
    /// beyond each twin coming once).
    async fn list_page(
        &self,
        targets: &Targets,
        page: &PageRequest,
    ) -> StoreResult<Page<Versioned<Twin>>>;
    /// Every twin `targets` selects: all of [`list_page`](Self::list_page)'s pages.
    async fn list(&self, targets: &Targets) -> StoreResult<Vec<Versioned<Twin>>> {
        page::collect_all(|p| async move { self.list_page(targets, &p).await }).await
    }
    /// An operator's create. Fails with `AlreadyExists` when the id or the
    /// name/namespace is taken; removes the device's tombstone.
    async fn create(&self, twin: &Twin) -> StoreResult<Versioned<Twin>>;
    /// The auto-provisioning of a device that sent a message: [`create`](Self::create),
    /// unless the device has a tombstone. Then nothing is written and the tombstone is
    /// returned, except when `revive_after` (a hello's receive time) is later than the
    /// deletion: then the tombstone goes and the twin is created, in one write.
    async fn provision(
        &self,
        twin: &Twin,
        revive_after: Option<DateTime<Utc>>,
    ) -> StoreResult<Provisioned>;
    /// Replaces the twin if its stored version is still `expected_version`, else
    /// `Conflict` (`NotFound` when it was deleted): never re-creates a deleted twin.
    async fn update(&self, twin: &Twin, expected_version: u64) -> StoreResult<Versioned<Twin>>;
    /// [`update`](Self::update) given the twin as read (`current`), so a store can
    /// skip reading it again and write only what changed.
    async fn replace(
        &self,
        current: &Versioned<Twin>,
        twin: &Twin,
    ) -> StoreResult<Versioned<Twin>> {
        self.update(twin, current.version).await
    }
    /// A heartbeat in one conditional write, without reading: when the device is
    /// online and its stored heartbeat older than `beat.refresh_before`, sets its last
    /// heartbeat and `stale_at` ([`BeatWrite::Written`]); when online with a fresher one,
    /// writes nothing ([`BeatWrite::Fresh`]). Anything else (offline, unknown, deleted)
    /// is [`BeatWrite::NotApplied`]: the caller applies the full presence rules. Stores
    /// without such a write answer `NotApplied` always.
    async fn beat(&self, device_id: &str, beat: &Beat) -> StoreResult<BeatWrite> {
        let _ = (device_id, beat);
        Ok(BeatWrite::NotApplied)
    }
    /// One page of the ids of online devices whose `status.stale_at` is before `now`
    /// (the presence sweep), reading only online devices.
    async fn stale(&self, now: DateTime<Utc>, page: &PageRequest) -> StoreResult<Page<String>>;
    /// Deletes and returns the twin, leaving its [`Tombstone`] (deleted at `at`) in the
    /// same write; `None` (and no tombstone) when there was no twin.
    async fn delete(&self, device_id: &str, at: DateTime<Utc>) -> StoreResult<Option<Twin>>;
    /// The device's tombstone, if it was deleted (within [`TOMBSTONE_TTL_DAYS`]) and not
    /// created again since.
    async fn tombstone(&self, device_id: &str) -> StoreResult<Option<Tombstone>>;
}

/// A device's schema (an encoded FileDescriptorSet), kept compressed.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSchema {
    pub device_id: String,
    /// zlib-compressed encoded FileDescriptorSet.
    pub compressed: Bytes,
    /// Hash of the uncompressed bytes, to notice changes cheaply.
    pub hash: String,
    pub package_names: Vec<String>,
    pub updated_at: DateTime<Utc>,
}

#[async_trait]
pub trait SchemaStore: Send + Sync {
    async fn get(&self, device_id: &str) -> StoreResult<Option<StoredSchema>>;
    async fn put(&self, schema: &StoredSchema) -> StoreResult<()>;
    async fn delete(&self, device_id: &str) -> StoreResult<()>;
}

/// Command records.
#[async_trait]
pub trait CommandStore: Send + Sync {
    async fn create(&self, record: &CommandRecord) -> StoreResult<()>;
    async fn get(&self, id: &str) -> StoreResult<Option<CommandRecord>>;
    /// Ends a pending command. Returns the record as stored afterwards and whether this
    /// call changed it (false: it had already ended, e.g. a duplicate response).
    async fn complete(
        &self,
        id: &str,
        outcome: CommandOutcome,
    ) -> StoreResult<(CommandRecord, bool)>;
    /// The records of `ids` that exist, each once, in one read (a transaction, or
    /// BatchGetItem in calls of at most 100 keys), in any order; unknown ids are left out. Waiting for
    /// many answers polls with it: one read per tick for every pending id.
    async fn get_many(&self, ids: &[String]) -> StoreResult<Vec<CommandRecord>>;
}

/// The audit trail.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Stores the events, each once: an event appended again (a redelivered input, from
    /// which a handler derives the same id and time) is not stored twice. Each stored
    /// event gets `expires_at` from the store's [`crate::domain::EventRetention`].
    async fn append(&self, events: &[Event]) -> StoreResult<()>;
    /// One page of the events `filter` matches, newest first: at most `page.limit`,
    /// with a `next_token` when more match. Pages read with the tokens in turn hold every
    /// matching event once. A token that is not a position of this store is
    /// [`StoreError::BadPageToken`].
    async fn list(&self, filter: &EventFilter, page: &PageRequest) -> StoreResult<Page<Event>>;
}

/// A record the sink refused, with its index in the batch and the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedRecord {
    pub index: usize,
    pub reason: String,
}

/// What a sink did with a batch: partial rejections are reported, never dropped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteReport {
    pub written: usize,
    pub rejected: Vec<RejectedRecord>,
}

impl WriteReport {
    /// The records of `records` (the slice this report is of) that were not rejected.
    pub fn stored<'a, T>(&'a self, records: &'a [T]) -> impl Iterator<Item = &'a T> + 'a {
        records
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.rejected.iter().any(|r| r.index == *i))
            .map(|(_, r)| r)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("device {0} is not connected")]
    NotConnected(String),
    #[error("publish failed: {message}")]
    Failed {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// Publishes cloud -> device messages (IoT data plane, or the local broker).
#[async_trait]
pub trait DevicePublisher: Send + Sync {
    async fn publish(&self, topic: &str, payload: Bytes) -> Result<(), PublishError>;
}

/// A certificate issued to a device.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceCertificate {
    pub certificate_id: String,
    pub certificate_pem: String,
    /// Only when the platform generated the key pair (no CSR given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_pem: Option<String>,
    /// The CA that devices should trust to reach the broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_ca_pem: Option<String>,
    /// Where the device connects with this certificate (`mqtts://host:port`), when
    /// the platform knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("invalid certificate request: {0}")]
    Invalid(String),
    /// This deployment signs CSRs only (the private key never leaves the device): the
    /// request gave none.
    #[error("a certificate signing request (csrPem) is required: this deployment does not generate private keys")]
    CsrRequired,
    #[error("certificate authority unavailable: {message}")]
    Unavailable {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl CertificateError {
    /// Whether the same request can succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, CertificateError::Unavailable { .. })
    }

    /// The HTTP status an API answers with for this cause.
    pub fn http_status(&self) -> u16 {
        match self {
            CertificateError::Invalid(_) | CertificateError::CsrRequired => 400,
            CertificateError::Unavailable { .. } => 503,
        }
    }
}

/// Issues and revokes device certificates (AWS IoT control plane, or the local CA).
#[async_trait]
pub trait CertificateIssuer: Send + Sync {
    /// Signs `csr_pem` when given (the private key stays on the device), else creates a
    /// key pair too.
    async fn issue(
        &self,
        device_id: &str,
        csr_pem: Option<&str>,
    ) -> Result<DeviceCertificate, CertificateError>;
    /// Revokes and deletes the device's certificates (on device delete).
    async fn revoke_all(&self, device_id: &str) -> Result<(), CertificateError>;
    /// Marks every certificate of the device active or inactive (enable, disable): an
    /// inactive certificate cannot connect.
    async fn set_active(&self, device_id: &str, active: bool) -> Result<(), CertificateError>;
    /// Revokes every certificate of the device issued before `certificate_id` (its
    /// rotation's grace period is over) and returns how many. Nothing is revoked when
    /// `certificate_id` is no longer the device's (a later delete took it), and never
    /// `certificate_id` itself or one issued after it.
    async fn retire_earlier(
        &self,
        device_id: &str,
        certificate_id: &str,
    ) -> Result<u32, CertificateError>;
}

/// Where handlers get the time from (tests set it).
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}
