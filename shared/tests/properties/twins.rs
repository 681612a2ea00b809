//! Twin documents (`mir_shared::domain::Twin`, docs/architecture.md, Twin format): any
//! YAML or JSON text is a twin or a serde error, never a panic, and a parsed twin
//! normalizes or names what is wrong; any twin serializes to YAML and to JSON and reads
//! back equal; an unknown field at any level is refused by name
//! (`deny_unknown_fields`).

use chrono::{DateTime, TimeZone, Utc};
use proptest::collection::{btree_map, vec};
use proptest::option::of;
use proptest::prelude::*;
use serde_json::Value;

use mir_shared::domain::presence::SessionStatus;
use mir_shared::domain::twin::{Meta, Properties, PropertyTimes, SchemaStatus, Spec, Status};
use mir_shared::domain::{DomainError, Twin};

use crate::{config, json, CI_CASES};

/// Field names of the twin and its parts, and values a twin holds.
const WORDS: &[&str] = &[
    "apiVersion",
    "kind",
    "meta",
    "spec",
    "properties",
    "status",
    "name",
    "namespace",
    "labels",
    "annotations",
    "deviceId",
    "disabled",
    "desired",
    "reported",
    "online",
    "lastHeartbeat",
    "session",
    "heartbeatIntervalSec",
    "staleAt",
    "schema",
    "packageNames",
    "lastSchemaFetch",
    "id",
    "version",
    "connectedAt",
    "disconnectedAt",
    "disconnectReason",
    "mir/v1alpha",
    "device",
    "default",
    "weather",
    "2024-11-21T10:30:45Z",
    "schema.v1.DataRateProp",
];

/// YAML's own syntax, to mix into generated documents.
const YAML_BITS: &[&str] = &[
    "---\n",
    "...\n",
    "- ",
    ": ",
    "? ",
    "&a ",
    "*a",
    "!!str ",
    "!!binary ",
    "!!int ",
    "!!map ",
    "!!seq ",
    "!custom ",
    "<<: *a\n",
    "{",
    "}",
    "[",
    "]",
    ",",
    "|\n  ",
    ">-\n  ",
    "\"",
    "'",
    "#",
    "%YAML 1.2\n",
    "%TAG ! tag:x,2024:\n",
    "\t",
    "\n",
    "  ",
    "~",
    "null",
    ".nan",
    ".inf",
    "-.inf",
    "0x1F",
    "0o17",
    "1e400",
    "2024-11-21T10:30:45Z",
    "\u{feff}",
];

fn time() -> impl Strategy<Value = DateTime<Utc>> {
    // chrono's whole range, nanosecond precision (no leap seconds).
    (
        -8_334_601_228_800i64..8_210_266_876_800,
        0u32..1_000_000_000,
        any::<bool>(),
    )
        .prop_map(|(secs, nanos, whole)| {
            let nanos = if whole { 0 } else { nanos };
            Utc.timestamp_opt(secs, nanos).single().unwrap_or_default()
        })
}

fn text() -> impl Strategy<Value = String> {
    json::string_from(WORDS)
}

fn meta() -> impl Strategy<Value = Meta> {
    (
        text(),
        text(),
        btree_map(text(), text(), 0..4),
        btree_map(text(), text(), 0..3),
    )
        .prop_map(|(name, namespace, labels, annotations)| Meta {
            name,
            namespace,
            labels,
            annotations,
        })
}

fn property_values() -> impl Strategy<Value = std::collections::BTreeMap<String, Value>> {
    btree_map(text(), json::value_with(WORDS), 0..3)
}

fn times() -> impl Strategy<Value = std::collections::BTreeMap<String, DateTime<Utc>>> {
    btree_map(text(), time(), 0..3)
}

fn session() -> impl Strategy<Value = SessionStatus> {
    (text(), any::<u64>(), of(time()), of(time()), of(text())).prop_map(
        |(id, version, connected_at, disconnected_at, disconnect_reason)| SessionStatus {
            id,
            version,
            connected_at,
            disconnected_at,
            disconnect_reason,
        },
    )
}

fn status() -> impl Strategy<Value = Status> {
    (
        any::<bool>(),
        of(time()),
        of(session()),
        of(any::<u32>()),
        of(time()),
        (vec(text(), 0..3), of(time())),
        (times(), times()),
    )
        .prop_map(
            |(online, last_heartbeat, session, heartbeat_interval_sec, stale_at, schema, times)| {
                Status {
                    online,
                    last_heartbeat,
                    session,
                    heartbeat_interval_sec,
                    stale_at,
                    schema: SchemaStatus {
                        package_names: schema.0,
                        last_schema_fetch: schema.1,
                    },
                    properties: PropertyTimes {
                        desired: times.0,
                        reported: times.1,
                    },
                }
            },
        )
}

fn twin() -> impl Strategy<Value = Twin> {
    (
        text(),
        text(),
        meta(),
        (text(), any::<bool>()),
        (property_values(), property_values()),
        status(),
    )
        .prop_map(|(api_version, kind, meta, spec, properties, status)| Twin {
            api_version,
            kind,
            meta,
            spec: Spec {
                device_id: spec.0,
                disabled: spec.1,
            },
            properties: Properties {
                desired: properties.0,
                reported: properties.1,
            },
            status,
        })
}

