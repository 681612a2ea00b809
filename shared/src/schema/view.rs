//! A device schema described as JSON (`GET /v1/devices/{deviceId}/schema`): every
//! message with its kind, `mir.device.v1` tags, JSON template and fields, so that a
//! client (the console's schema explorer and generated forms) needs no protobuf
//! library. Nested message types are listed by name beside the messages that use them.

use std::collections::BTreeMap;

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{MessageKind, Schema};

/// Packages whose messages are the annotations and well-known types, not the device's.
const LIBRARY_PACKAGES: [&str; 2] = ["google.protobuf", "mir.device.v1"];

/// The whole schema, messages sorted by full name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaView {
    pub packages: Vec<String>,
    pub messages: Vec<MessageView>,
}

/// One message of the schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageView {
    pub name: String,
    pub kind: MessageKind,
    /// The `mir.device.v1.meta` tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Every field at its default value, like Mir's `-j`.
    pub template: Value,
    pub fields: Vec<FieldView>,
}

/// How many values a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cardinality {
    /// One value; absent means the default.
    Singular,
    /// One value whose presence is tracked (proto3 `optional`, proto2 `optional`).
    Optional,
    Repeated,
    Map,
}

/// The precision of a telemetry message's timestamp field (`mir.device.v1.timestamp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimestampPrecision {
    Sec,
    Micro,
    Milli,
    Nano,
    Fraction,
}

impl TimestampPrecision {
    fn from_annotation(n: i32) -> Option<Self> {
        match n {
            1 => Some(Self::Sec),
            2 => Some(Self::Micro),
            3 => Some(Self::Milli),
            4 => Some(Self::Nano),
            5 => Some(Self::Fraction),
            _ => None,
        }
    }
}

/// The type of a value: a scalar's protobuf name, `enum` or `message`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValueType {
    #[serde(rename = "type")]
    pub kind: String,
    /// The enum's values, by number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enum_values: Option<Vec<EnumValue>>,
    /// The message type's full name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnumValue {
    pub name: String,
    pub number: i32,
}

/// One field of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldView {
    pub name: String,
    pub json_name: String,
    pub number: u32,
    /// The element's type for a repeated field; for a map, `message` (the entry): see
    /// `map_key` and `map_value`.
    #[serde(flatten)]
    pub value: ValueType,
    pub cardinality: Cardinality,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_value: Option<ValueType>,
    /// The oneof it belongs to (not proto3's synthetic one for `optional`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oneof: Option<String>,
    /// The `mir.device.v1.field_meta` tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Set on the field that carries a telemetry message's time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<TimestampPrecision>,
}

impl Schema {
    /// The schema as JSON-friendly views, without the library packages' messages.
    pub fn view(&self) -> SchemaView {
        let mut messages: Vec<MessageView> = self
            .pool
            .all_messages()
            .filter(|m| !m.is_map_entry())
            .filter(|m| !LIBRARY_PACKAGES.contains(&m.package_name()))
            .map(|m| self.message_view(&m))
            .collect();
        messages.sort_by(|a, b| a.name.cmp(&b.name));
        SchemaView {
            packages: self.package_names(),
            messages,
        }
    }

    fn message_view(&self, desc: &MessageDescriptor) -> MessageView {
        MessageView {
            name: desc.full_name().to_string(),
            kind: self.kind_of(desc),
            tags: self.message_tags(desc).into_iter().collect(),
            template: self.template(desc),
            fields: desc.fields().map(|f| self.field_view(&f)).collect(),
        }
    }

    fn field_view(&self, field: &FieldDescriptor) -> FieldView {
        let entry = match field.kind() {
            Kind::Message(m) if field.is_map() => Some(m),
            _ => None,
        };
        let cardinality = if entry.is_some() {
            Cardinality::Map
        } else if field.is_list() {
            Cardinality::Repeated
        } else if field.supports_presence() && !matches!(field.kind(), Kind::Message(_)) {
            Cardinality::Optional
        } else {
            Cardinality::Singular
        };
        FieldView {
            name: field.name().to_string(),
            json_name: field.json_name().to_string(),
            number: field.number(),
            value: value_type(&field.kind()),
            cardinality,
            map_key: entry
                .as_ref()
                .map(|e| value_type(&e.map_entry_key_field().kind()).kind),
            map_value: entry
                .as_ref()
                .map(|e| value_type(&e.map_entry_value_field().kind())),
            oneof: field
                .containing_oneof()
                .filter(|o| !o.is_synthetic())
                .map(|o| o.name().to_string()),
            tags: self.field_tags(field).into_iter().collect(),
            timestamp: self
                .timestamp_annotation(field)
                .and_then(TimestampPrecision::from_annotation),
        }
    }
}

fn value_type(kind: &Kind) -> ValueType {
    let scalar = |name: &str| ValueType {
        kind: name.to_string(),
        enum_values: None,
        message_type: None,
    };
    match kind {
        Kind::Double => scalar("double"),
        Kind::Float => scalar("float"),
        Kind::Int32 => scalar("int32"),
        Kind::Int64 => scalar("int64"),
        Kind::Uint32 => scalar("uint32"),
        Kind::Uint64 => scalar("uint64"),
        Kind::Sint32 => scalar("sint32"),
        Kind::Sint64 => scalar("sint64"),
        Kind::Fixed32 => scalar("fixed32"),
        Kind::Fixed64 => scalar("fixed64"),
        Kind::Sfixed32 => scalar("sfixed32"),
        Kind::Sfixed64 => scalar("sfixed64"),
        Kind::Bool => scalar("bool"),
        Kind::String => scalar("string"),
        Kind::Bytes => scalar("bytes"),
        Kind::Enum(e) => ValueType {
            kind: "enum".into(),
            enum_values: Some(
                e.values()
                    .map(|v| EnumValue {
                        name: v.name().to_string(),
                        number: v.number(),
                    })
                    .collect(),
            ),
            message_type: None,
        },
        Kind::Message(m) => ValueType {
            kind: "message".into(),
            enum_values: None,
            message_type: Some(m.full_name().to_string()),
        },
    }
}
