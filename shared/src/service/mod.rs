//! Workflows over ports shared by several handlers, and the handlers' error type.
//!
//! - this module: [`HandlerError`], twin read-modify-write, provisioning, the schema
//!   cache;
//! - [`feed`]: events with their devices' labels, the documents of the event feed.

pub mod feed;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};

use crate::domain::{DomainError, Event, EventReason, Twin, Versioned};
use crate::ports::{
    CertificateError, EventStore, FeedError, Provisioned, PublishError, SchemaStore, StoreError,
    TwinStore,
};
use crate::rule_event::RuleEventError;
use crate::schema::{Schema, SchemaError};

/// Why a handler failed: each cause says whether a retry can help (IoT rules retry
/// asynchronous invocations; only a store, the network or a schema that has not arrived
/// yet can change between two tries) and which HTTP status it maps to. No decision is
/// made on the text.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Event(#[from] RuleEventError),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Certificates(#[from] CertificateError),
    #[error(transparent)]
    Feed(#[from] FeedError),
    #[error("malformed {what}: {source}")]
    Malformed {
        what: &'static str,
        #[source]
        source: prost::DecodeError,
    },
    /// Input that names what is wrong with it (`field`: a JSON path or a message name).
    #[error("invalid {field}: {reason}")]
    InvalidInput { field: String, reason: String },
    /// The device has not sent its schema yet: it is asked for it, and a retry decodes.
    #[error("device {0} has not sent its schema yet")]
    NoSchema(String),
    #[error("device {0} does not exist")]
    UnknownDevice(String),
    /// A message of a device that was deleted (it has a tombstone): not auto-provisioned.
    #[error("device {0} was deleted; its messages do not create it again")]
    DeviceDeleted(String),
    #[error("unknown command id {0:?}")]
    UnknownCommand(String),
    /// A device answered a command sent to another device.
    #[error("device {device} answered command {command} of device {owner}; refused")]
    NotItsCommand {
        device: String,
        command: String,
        owner: String,
    },
    #[error("device {device} is disabled; {what} refused")]
    DeviceDisabled { device: String, what: &'static str },
    /// An unknown device's default name is taken by other devices.
    #[error("could not auto-provision {0}: its name is taken")]
    NameTaken(String),
    #[error("unknown lifecycle eventType {0:?}")]
    UnknownLifecycle(String),
}

impl HandlerError {
    pub fn is_retryable(&self) -> bool {
        match self {
            HandlerError::Store(e) => e.is_retryable(),
            HandlerError::Publish(PublishError::Failed { .. }) => true,
            HandlerError::Certificates(e) => e.is_retryable(),
            HandlerError::Feed(e) => e.is_retryable(),
            // The schema usually arrives moments later: a retry delivers the data.
            HandlerError::NoSchema(_) => true,
            HandlerError::Event(_)
            | HandlerError::Schema(_)
            | HandlerError::Domain(_)
            | HandlerError::Publish(PublishError::NotConnected(_))
            | HandlerError::Malformed { .. }
            | HandlerError::InvalidInput { .. }
            | HandlerError::UnknownDevice(_)
            | HandlerError::DeviceDeleted(_)
            | HandlerError::UnknownCommand(_)
            | HandlerError::NotItsCommand { .. }
            | HandlerError::DeviceDisabled { .. }
            | HandlerError::NameTaken(_)
            | HandlerError::UnknownLifecycle(_) => false,
        }
    }

    /// The HTTP status an API answers with for this cause.
    pub fn http_status(&self) -> u16 {
        match self {
            HandlerError::Store(e) => e.http_status(),
            HandlerError::Publish(PublishError::NotConnected(_)) => 409,
            HandlerError::Publish(PublishError::Failed { .. }) => 503,
            HandlerError::Certificates(e) => e.http_status(),
            HandlerError::Feed(e) => e.http_status(),
            HandlerError::NoSchema(_) => 409,
            HandlerError::UnknownDevice(_) | HandlerError::UnknownCommand(_) => 404,
            HandlerError::DeviceDeleted(_) => 410,
            HandlerError::DeviceDisabled { .. } | HandlerError::NameTaken(_) => 409,
            HandlerError::NotItsCommand { .. } => 403,
            HandlerError::Event(_)
            | HandlerError::Schema(_)
            | HandlerError::Domain(_)
            | HandlerError::Malformed { .. }
            | HandlerError::InvalidInput { .. }
            | HandlerError::UnknownLifecycle(_) => 400,
        }
    }

    pub fn invalid(field: impl Into<String>, reason: impl std::fmt::Display) -> HandlerError {
        HandlerError::InvalidInput {
            field: field.into(),
            reason: reason.to_string(),
        }
    }

    pub fn malformed(what: &'static str) -> impl FnOnce(prost::DecodeError) -> HandlerError {
        move |source| HandlerError::Malformed { what, source }
    }
}

/// How many times a read-modify-write is retried on a version conflict.
pub const MAX_TWIN_ATTEMPTS: usize = 16;

/// What a twin change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Unchanged,
    Changed,
}