/// YAML text: real twins and JSON values as YAML, damaged, mixed with YAML's syntax,
/// deeply nested, or anything.
fn yaml_text() -> impl Strategy<Value = String> {
    let as_yaml = |v: Value| serde_yaml::to_string(&v).unwrap_or_default();
    prop_oneof![
        2 => twin().prop_map(|t| serde_yaml::to_string(&t).unwrap_or_default()),
        2 => json::object_with(WORDS).prop_map(as_yaml),
        2 => vec(json::string_from(YAML_BITS).prop_union(json::string_from(WORDS)), 0..24)
            .prop_map(|bits| bits.concat()),
        1 => (twin(), any::<usize>(), json::string_from(YAML_BITS)).prop_map(|(t, at, bit)| {
            let mut s = serde_yaml::to_string(&t).unwrap_or_default();
            let mut at = at % (s.len() + 1);
            while !s.is_char_boundary(at) {
                at -= 1;
            }
            s.insert_str(at, &bit);
            s
        }),
        1 => (1usize..300, json::string_from(&["[", "{", "- ", "a: ", "&a [", "!!seq ["]))
            .prop_map(|(depth, open)| open.repeat(depth)),
        1 => any::<String>(),
    ]
}

fn parsed_twin_normalizes_or_names_the_problem(twin: Twin) -> Result<(), TestCaseError> {
    match twin.normalized() {
        Ok(t) => {
            prop_assert!(mir_proto::DeviceId::check(&t.spec.device_id).is_ok());
            prop_assert!(!t.meta.name.is_empty() && !t.meta.namespace.is_empty());
            prop_assert_eq!(t.kind.as_str(), "device");
            let _ = t.display_name();
        }
        Err(DomainError::Invalid(message)) => prop_assert!(!message.is_empty()),
    }
    Ok(())
}

/// Parts of the twin that refuse unknown fields, as paths of keys from the root.
const STRICT_PARTS: &[&[&str]] = &[
    &[],
    &["meta"],
    &["spec"],
    &["properties"],
    &["status"],
    &["status", "schema"],
    &["status", "properties"],
    &["status", "session"],
];

proptest! {
    #![proptest_config(config(CI_CASES))]

    #[test]
    fn any_yaml_text_is_a_twin_or_a_serde_error(text in yaml_text()) {
        if let Ok(twin) = serde_yaml::from_str::<Twin>(&text) {
            parsed_twin_normalizes_or_names_the_problem(twin)?;
        }
    }

    #[test]
    fn any_json_text_is_a_twin_or_a_serde_error(text in json::text_like(json::object_with(WORDS))) {
        if let Ok(twin) = serde_json::from_str::<Twin>(&text) {
            parsed_twin_normalizes_or_names_the_problem(twin)?;
        }
    }

    #[test]
    fn any_twin_reads_back_equal_from_yaml(twin in twin()) {
        let yaml = serde_yaml::to_string(&twin);
        prop_assert!(yaml.is_ok(), "{yaml:?}");
        let yaml = yaml.unwrap_or_default();
        let back = serde_yaml::from_str::<Twin>(&yaml);
        prop_assert_eq!(back.as_ref().ok(), Some(&twin), "{}\n{:?}", yaml, back);
    }

    #[test]
    fn any_twin_reads_back_equal_from_json(twin in twin()) {
        let text = serde_json::to_string(&twin);
        prop_assert!(text.is_ok(), "{text:?}");
        let text = text.unwrap_or_default();
        let back = serde_json::from_str::<Twin>(&text);
        prop_assert_eq!(back.as_ref().ok(), Some(&twin), "{}\n{:?}", text, back);
    }

    #[test]
    fn an_unknown_field_at_any_level_is_refused_by_name(
        twin in twin(),
        part in proptest::sample::select(STRICT_PARTS),
        key in "[a-zA-Z][a-zA-Z0-9_]{0,12}",
        value in json::value(),
    ) {
        let mut doc = serde_json::to_value(&twin).unwrap_or_default();
        let mut at = &mut doc;
        for k in part.iter() {
            if at.get(*k).is_none_or(Value::is_null) {
                at[*k] = Value::Object(Default::default());
            }
            at = &mut at[*k];
        }
        let Value::Object(fields) = at else { return Err(TestCaseError::fail("not an object")) };
        prop_assume!(!fields.contains_key(&key) && !known_field(part, &key));
        fields.insert(key.clone(), value);
        let yaml = serde_yaml::to_string(&doc).unwrap_or_default();
        let from_yaml = serde_yaml::from_str::<Twin>(&yaml);
        prop_assert!(matches!(&from_yaml, Err(e) if e.to_string().contains(&key)), "{yaml}: {from_yaml:?}");
        let from_json = serde_json::from_value::<Twin>(doc);
        prop_assert!(matches!(&from_json, Err(e) if e.to_string().contains(&key)), "{from_json:?}");
    }
}

/// Whether `key` is a field of the part at `path` (absent fields are allowed).
fn known_field(path: &[&str], key: &str) -> bool {
    let fields: &[&str] = match path {
        [] => &["apiVersion", "kind", "meta", "spec", "properties", "status"],
        ["meta"] => &["name", "namespace", "labels", "annotations"],
        ["spec"] => &["deviceId", "disabled"],
        ["properties"] | ["status", "properties"] => &["desired", "reported"],
        ["status"] => &[
            "online",
            "lastHeartbeat",
            "session",
            "heartbeatIntervalSec",
            "staleAt",
            "schema",
            "properties",
        ],
        ["status", "schema"] => &["packageNames", "lastSchemaFetch"],
        _ => &[
            "id",
            "version",
            "connectedAt",
            "disconnectedAt",
            "disconnectReason",
        ],
    };
    fields.contains(&key)
}
