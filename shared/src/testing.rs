//! Test support: a temporary world (embedded store on a temp dir, recording publisher,
//! fixed clock, schema cache) and builders of real event shapes for the weather device.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use prost::Message;

use mir_proto::{
    examples::weather,
    wire::{
        CommandResponse, CommandResponseStatus, Compression, Hello, PropertyValue,
        ReportedProperties, TelemetryBatch, TelemetryItem,
    },
};

use crate::{
    adapters::{
        embedded::EmbeddedStore,
        memory::{FixedClock, RecordingPublisher},
    },
    domain::{EventFilter, Twin, Versioned},
    ports::{EventStore, Ports, SchemaStore, StoredSchema, TwinStore},
    rule_event::RuleEvent,
    schema,
    service::SchemaCache,
};

/// A world for one test. Dropping it deletes its files. [`TestWorld::ports`] holds the
/// same store, publisher, clock and cache as the fields, for `Deps::try_from`.
pub struct TestWorld {
    pub store: EmbeddedStore,
    pub publisher: Arc<RecordingPublisher>,
    pub clock: Arc<FixedClock>,
    pub cache: Arc<SchemaCache>,
    pub ports: Ports,
    _dir: tempfile::TempDir,
}

impl Default for TestWorld {
    fn default() -> Self {
        Self::new()
    }
}

impl TestWorld {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("mir.redb")).unwrap();
        let publisher = Arc::new(RecordingPublisher::new());
        let clock = Arc::new(FixedClock::new(at_ms(1_700_000_000_000)));
        let cache = Arc::new(SchemaCache::default());
        let ports = Ports {
            publisher: Some(publisher.clone()),
            clock: clock.clone(),
            cache: cache.clone(),
            ..Ports::with_stores(store.clone())
        };
        Self {
            store,
            publisher,
            clock,
            cache,
            ports,
            _dir: dir,
        }
    }

    pub async fn twin(&self, id: &str) -> Twin {
        self.twin_versioned(id).await.value
    }

    pub async fn twin_versioned(&self, id: &str) -> Versioned<Twin> {
        TwinStore::get(&self.store, id).await.unwrap().unwrap()
    }

    pub async fn store_schema(&self, id: &str) -> Option<StoredSchema> {
        SchemaStore::get(&self.store, id).await.unwrap()
    }

    /// Reasons of the device's events, newest first.
    pub async fn reasons(&self, id: &str) -> Vec<String> {
        let filter = EventFilter {
            device_id: Some(id.into()),
            ..Default::default()
        };
        EventStore::list(&self.store, &filter, &crate::domain::PageRequest::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|e| e.reason.as_str().to_string())
            .collect()
    }

    /// Creates the weather device with its schema, as a hello would.
    pub async fn with_weather_device(&self, id: &str) -> Twin {
        self.with_device(id, weather::DESCRIPTOR_SET, "schema.v1")
            .await
    }

    /// Creates a device of the [`BLOB_PROTO`] schema (a bytes command, a string config).
    pub async fn with_blob_device(&self, id: &str) -> Twin {
        self.with_device(id, &compile_schema("blob.proto", BLOB_PROTO), "blob.v1")
            .await
    }

    /// Creates a device with the schema `descriptor_set` (of `package`), as a hello would.
    pub async fn with_device(&self, id: &str, descriptor_set: &[u8], package: &str) -> Twin {
        let twin = Twin::auto_provisioned(&mir_proto::DeviceId::new(id).unwrap());
        let twin = TwinStore::create(&self.store, &twin).await.unwrap().value;
        self.store
            .put(&StoredSchema {
                device_id: id.into(),
                compressed: schema::compress(descriptor_set).into(),
                hash: crate::service::schema_hash(descriptor_set),
                package_names: vec![package.into()],
                updated_at: Utc::now(),
            })
            .await
            .unwrap();
        twin
    }
}

/// A schema whose command and config messages can be made as large as a test needs.
pub const BLOB_PROTO: &str = r#"syntax = "proto3";
package blob.v1;
import "mir/device/v1/mir.proto";
message UploadCmd {
  option (mir.device.v1.message_type) = MESSAGE_TYPE_TELECOMMAND;
  bytes data = 1;
}
message NoteProp {
  option (mir.device.v1.message_type) = MESSAGE_TYPE_TELECONFIG;
  string text = 1;
}
"#;

/// The encoded `FileDescriptorSet` (with imports, protox-encoded so that the
/// `mir.device.v1` options stay) of one `.proto` source that may import mir.proto.
pub fn compile_schema(file_name: &str, source: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("mir/device/v1")).unwrap();
    std::fs::write(
        dir.path().join("mir/device/v1/mir.proto"),
        mir_proto::MIR_DEVICE_PROTO,
    )
    .unwrap();
    std::fs::write(dir.path().join(file_name), source).unwrap();
    let mut compiler = protox::Compiler::new([dir.path()]).unwrap();
    compiler.include_imports(true);
    compiler.open_file(file_name).unwrap();
    compiler.encode_file_descriptor_set()
}

