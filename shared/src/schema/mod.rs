//! The schema registry: a device's protobuf schema, read with prost-reflect from the
//! `FileDescriptorSet` the device sent in its `Hello`.
//!
//! It answers which messages are telemetry, commands or configuration (Mir's
//! `mir.device.v1` annotations), converts between protobuf and proto3 JSON, produces
//! JSON templates (the CLI's `-j`) and builds telemetry mapping plans.

use prost::Message as _;
use std::{
    collections::HashMap,
    io::Read,
    sync::{Arc, Mutex},
};

use prost_reflect::{
    DescriptorPool, DynamicMessage, ExtensionDescriptor, FieldDescriptor, Kind, MessageDescriptor,
    ReflectMessage, SerializeOptions, Value as PValue,
};
use serde_json::{Map, Value};

use mir_proto::wire::{Compression, Hello};

use crate::telemetry::TelemetryPlan;

mod view;
pub use view::{
    Cardinality, EnumValue, FieldView, MessageView, SchemaView, TimestampPrecision, ValueType,
};

/// Largest schema accepted once decompressed.
pub const MAX_SCHEMA_BYTES: usize = 8 * 1024 * 1024;

/// What a message is for, from its `mir.device.v1.message_type` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    Telemetry,
    Command,
    Config,
    Plain,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("the schema is not a valid protobuf FileDescriptorSet: {0}")]
    InvalidDescriptor(String),
    #[error("the schema could not be decompressed: {0}")]
    Decompress(String),
    #[error("the schema is larger than {MAX_SCHEMA_BYTES} bytes once decompressed")]
    TooLarge,
    #[error("unknown message {name:?}; known {kind} messages: {}", known.join(", "))]
    UnknownMessage {
        name: String,
        kind: &'static str,
        known: Vec<String>,
    },
    #[error("{name} is a {actual:?} message, not a {expected:?} message")]
    WrongKind {
        name: String,
        expected: MessageKind,
        actual: MessageKind,
    },
    #[error("invalid JSON for {message}: {error}")]
    InvalidJson { message: String, error: String },
    #[error("malformed protobuf for {message}: {error}")]
    Decode { message: String, error: String },
}

struct Extensions {
    message_type: ExtensionDescriptor,
    meta: Option<ExtensionDescriptor>,
    timestamp: Option<ExtensionDescriptor>,
    field_meta: Option<ExtensionDescriptor>,
}

/// A device's schema.
pub struct Schema {
    pool: DescriptorPool,
    ext: Option<Extensions>,
    plans: Mutex<HashMap<String, Arc<TelemetryPlan>>>,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema")
            .field("packages", &self.package_names())
            .finish()
    }
}

/// Decompresses the schema carried by a `Hello`.
pub fn hello_schema_bytes(hello: &Hello) -> Result<Vec<u8>, SchemaError> {
    match Compression::try_from(hello.compression).unwrap_or(Compression::None) {
        Compression::None => {
            if hello.schema.len() > MAX_SCHEMA_BYTES {
                return Err(SchemaError::TooLarge);
            }
            Ok(hello.schema.to_vec())
        }
        Compression::Zlib => {
            let mut out = Vec::new();
            let mut decoder =
                flate2::read::ZlibDecoder::new(&hello.schema[..]).take(MAX_SCHEMA_BYTES as u64 + 1);
            decoder
                .read_to_end(&mut out)
                .map_err(|e| SchemaError::Decompress(e.to_string()))?;
            if out.len() > MAX_SCHEMA_BYTES {
                return Err(SchemaError::TooLarge);
            }
            Ok(out)
        }
    }
}

/// Compresses an encoded descriptor set for storage or for a `Hello`.
pub fn compress(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(bytes);
    enc.finish().unwrap_or_default()
}

/// Decompresses what [`compress`] produced.
pub fn decompress(bytes: &[u8]) -> Result<Vec<u8>, SchemaError> {
    hello_schema_bytes(&Hello {
        schema: bytes.to_vec().into(),
        compression: Compression::Zlib as i32,
        ..Default::default()
    })
}

impl Schema {
    /// Reads an encoded `FileDescriptorSet`.
    pub fn from_descriptor_set(bytes: &[u8]) -> Result<Self, SchemaError> {
        refuse_unknown_syntax(bytes)?;
        // Decoding the bytes directly (not through prost_types) keeps the custom
        // options, which prost_types would drop as unknown fields.
        let pool = DescriptorPool::decode(bytes)
            .map_err(|e| SchemaError::InvalidDescriptor(e.to_string()))?;
        refuse_broken_map_entries(&pool)?;
        let ext = pool
            .get_extension_by_name("mir.device.v1.message_type")
            .map(|message_type| Extensions {
                message_type,
                meta: pool.get_extension_by_name("mir.device.v1.meta"),
                timestamp: pool.get_extension_by_name("mir.device.v1.timestamp"),
                field_meta: pool.get_extension_by_name("mir.device.v1.field_meta"),
            });
        Ok(Self {
            pool,
            ext,
            plans: Mutex::new(HashMap::new()),
        })
    }

