//! Property tests of the CLI's own twin reading ("fuzzing on stable Rust", issue 15):
//! `parse_twins` (`mir device apply -f`, multi-document YAML), `parse_twin`
//! (`mir device create -f`) and the file `mir device edit` writes and reads back. Any
//! text is twins or an error naming the document, never a panic; twins joined as YAML
//! documents (with empty ones between) read back equal and in order; an edit file left
//! as written reads back as the twin and changes nothing.
//!
//! CI runs 1,000 cases per property; `PROPTEST_CASES` sets more
//! (docs/architecture.md, Property tests).

use chrono::{TimeZone, Utc};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::Value;

use mir_shared::domain::Twin;

use super::{parse_twin, parse_twins, EDIT_HEADER};
use crate::patch;

fn config() -> proptest::test_runner::Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    proptest::test_runner::Config {
        cases,
        ..Default::default()
    }
}

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
    "deviceId",
    "disabled",
    "desired",
    "reported",
    "online",
    "lastHeartbeat",
    "mir/v1alpha",
    "device",
    "default",
    "---",
    "...",
    "- ",
    ": ",
    "\n",
    "  ",
    "#",
    "~",
    "&a ",
    "*a",
    "!!str ",
    "{",
    "}",
    "[",
    "]",
    "'",
    "\"",
    "null",
    "true",
    "1e400",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(WORDS).prop_map(String::from),
        1 => "[a-zA-Z0-9:_.-]{1,10}",
        1 => any::<String>(),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        word().prop_map(Value::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map(word(), inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A twin with a device id (what `parse_twins` requires) and any other content.
fn twin() -> impl Strategy<Value = Twin> {
    (
        (
            word(),
            word(),
            btree_map(word(), word(), 0..3),
            btree_map(word(), word(), 0..2),
        ),
        ("[a-zA-Z0-9:_-]{1,20}", any::<bool>()),
        (
            btree_map(word(), value(), 0..3),
            btree_map(word(), value(), 0..2),
        ),
        (
            any::<bool>(),
            proptest::option::of(0i64..4_102_444_800),
            proptest::option::of(any::<u32>()),
        ),
    )
        .prop_map(|(meta, spec, properties, status)| {
            let mut t = Twin::default();
            (
                t.meta.name,
                t.meta.namespace,
                t.meta.labels,
                t.meta.annotations,
            ) = meta;
            (t.spec.device_id, t.spec.disabled) = spec;
            (t.properties.desired, t.properties.reported) = properties;
            t.status.online = status.0;
            t.status.last_heartbeat = status.1.and_then(|s| Utc.timestamp_opt(s, 0).single());
            t.status.heartbeat_interval_sec = status.2;
            t
        })
}

fn yaml(twin: &Twin) -> String {
    serde_yaml::to_string(twin).unwrap_or_default()
}

/// YAML text: documents of twins, damaged or not, YAML syntax, or anything.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => vec(twin(), 0..3).prop_map(|t| t.iter().map(yaml).collect::<Vec<_>>().join("---\n")),
        2 => vec(word(), 0..30).prop_map(|w| w.concat()),
        1 => (twin(), any::<usize>(), word()).prop_map(|(t, at, w)| {
            let mut s = yaml(&t);
            let mut at = at % (s.len() + 1);
            while !s.is_char_boundary(at) {
                at -= 1;
            }
            s.insert_str(at, &w);
            s
        }),
        1 => any::<String>(),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_text_is_twins_or_an_error_naming_the_document(text in text()) {
        match parse_twins(&text) {
            Ok(twins) => {
                for t in &twins {
                    prop_assert!(!t.spec.device_id.trim().is_empty());
                }
            }
            Err(e) => prop_assert!(e.to_string().starts_with("document "), "{e:#}"),
        }
        if let Err(e) = parse_twin(&text, "stdin") {
            prop_assert!(e.to_string().starts_with("stdin is not a valid twin"), "{e:#}");
        }
    }

    #[test]
    fn twins_joined_as_yaml_documents_read_back_equal_and_in_order(
        twins in vec(twin(), 1..4),
        empty in vec(0usize..3, 1..4),
    ) {
        let mut docs = Vec::new();
        for (i, t) in twins.iter().enumerate() {
            docs.extend(std::iter::repeat_n(String::new(), empty[i % empty.len()]));
            docs.push(yaml(t));
        }
        let text = docs.join("---\n");
        let back = parse_twins(&text).map_err(|e| format!("{e:#}"));
        prop_assert_eq!(back, Ok(twins), "{}", text);
    }

    #[test]
    fn an_edit_file_left_as_written_reads_back_as_the_twin_and_changes_nothing(twin in twin()) {
        let file = format!("{EDIT_HEADER}{}", yaml(&twin));
        let edited = serde_yaml::from_str::<Twin>(&file);
        prop_assert_eq!(edited.as_ref().ok(), Some(&twin));
        if let Ok(edited) = edited {
            prop_assert!(patch::read_only_changes(&twin, &edited).is_empty());
            prop_assert!(!patch::editable_changed(&twin, &edited));
        }
    }
}