/// Reads a twin, applies `edit`, writes it back conditional on the version read, and
/// starts over on a conflict. `edit` may run several times. Returns `None` when the
/// twin does not exist (or was deleted meanwhile: a write never re-creates it).
pub async fn update_twin<F>(
    twins: &dyn TwinStore,
    device_id: &str,
    mut edit: F,
) -> Result<Option<Versioned<Twin>>, HandlerError>
where
    F: FnMut(&mut Twin) -> Result<Change, HandlerError> + Send,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let Some(current) = twins.get(device_id).await? else {
            return Ok(None);
        };
        let mut twin = current.value.clone();
        if edit(&mut twin)? == Change::Unchanged {
            return Ok(Some(current));
        }
        match twins.replace(&current, &twin).await {
            Ok(v) => return Ok(Some(v)),
            Err(StoreError::Conflict(_)) if attempt < MAX_TWIN_ATTEMPTS => {
                tokio::time::sleep(Duration::from_millis(jitter_ms(attempt))).await;
            }
            Err(StoreError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Full jitter: a random pause in [0, min(1 s, 10 ms * 2^attempt)], so that many
/// writers of one twin spread out instead of colliding again.
fn jitter_ms(attempt: usize) -> u64 {
    let cap = 10u64
        .saturating_mul(2u64.saturating_pow(attempt.min(7) as u32))
        .min(1000);
    rand::random_range(0..=cap)
}

/// Whether a device's message may create the device again after it was deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterDelete {
    /// Never: heartbeats, lifecycle events, telemetry, reported and desired requests.
    StayDeleted,
    /// When the message was received after the deletion: a hello, by which a device
    /// registers again (see docs/architecture.md, Twin format).
    Recreate,
}

/// The one provisioning step of the device-facing handlers: the twin of the device that
/// sent a message, auto-provisioned in `default` when it is unknown, with its
/// `DeviceCreated` event (`how` says which message created it; `cause` keys the event, so
/// a redelivery records it once). Returns the twin and whether it was created, or
/// `None` when the device was deleted (it has a tombstone) and `after_delete` does not
/// let this message create it again.
pub async fn provision(
    twins: &dyn TwinStore,
    events: &dyn EventStore,
    device_id: &mir_proto::DeviceId,
    at: DateTime<Utc>,
    cause: &str,
    how: &str,
    after_delete: AfterDelete,
) -> Result<Option<(Versioned<Twin>, bool)>, HandlerError> {
    let revive_after = (after_delete == AfterDelete::Recreate).then_some(at);
    let Some((twin, created)) = ensure_twin(twins, device_id, revive_after).await? else {
        tracing::info!(device = %device_id, how, "message of a deleted device: not provisioned");
        return Ok(None);
    };
    if created {
        let event = Event::new(
            EventReason::DeviceCreated,
            device_id.as_str(),
            at,
            cause,
            format!("device auto-provisioned on {how}"),
        )
        .for_twin(&twin.value);
        events.append(&[event]).await?;
    }
    Ok(Some((twin, created)))
}

/// [`provision`] for the device that sent `event` on `topic` (the rule event's device,
/// receive time and cause); a deleted device is [`HandlerError::DeviceDeleted`].
pub async fn provision_sender(
    twins: &dyn TwinStore,
    events: &dyn EventStore,
    event: &crate::rule_event::RuleEvent,
    topic: mir_proto::topics::DeviceTopic,
    how: &str,
) -> Result<(Versioned<Twin>, bool), HandlerError> {
    let id = event.device()?;
    let cause = event.cause(topic);
    let at = event.received_at();
    provision(
        twins,
        events,
        &id,
        at,
        &cause,
        how,
        AfterDelete::StayDeleted,
    )
    .await?
    .ok_or_else(|| HandlerError::DeviceDeleted(id.to_string()))
}

/// The twin of a device, created (auto-provisioned in `default`) if it does not exist
/// and has no tombstone (or one older than `revive_after`). Returns whether it was
/// created; `None` for a deleted device. Handlers go through [`provision`], which
/// records the creation.
async fn ensure_twin(
    twins: &dyn TwinStore,
    device_id: &mir_proto::DeviceId,
    revive_after: Option<DateTime<Utc>>,
) -> Result<Option<(Versioned<Twin>, bool)>, HandlerError> {
    if let Some(t) = twins.get(device_id.as_str()).await? {
        return Ok(Some((t, false)));
    }
    let mut twin = Twin::auto_provisioned(device_id);
    // The name may be taken by another device: fall back to a name no one chose.
    for attempt in 0..3 {
        match twins.provision(&twin, revive_after).await {
            Ok(Provisioned::Created(t)) => return Ok(Some((t, true))),
            Ok(Provisioned::Deleted(_)) => return Ok(None),
            Err(StoreError::AlreadyExists(_)) => {
                if let Some(t) = twins.get(device_id.as_str()).await? {
                    return Ok(Some((t, false)));
                }
                twin.meta.name = format!("{}-{}", device_id, attempt + 1);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(HandlerError::NameTaken(device_id.to_string()))
}

/// When a schema was loaded, its hash, and the schema.
type CachedSchema = (Instant, String, Arc<Schema>);

/// Decoded schemas by device, shared by the invocations of one process. Entries are
/// re-validated against the stored hash after `ttl`. Devices that sent the same schema
/// share one decoded copy (a fleet of identical devices costs one descriptor pool).
pub struct SchemaCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, CachedSchema>>,
    by_hash: Mutex<HashMap<String, Weak<Schema>>>,
}

impl std::fmt::Debug for SchemaCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaCache")
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl Default for SchemaCache {
    fn default() -> Self {
        Self::new(Duration::from_secs(30))
    }
}

impl SchemaCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
            by_hash: Mutex::new(HashMap::new()),
        }
    }

    /// The copy already decoded for `hash`, else `schema` (remembered for the next device).
    fn shared(&self, hash: &str, schema: Arc<Schema>) -> Arc<Schema> {
        let Ok(mut by_hash) = self.by_hash.lock() else {
            return schema;
        };
        if let Some(existing) = by_hash.get(hash).and_then(Weak::upgrade) {
            return existing;
        }
        by_hash.retain(|_, w| w.strong_count() > 0);
        by_hash.insert(hash.to_string(), Arc::downgrade(&schema));
        schema
    }

    fn decoded(&self, hash: &str) -> Option<Arc<Schema>> {
        self.by_hash.lock().ok()?.get(hash).and_then(Weak::upgrade)
    }

    /// The device's schema, or `None` if it never sent one.
    pub async fn get(
        &self,
        store: &dyn SchemaStore,
        device_id: &str,
    ) -> Result<Option<Arc<Schema>>, HandlerError> {
        if let Some(s) = self.fresh(device_id) {
            return Ok(Some(s));
        }
        self.load(store, device_id).await
    }

    /// Reads the store again (after a hello, or when a message name is unknown).
    pub async fn load(
        &self,
        store: &dyn SchemaStore,
        device_id: &str,
    ) -> Result<Option<Arc<Schema>>, HandlerError> {
        let Some(stored) = store.get(device_id).await? else {
            self.forget(device_id);
            return Ok(None);
        };
        if let Ok(mut entries) = self.entries.lock() {
            if let Some((at, hash, schema)) = entries.get_mut(device_id) {
                if *hash == stored.hash {
                    *at = Instant::now();
                    return Ok(Some(schema.clone()));
                }
            }
        }
        let schema = match self.decoded(&stored.hash) {
            Some(schema) => schema,
            None => {
                let raw = crate::schema::decompress(&stored.compressed)?;
                self.shared(&stored.hash, Arc::new(Schema::from_descriptor_set(&raw)?))
            }
        };
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(
                device_id.to_string(),
                (Instant::now(), stored.hash, schema.clone()),
            );
        }
        Ok(Some(schema))
    }

    /// Stores a freshly decoded schema (the hello handler has it already).
    pub fn insert(&self, device_id: &str, hash: String, schema: Arc<Schema>) {
        let schema = self.shared(&hash, schema);
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(device_id.to_string(), (Instant::now(), hash, schema));
        }
    }

    pub fn forget(&self, device_id: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(device_id);
        }
    }

    fn fresh(&self, device_id: &str) -> Option<Arc<Schema>> {
        let entries = self.entries.lock().ok()?;
        let (at, _, schema) = entries.get(device_id)?;
        (at.elapsed() < self.ttl).then(|| schema.clone())
    }
}