    /// Package names of every file in the schema, sorted, without duplicates.
    pub fn package_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .pool
            .files()
            .map(|f| f.package_name().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    pub fn kind_of(&self, desc: &MessageDescriptor) -> MessageKind {
        let Some(ext) = &self.ext else {
            return MessageKind::Plain;
        };
        let opts = desc.options();
        if !opts.has_extension(&ext.message_type) {
            return MessageKind::Plain;
        }
        match opts.get_extension(&ext.message_type).as_ref() {
            PValue::EnumNumber(1) => MessageKind::Telemetry,
            PValue::EnumNumber(2) => MessageKind::Command,
            PValue::EnumNumber(3) => MessageKind::Config,
            _ => MessageKind::Plain,
        }
    }

    /// Full names of the messages of one kind, sorted.
    pub fn messages_of(&self, kind: MessageKind) -> Vec<String> {
        let mut names: Vec<String> = self
            .pool
            .all_messages()
            .filter(|m| self.kind_of(m) == kind)
            .map(|m| m.full_name().to_string())
            .collect();
        names.sort();
        names
    }

    /// Any message of the schema.
    pub fn message(&self, name: &str) -> Result<MessageDescriptor, SchemaError> {
        let name = name.trim_start_matches('.');
        self.pool
            .get_message_by_name(name)
            .ok_or_else(|| SchemaError::UnknownMessage {
                name: name.to_string(),
                kind: "",
                known: self
                    .pool
                    .all_messages()
                    .filter(|m| !m.package_name().starts_with("google.protobuf"))
                    .map(|m| m.full_name().to_string())
                    .collect(),
            })
    }

    /// A message that must be of `kind`; the error lists the known ones.
    pub fn message_of_kind(
        &self,
        name: &str,
        kind: MessageKind,
    ) -> Result<MessageDescriptor, SchemaError> {
        let unknown = || SchemaError::UnknownMessage {
            name: name.to_string(),
            kind: kind_label(kind),
            known: self.messages_of(kind),
        };
        let desc = self
            .pool
            .get_message_by_name(name.trim_start_matches('.'))
            .ok_or_else(unknown)?;
        let actual = self.kind_of(&desc);
        if actual != kind {
            return Err(SchemaError::WrongKind {
                name: name.to_string(),
                expected: kind,
                actual,
            });
        }
        Ok(desc)
    }

    /// proto3 JSON -> protobuf bytes. Errors name the offending field.
    pub fn json_to_proto(
        &self,
        desc: &MessageDescriptor,
        json: &Value,
    ) -> Result<Vec<u8>, SchemaError> {
        let invalid = |error: String| SchemaError::InvalidJson {
            message: desc.full_name().to_string(),
            error,
        };
        check_json(desc, json, "").map_err(invalid)?;
        let msg =
            DynamicMessage::deserialize(desc.clone(), json).map_err(|e| invalid(e.to_string()))?;
        Ok(msg.encode_to_vec())
    }

    /// protobuf bytes -> proto3 JSON (default values included, as Mir shows them).
    pub fn proto_to_json(
        &self,
        desc: &MessageDescriptor,
        bytes: &[u8],
    ) -> Result<Value, SchemaError> {
        let msg = DynamicMessage::decode(desc.clone(), bytes).map_err(|e| SchemaError::Decode {
            message: desc.full_name().to_string(),
            error: e.to_string(),
        })?;
        message_to_json(&msg)
    }

    /// A JSON document with every field of `desc` at its default value, like Mir's `-j`.
    pub fn template(&self, desc: &MessageDescriptor) -> Value {
        template_of(desc, 0)
    }

    /// The cached telemetry mapping plan of a telemetry message.
    pub fn telemetry_plan(&self, name: &str) -> Result<Arc<TelemetryPlan>, SchemaError> {
        if let Ok(plans) = self.plans.lock() {
            if let Some(plan) = plans.get(name) {
                return Ok(plan.clone());
            }
        }
        let desc = self.message_of_kind(name, MessageKind::Telemetry)?;
        let plan = Arc::new(TelemetryPlan::new(self, desc));
        if let Ok(mut plans) = self.plans.lock() {
            plans.insert(name.to_string(), plan.clone());
        }
        Ok(plan)
    }

    pub(crate) fn timestamp_annotation(&self, field: &FieldDescriptor) -> Option<i32> {
        let ext = self.ext.as_ref()?.timestamp.as_ref()?;
        let opts = field.options();
        if !opts.has_extension(ext) {
            return None;
        }
        match opts.get_extension(ext).as_ref() {
            PValue::EnumNumber(n) if *n > 0 => Some(*n),
            _ => None,
        }
    }

    pub(crate) fn message_tags(&self, desc: &MessageDescriptor) -> Vec<(String, String)> {
        match self.ext.as_ref().and_then(|e| e.meta.as_ref()) {
            Some(ext) => tags_of(&desc.options(), ext),
            None => Vec::new(),
        }
    }

    pub(crate) fn field_tags(&self, field: &FieldDescriptor) -> Vec<(String, String)> {
        match self.ext.as_ref().and_then(|e| e.field_meta.as_ref()) {
            Some(ext) => tags_of(&field.options(), ext),
            None => Vec::new(),
        }
    }
}

/// The `syntax` of each file of a descriptor set (the other fields are skipped).
#[derive(Clone, PartialEq, prost::Message)]
struct Syntaxes {
    #[prost(message, repeated, tag = "1")]
    file: Vec<Syntax>,
}
#[derive(Clone, PartialEq, prost::Message)]
struct Syntax {
    #[prost(string, optional, tag = "12")]
    syntax: Option<String>,
}

/// Refuses a `syntax` other than proto2 and proto3 (`editions`, `""`): prost-reflect 0.16
/// panics on one (index out of bounds) instead of returning its UnknownSyntax error.
fn refuse_unknown_syntax(bytes: &[u8]) -> Result<(), SchemaError> {
    let files = Syntaxes::decode(bytes).map_or_else(|_| Vec::new(), |s| s.file);
    let mut syntaxes = files.into_iter().filter_map(|f| f.syntax);
    match syntaxes.find(|s| s != "proto2" && s != "proto3") {
        Some(s) => Err(SchemaError::InvalidDescriptor(format!("syntax {s:?}"))),
        None => Ok(()),
    }
}

/// Refuses a map entry message without its key (1) or value (2) field: prost-reflect 0.16
/// accepts one (a damaged descriptor set, found by the million-case property run), then
/// panics wherever the map is used ("map entry should have key field").
fn refuse_broken_map_entries(pool: &DescriptorPool) -> Result<(), SchemaError> {
    match pool
        .all_messages()
        .find(|m| m.is_map_entry() && (m.get_field(1).is_none() || m.get_field(2).is_none()))
    {
        Some(m) => Err(SchemaError::InvalidDescriptor(format!(
            "map entry {} lacks its key or value field",
            m.full_name()
        ))),
        None => Ok(()),
    }
}

fn kind_label(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::Telemetry => "telemetry",
        MessageKind::Command => "command",
        MessageKind::Config => "config",
        MessageKind::Plain => "plain",
    }
}

