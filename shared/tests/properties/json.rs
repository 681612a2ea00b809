//! Strategies shared by the other modules: arbitrary JSON values (bounded depth and
//! size), JSON objects built around a set of known keys, and JSON-ish text.

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{Map, Number, Value};

/// Any JSON number: integers of both signs beyond 64 bits' halves, and finite floats.
pub fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1000i64..1000).prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
    ]
}

/// A string, often one of `words` (field names, enum names, known values).
pub fn string_from(words: &'static [&'static str]) -> BoxedStrategy<String> {
    if words.is_empty() {
        return any::<String>().boxed();
    }
    prop_oneof![
        2 => proptest::sample::select(words).prop_map(String::from),
        1 => any::<String>(),
        1 => "[a-zA-Z0-9:_./ -]{0,12}",
    ]
    .boxed()
}

/// Any JSON value whose strings and keys are often `words`.
pub fn value_with(words: &'static [&'static str]) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        string_from(words).prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(string_from(words), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
    .boxed()
}

/// Any JSON value.
pub fn value() -> BoxedStrategy<Value> {
    value_with(&[])
}

/// A JSON object whose keys are mostly `keys`, with values of any shape.
pub fn object_with(keys: &'static [&'static str]) -> BoxedStrategy<Value> {
    btree_map(string_from(keys), value_with(keys), 0..10)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
        .boxed()
}

/// Text that is JSON, JSON cut short or with a byte changed, or no JSON at all.
pub fn text_like(value: BoxedStrategy<Value>) -> BoxedStrategy<String> {
    prop_oneof![
        3 => value.clone().prop_map(|v| v.to_string()),
        1 => (value, any::<usize>(), any::<char>(), any::<bool>()).prop_map(|(v, at, c, cut)| {
            let mut s = v.to_string();
            let at = floor_char_boundary(&s, at % (s.len() + 1));
            if cut {
                s.truncate(at);
            } else {
                s.insert(at, c);
            }
            s
        }),
        1 => any::<String>(),
    ]
    .boxed()
}

fn floor_char_boundary(s: &str, mut at: usize) -> usize {
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}