/// Hash of schema bytes, hex.
pub fn schema_hash(raw: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    raw.hash(&mut h);
    format!("{:016x}-{}", h.finish(), raw.len())
}

/// Nanoseconds since epoch of a time, saturating.
pub fn nanos(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// The time of nanoseconds since epoch.
pub fn from_nanos(ns: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(ns)
}

/// Encodes desired properties of `twin` for the device: all of them (`names` = None,
/// `complete` set) or the named ones. Properties the schema cannot encode are skipped
/// and returned with the reason.
pub fn desired_message(
    schema: &Schema,
    twin: &Twin,
    names: Option<&[String]>,
) -> (mir_proto::wire::DesiredProperties, Vec<(String, String)>) {
    let mut out = mir_proto::wire::DesiredProperties {
        properties: Vec::new(),
        complete: names.is_none(),
    };
    let mut skipped = Vec::new();
    for (name, value) in &twin.properties.desired {
        if names.is_some_and(|n| !n.contains(name)) {
            continue;
        }
        let encoded = schema
            .message(name)
            .and_then(|desc| schema.json_to_proto(&desc, value));
        match encoded {
            Ok(bytes) => out.properties.push(mir_proto::wire::PropertyValue {
                name: name.clone(),
                payload: bytes.into(),
                updated_at_ns: twin
                    .status
                    .properties
                    .desired
                    .get(name)
                    .map(|t| nanos(*t))
                    .unwrap_or(0),
                version: 0,
            }),
            Err(e) => skipped.push((name.clone(), e.to_string())),
        }
    }
    (out, skipped)
}

/// Pushes the named desired properties of `twin` to the device when it is online.
/// Returns whether they were sent (false: offline; the device pulls them on connect).
pub async fn push_desired(
    publisher: &dyn crate::ports::DevicePublisher,
    schema: &Schema,
    twin: &Twin,
    names: &[String],
) -> Result<bool, HandlerError> {
    if !twin.status.online || names.is_empty() {
        return Ok(false);
    }
    let id = twin.device_id()?;
    let (msg, skipped) = desired_message(schema, twin, Some(names));
    if let Some((name, reason)) = skipped.first() {
        return Err(HandlerError::invalid(format!("desired {name}"), reason));
    }
    let topic = mir_proto::topics::DeviceTopic::Desired.for_device(&id);
    match publisher
        .publish(&topic, prost::Message::encode_to_vec(&msg).into())
        .await
    {
        Ok(()) => Ok(true),
        Err(PublishError::NotConnected(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Checks every desired property of `twin` against the schema (when there is one) and
/// normalizes the JSON (proto3 names, defaults).
pub fn validate_desired(
    schema: Option<&Schema>,
    twin: &mut Twin,
    names: &[String],
) -> Result<(), HandlerError> {
    let Some(schema) = schema else {
        return Ok(());
    };
    for name in names {
        let Some(value) = twin.properties.desired.get(name) else {
            continue;
        };
        let desc = schema.message_of_kind(name, crate::schema::MessageKind::Config)?;
        let bytes = schema.json_to_proto(&desc, value)?;
        let normalized = schema.proto_to_json(&desc, &bytes)?;
        twin.properties.desired.insert(name.clone(), normalized);
    }
    Ok(())
}

/// The messages of `kind` each targeted device accepts, with JSON templates and, for
/// config, the desired value in the twin. `only` keeps one message name; when a
/// device does not have it, its entry says which names it has.
pub async fn catalog(
    twins: &dyn TwinStore,
    schemas: &dyn SchemaStore,
    cache: &SchemaCache,
    targets: &crate::domain::Targets,
    only: Option<&str>,
    kind: crate::schema::MessageKind,
) -> Result<crate::api::Catalog, HandlerError> {
    use crate::api::{DeviceCatalog, MessageInfo};
    let mut devices = Vec::new();
    for twin in twins.list(targets).await?.into_iter().map(|t| t.value) {
        let mut entry = DeviceCatalog {
            device_id: twin.spec.device_id.clone(),
            name: twin.meta.name.clone(),
            namespace: twin.meta.namespace.clone(),
            messages: vec![],
            error: None,
        };
        match cache.get(schemas, &twin.spec.device_id).await? {
            None => entry.error = Some("no schema yet: the device has not connected".into()),
            Some(schema) => {
                for name in schema.messages_of(kind) {
                    if only.is_some_and(|n| n != name) {
                        continue;
                    }
                    let desc = schema.message(&name)?;
                    entry.messages.push(MessageInfo {
                        template: schema.template(&desc),
                        desired: twin.properties.desired.get(&name).cloned(),
                        name,
                    });
                }
                if let (Some(n), true) = (only, entry.messages.is_empty()) {
                    entry.error = schema.message_of_kind(n, kind).err().map(|e| e.to_string());
                }
            }
        }
        devices.push(entry);
    }
    Ok(crate::api::Catalog { devices })
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use crate::testing::TestWorld;

    #[test]
    fn each_cause_says_whether_a_retry_helps_and_its_http_status() {
        let cases: Vec<(HandlerError, bool, u16)> = vec![
            (HandlerError::NoSchema("d".into()), true, 409),
            (
                HandlerError::Store(StoreError::Unavailable {
                    message: "throttled".into(),
                    source: None,
                }),
                true,
                503,
            ),
            (
                HandlerError::Store(StoreError::Conflict("d".into())),
                true,
                409,
            ),
            (
                HandlerError::Store(StoreError::TooLarge("d".into())),
                false,
                413,
            ),
            (
                HandlerError::invalid("spec.deviceId", "cannot change"),
                false,
                400,
            ),
            (HandlerError::UnknownDevice("d".into()), false, 404),
            (HandlerError::DeviceDeleted("d".into()), false, 410),
            (HandlerError::UnknownCommand("c".into()), false, 404),
            (
                HandlerError::DeviceDisabled {
                    device: "d".into(),
                    what: "telemetry",
                },
                false,
                409,
            ),
            (HandlerError::NameTaken("d".into()), false, 409),
            (
                HandlerError::Publish(PublishError::NotConnected("d".into())),
                false,
                409,
            ),
            (
                HandlerError::Publish(PublishError::Failed {
                    message: "x".into(),
                    source: None,
                }),
                true,
                503,
            ),
            (HandlerError::UnknownLifecycle("x".into()), false, 400),
        ];
        for (e, retry, status) in cases {
            assert_eq!(e.is_retryable(), retry, "{e}");
            assert_eq!(e.http_status(), status, "{e}");
            assert_eq!(crate::api::ApiError::from(e).status, status);
        }
        assert_eq!(
            HandlerError::invalid("spec.deviceId", "cannot change").to_string(),
            "invalid spec.deviceId: cannot change"
        );
    }

    #[tokio::test]
    async fn devices_with_the_same_schema_share_one_decoded_copy() {
        let w = TestWorld::new();
        w.with_weather_device("a").await;
        w.with_weather_device("b").await;
        let cache = SchemaCache::default();
        let a = cache.get(&w.store, "a").await.expect("ok").expect("schema");
        let b = cache.get(&w.store, "b").await.expect("ok").expect("schema");
        assert!(Arc::ptr_eq(&a, &b));
        let fresh = Arc::new(
            Schema::from_descriptor_set(mir_proto::examples::weather::DESCRIPTOR_SET)
                .expect("schema"),
        );
        cache.insert(
            "c",
            schema_hash(mir_proto::examples::weather::DESCRIPTOR_SET),
            fresh,
        );
        let c = cache.get(&w.store, "c").await.expect("ok").expect("schema");
        assert!(
            Arc::ptr_eq(&a, &c),
            "a hello's own copy is replaced by the shared one"
        );
    }
}