fn tags_of(opts: &DynamicMessage, ext: &ExtensionDescriptor) -> Vec<(String, String)> {
    if !opts.has_extension(ext) {
        return Vec::new();
    }
    let meta = opts.get_extension(ext);
    let PValue::Message(meta) = meta.as_ref() else {
        return Vec::new();
    };
    let Some(tags) = meta.get_field_by_name("tags") else {
        return Vec::new();
    };
    let PValue::List(tags) = tags.as_ref() else {
        return Vec::new();
    };
    tags.iter()
        .filter_map(|t| match t {
            PValue::Message(t) => {
                let key = t.get_field_by_name("key")?.as_str()?.to_string();
                let value = t.get_field_by_name("value")?.as_str()?.to_string();
                Some((key, value))
            }
            _ => None,
        })
        .collect()
}

/// proto3 JSON of a decoded message, with default values included.
pub fn message_to_json(msg: &DynamicMessage) -> Result<Value, SchemaError> {
    let opts = SerializeOptions::new().skip_default_fields(false);
    msg.serialize_with_options(serde_json::value::Serializer, &opts)
        .map_err(|e| SchemaError::Decode {
            message: msg.descriptor().full_name().to_string(),
            error: e.to_string(),
        })
}

const MAX_TEMPLATE_DEPTH: usize = 8;

fn template_of(desc: &MessageDescriptor, depth: usize) -> Value {
    let mut obj = Map::new();
    if desc.full_name() == "google.protobuf.Timestamp" {
        return Value::String("1970-01-01T00:00:00Z".into());
    }
    for field in desc.fields() {
        let value = if field.is_map() {
            Value::Object(Map::new())
        } else {
            let one = scalar_template(&field, depth);
            if field.is_list() {
                Value::Array(vec![one])
            } else {
                one
            }
        };
        obj.insert(field.json_name().to_string(), value);
    }
    Value::Object(obj)
}