pub fn at_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap()
}

/// The rule event of a device's message, published by the device itself.
pub fn rule_event(id: &str, payload: &[u8], received_ms: i64) -> RuleEvent {
    RuleEvent::new(id, id, payload, at_ms(received_ms))
}

pub fn hello_event(id: &str, received_ms: i64) -> RuleEvent {
    let hello = Hello {
        schema: schema::compress(weather::DESCRIPTOR_SET).into(),
        compression: Compression::Zlib as i32,
        sdk_version: "test".into(),
        sent_at_ns: 0,
        heartbeat_interval_sec: 30,
    };
    rule_event(id, &hello.encode_to_vec(), received_ms)
}

pub fn env(ts_ns: i64, temperature: i32) -> weather::Env {
    weather::Env {
        ts: ts_ns,
        temperature,
        pressure: 1013,
        humidity: 40,
        wind_speed: 2.5,
        raining: false,
        station: "roof".into(),
    }
}

pub fn telemetry_event(id: &str, items: &[(&str, Vec<u8>, u64)], received_ms: i64) -> RuleEvent {
    let batch = TelemetryBatch {
        items: items
            .iter()
            .map(|(name, payload, seq)| TelemetryItem {
                name: (*name).into(),
                payload: payload.clone().into(),
                seq: *seq,
                sent_at_ns: 0,
                clock_unsynced: false,
            })
            .collect(),
    };
    rule_event(id, &batch.encode_to_vec(), received_ms)
}

pub fn reported_event(
    id: &str,
    name: &str,
    payload: Vec<u8>,
    updated_ns: i64,
    received_ms: i64,
) -> RuleEvent {
    let rp = ReportedProperties {
        properties: vec![PropertyValue {
            name: name.into(),
            payload: payload.into(),
            updated_at_ns: updated_ns,
            version: 0,
        }],
    };
    rule_event(id, &rp.encode_to_vec(), received_ms)
}

pub fn command_response_event(id: &str, command_id: &str, ok: bool, received_ms: i64) -> RuleEvent {
    let resp = if ok {
        CommandResponse {
            id: command_id.into(),
            status: CommandResponseStatus::Success as i32,
            name: "schema.v1.ActivateHVACResp".into(),
            payload: weather::ActivateHvacResp { success: true }
                .encode_to_vec()
                .into(),
            error: String::new(),
        }
    } else {
        CommandResponse {
            id: command_id.into(),
            status: CommandResponseStatus::Error as i32,
            error: "hvac jammed".into(),
            ..Default::default()
        }
    };
    rule_event(id, &resp.encode_to_vec(), received_ms)
}

/// An API Gateway HTTP API (payload v2) request, from the real event shape in
/// `fixtures/apigw-v2-request.json`, for `route` (e.g. `GET /v1/devices/{deviceId}`)
/// called on `path` with `query` and an optional JSON body.
pub fn api_request(
    route: &str,
    path: &str,
    query: &str,
    body: Option<serde_json::Value>,
) -> aws_lambda_events::apigw::ApiGatewayV2httpRequest {
    let mut ev: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/apigw-v2-request.json")).unwrap();
    let (method, template) = route.split_once(' ').unwrap();
    let params = crate::routes::HttpRoute {
        method: method.into(),
        path: template.into(),
    }
    .match_path(method, path)
    .unwrap();
    ev["routeKey"] = route.into();
    ev["requestContext"]["routeKey"] = route.into();
    ev["rawPath"] = path.into();
    ev["requestContext"]["http"]["method"] = method.into();
    ev["requestContext"]["http"]["path"] = path.into();
    ev["rawQueryString"] = query.into();
    // API Gateway gives each request its own id (events derive their ids from it).
    ev["requestContext"]["requestId"] = uuid::Uuid::new_v4().to_string().into();
    if !params.is_empty() {
        ev["pathParameters"] = serde_json::to_value(params).unwrap();
    }
    if let Some(b) = body {
        ev["body"] = b.to_string().into();
    }
    serde_json::from_value(ev).unwrap()
}

/// Status and JSON body of a response.
pub fn response_json(
    resp: &aws_lambda_events::apigw::ApiGatewayV2httpResponse,
) -> (u16, serde_json::Value) {
    let body = match &resp.body {
        Some(aws_lambda_events::encodings::Body::Text(t)) => serde_json::from_str(t).unwrap(),
        _ => serde_json::Value::Null,
    };
    (resp.status_code as u16, body)
}