fn scalar_template(field: &FieldDescriptor, depth: usize) -> Value {
    match field.kind() {
        Kind::Bool => Value::Bool(false),
        Kind::String => Value::String(String::new()),
        Kind::Bytes => Value::String(String::new()),
        Kind::Float | Kind::Double => serde_json::json!(0.0),
        Kind::Enum(e) => Value::String(e.default_value().name().to_string()),
        Kind::Message(m) => {
            if depth >= MAX_TEMPLATE_DEPTH {
                Value::Object(Map::new())
            } else {
                template_of(&m, depth + 1)
            }
        }
        _ => serde_json::json!(0),
    }
}

/// Checks a JSON value against a message descriptor, naming the first offending field.
fn check_json(desc: &MessageDescriptor, json: &Value, path: &str) -> Result<(), String> {
    if is_well_known(desc) {
        return Ok(());
    }
    let Value::Object(obj) = json else {
        return Err(format!(
            "{} must be a JSON object, got {}",
            if path.is_empty() { "the payload" } else { path },
            json_type(json)
        ));
    };
    for (key, value) in obj {
        let field = desc
            .get_field_by_json_name(key)
            .or_else(|| desc.get_field_by_name(key))
            .ok_or_else(|| {
                let known: Vec<String> = desc.fields().map(|f| f.json_name().to_string()).collect();
                format!(
                    "unknown field `{}{key}`; {} has: {}",
                    prefix(path),
                    desc.full_name(),
                    known.join(", ")
                )
            })?;
        let here = format!("{}{}", prefix(path), field.json_name());
        if value.is_null() {
            continue;
        }
        if field.is_map() {
            let Value::Object(entries) = value else {
                return Err(format!(
                    "field `{here}` must be an object (a map), got {}",
                    json_type(value)
                ));
            };
            if let Kind::Message(entry) = field.kind() {
                let vfield = entry.map_entry_value_field();
                for (k, v) in entries {
                    check_value(&vfield, v, &format!("{here}[{k}]"))?;
                }
            }
        } else if field.is_list() {
            let Value::Array(items) = value else {
                return Err(format!(
                    "field `{here}` must be a list, got {}",
                    json_type(value)
                ));
            };
            for (i, item) in items.iter().enumerate() {
                check_value(&field, item, &format!("{here}[{i}]"))?;
            }
        } else {
            check_value(&field, value, &here)?;
        }
    }
    Ok(())
}

fn check_value(field: &FieldDescriptor, value: &Value, path: &str) -> Result<(), String> {
    let bad = |expected: &str| {
        Err(format!(
            "field `{path}` must be {expected}, got {} {value}",
            json_type(value)
        ))
    };
    match field.kind() {
        Kind::Message(m) => check_json(&m, value, path),
        Kind::Bool => match value {
            Value::Bool(_) => Ok(()),
            _ => bad("true or false"),
        },
        Kind::String => match value {
            Value::String(_) => Ok(()),
            _ => bad("a string"),
        },
        Kind::Bytes => match value {
            Value::String(_) => Ok(()),
            _ => bad("a base64 string"),
        },
        Kind::Enum(e) => match value {
            Value::String(s) if e.get_value_by_name(s).is_some() => Ok(()),
            Value::Number(n) if n.is_i64() => Ok(()),
            _ => {
                let names: Vec<String> = e.values().map(|v| v.name().to_string()).collect();
                bad(&format!("one of {}", names.join(", ")))
            }
        },
        Kind::Float | Kind::Double => match value {
            Value::Number(_) => Ok(()),
            Value::String(s)
                if s.parse::<f64>().is_ok()
                    || ["NaN", "Infinity", "-Infinity"].contains(&s.as_str()) =>
            {
                Ok(())
            }
            _ => bad("a number"),
        },
        kind => {
            let (min, max): (i128, i128) = match kind {
                Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => (i32::MIN.into(), i32::MAX.into()),
                Kind::Uint32 | Kind::Fixed32 => (0, u32::MAX.into()),
                Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => (i64::MIN.into(), i64::MAX.into()),
                _ => (0, u64::MAX.into()),
            };
            let n: Option<i128> = match value {
                Value::Number(n) => n
                    .as_i64()
                    .map(i128::from)
                    .or_else(|| n.as_u64().map(i128::from))
                    .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i128)),
                Value::String(s) => s.trim().parse::<i128>().ok(),
                _ => None,
            };
            match n {
                Some(n) if n >= min && n <= max => Ok(()),
                Some(_) => bad(&format!("an integer between {min} and {max}")),
                None => bad("an integer"),
            }
        }
    }
}

fn is_well_known(desc: &MessageDescriptor) -> bool {
    desc.package_name() == "google.protobuf"
}

fn prefix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}.")
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests;
