//! The schema registry from a device's descriptor set (`Schema::from_descriptor_set`,
//! `hello_schema_bytes`, `compress`/`decompress`): any bytes give a schema or
//! `SchemaError::InvalidDescriptor`, never a panic, and every read of a schema that
//! loads answers a value or a typed error.
//!
//! Inputs: random bytes; the real descriptor sets damaged; and generated descriptor
//! sets (messages, fields of every type and label, nested map entries, oneofs, enums,
//! names and numbers valid or not, and Mir's options with any value) beside mir.proto.

use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;
use proptest::sample::select;
use prost::Message;

use mir_proto::wire::{Compression, Hello};
use mir_shared::schema::{self, Schema, SchemaError, MAX_SCHEMA_BYTES};

use crate::fixtures::{descriptor_sets, exercise, protobuf_bytes};
use crate::{config, CI_CASES};

/// Loads `bytes`: a schema whose every read answers, or an invalid-descriptor error.
fn loads_or_is_refused(bytes: &[u8], payload: &[u8]) -> Result<(), TestCaseError> {
    match Schema::from_descriptor_set(bytes) {
        Ok(schema) => exercise(&schema, payload)?,
        Err(e) => prop_assert!(matches!(e, SchemaError::InvalidDescriptor(_)), "{e:?}"),
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, u8),
    Remove(usize),
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, x)| Mutation::Flip(at, x)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Mutation::Insert(at, b)),
        any::<usize>().prop_map(Mutation::Remove),
    ];
    vec(one, 1..4)
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len();
        match *m {
            Mutation::Flip(at, x) if len > 0 => bytes[at % len] ^= x,
            Mutation::Truncate(at) if len > 0 => bytes.truncate(at % len),
            Mutation::Insert(at, b) => bytes.insert(at % (len + 1), b),
            Mutation::Remove(at) if len > 0 => {
                bytes.remove(at % len);
            }
            _ => {}
        }
    }
    bytes
}

// Descriptor messages of our own, so that Mir's options (extensions of
// google.protobuf.MessageOptions and FieldOptions) can carry any value; prost_types'
// option messages have no room for extensions.

#[derive(Clone, PartialEq, Message)]
struct Tag {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(string, tag = "2")]
    value: String,
}

#[derive(Clone, PartialEq, Message)]
struct Meta {
    #[prost(message, repeated, tag = "1")]
    tags: Vec<Tag>,
}

#[derive(Clone, PartialEq, Message)]
struct MessageOptions {
    #[prost(bool, optional, tag = "7")]
    map_entry: Option<bool>,
    #[prost(int32, optional, tag = "50001")]
    message_type: Option<i32>,
    #[prost(message, optional, tag = "50002")]
    meta: Option<Meta>,
}

#[derive(Clone, PartialEq, Message)]
struct FieldOptions {
    #[prost(bool, optional, tag = "2")]
    packed: Option<bool>,
    #[prost(int32, optional, tag = "50101")]
    timestamp: Option<i32>,
    #[prost(message, optional, tag = "50102")]
    field_meta: Option<Meta>,
}

#[derive(Clone, PartialEq, Message)]
struct Field {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(int32, optional, tag = "3")]
    number: Option<i32>,
    #[prost(int32, optional, tag = "4")]
    label: Option<i32>,
    #[prost(int32, optional, tag = "5")]
    r#type: Option<i32>,
    #[prost(string, optional, tag = "6")]
    type_name: Option<String>,
    #[prost(string, optional, tag = "2")]
    extendee: Option<String>,
    #[prost(string, optional, tag = "7")]
    default_value: Option<String>,
    #[prost(int32, optional, tag = "9")]
    oneof_index: Option<i32>,
    #[prost(string, optional, tag = "10")]
    json_name: Option<String>,
    #[prost(message, optional, tag = "8")]
    options: Option<FieldOptions>,
    #[prost(bool, optional, tag = "17")]
    proto3_optional: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
struct Descriptor {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(message, repeated, tag = "2")]
    field: Vec<Field>,
    #[prost(message, repeated, tag = "6")]
    extension: Vec<Field>,
    #[prost(message, repeated, tag = "3")]
    nested_type: Vec<Descriptor>,
    #[prost(message, repeated, tag = "4")]
    enum_type: Vec<prost_types::EnumDescriptorProto>,
    #[prost(message, repeated, tag = "8")]
    oneof_decl: Vec<prost_types::OneofDescriptorProto>,
    #[prost(message, optional, tag = "7")]
    options: Option<MessageOptions>,
    #[prost(message, repeated, tag = "9")]
    reserved_range: Vec<prost_types::descriptor_proto::ReservedRange>,
}

#[derive(Clone, PartialEq, Message)]
struct File {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(string, optional, tag = "2")]
    package: Option<String>,
    #[prost(string, repeated, tag = "3")]
    dependency: Vec<String>,
    #[prost(message, repeated, tag = "4")]
    message_type: Vec<Descriptor>,
    #[prost(message, repeated, tag = "5")]
    enum_type: Vec<prost_types::EnumDescriptorProto>,
    #[prost(message, repeated, tag = "7")]
    extension: Vec<Field>,
    #[prost(string, optional, tag = "12")]
    syntax: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct FileSet {
    #[prost(message, repeated, tag = "1")]
    file: Vec<File>,
}

fn name() -> impl Strategy<Value = Option<String>> {
    of(select(vec![
        "A", "B", "Entry", "a", "b", "key", "value", "a_b", "1x", "", "A.B",
    ])
    .prop_map(String::from))
}

fn type_name() -> impl Strategy<Value = Option<String>> {
    of(select(vec![
        ".g.A",
        ".g.B",
        ".g.A.Entry",
        ".g.A.B",
        ".g.E",
        ".g.A.E",
        "A",
        "E",
        ".mir.device.v1.Timestamp",
        ".mir.device.v1.MessageType",
        ".google.protobuf.MessageOptions",
        ".x.Missing",
        "",
    ])
    .prop_map(String::from))
}

fn meta() -> impl Strategy<Value = Option<Meta>> {
    of(vec(
        ("[a-z]{0,3}", "[a-z]{0,3}").prop_map(|(key, value)| Tag { key, value }),
        0..3,
    )
    .prop_map(|tags| Meta { tags }))
}

fn field() -> impl Strategy<Value = Field> {
    let options = of((of(any::<bool>()), of(-1i32..7), meta()).prop_map(
        |(packed, timestamp, field_meta)| FieldOptions {
            packed,
            timestamp,
            field_meta,
        },
    ));
    (
        name(),
        of(select(vec![
            0,
            1,
            2,
            3,
            4,
            5,
            19_000,
            536_870_911,
            536_870_912,
            -1,
        ])),
        of(select(vec![0, 1, 2, 3, 7])),
        of(0i32..20),
        type_name(),
        of(select(vec!["1", "x", "", "-inf", "true"]).prop_map(String::from)),
        of(select(vec![0, 1, 3, -1])),
        of(select(vec!["a", "x", "", "key"]).prop_map(String::from)),
        options,
        of(any::<bool>()),
    )
        .prop_map(
            |(
                name,
                number,
                label,
                r#type,
                type_name,
                default_value,
                oneof_index,
                json_name,
                options,
                proto3_optional,
            )| Field {
                name,
                number,
                label,
                r#type,
                type_name,
                extendee: None,
                default_value,
                oneof_index,
                json_name,
                options,
                proto3_optional,
            },
        )
}

fn enums() -> impl Strategy<Value = Vec<prost_types::EnumDescriptorProto>> {
    let value =
        (name(), of(-2i32..3)).prop_map(|(name, number)| prost_types::EnumValueDescriptorProto {
            name: name.map(|n| format!("E_{n}")),
            number,
            options: None,
        });
    vec(
        (
            of(select(vec!["E", "F", "A"]).prop_map(String::from)),
            vec(value, 0..3),
        )
            .prop_map(|(name, value)| prost_types::EnumDescriptorProto {
                name,
                value,
                ..Default::default()
            }),
        0..2,
    )
}

fn message_options() -> impl Strategy<Value = Option<MessageOptions>> {
    of(
        (of(any::<bool>()), of(-1i32..5), meta()).prop_map(|(map_entry, message_type, meta)| {
            MessageOptions {
                map_entry,
                message_type,
                meta,
            }
        }),
    )
}

fn oneofs() -> impl Strategy<Value = Vec<prost_types::OneofDescriptorProto>> {
    vec(
        of(select(vec!["o", "p", ""]).prop_map(String::from)).prop_map(|name| {
            prost_types::OneofDescriptorProto {
                name,
                options: None,
            }
        }),
        0..2,
    )
}

fn descriptor() -> impl Strategy<Value = Descriptor> {
    let nested = (
        name(),
        vec(field(), 0..3),
        message_options(),
        enums(),
        oneofs(),
    )
        .prop_map(|(name, field, options, enum_type, oneof_decl)| Descriptor {
            name,
            field,
            extension: Vec::new(),
            nested_type: Vec::new(),
            enum_type,
            oneof_decl,
            options,
            reserved_range: Vec::new(),
        });
    (
        name(),
        vec(field(), 0..6),
        vec(nested, 0..2),
        enums(),
        oneofs(),
        message_options(),
        of((0i32..6, 0i32..8)),
    )
        .prop_map(
            |(name, field, nested_type, enum_type, oneof_decl, options, reserved)| Descriptor {
                name,
                field,
                extension: Vec::new(),
                nested_type,
                enum_type,
                oneof_decl,
                options,
                reserved_range: reserved
                    .map(
                        |(start, end)| prost_types::descriptor_proto::ReservedRange {
                            start: Some(start),
                            end: Some(end),
                        },
                    )
                    .into_iter()
                    .collect(),
            },
        )
}

/// A file of package `g` (mostly) beside the Mir protos, which it may import.
fn file_set() -> impl Strategy<Value = Vec<u8>> {
    let file = (
        select(vec!["g.proto", "h.proto", "mir/device/v1/mir.proto", ""]),
        of(select(vec!["g", "g.h", "", "mir.device.v1"]).prop_map(String::from)),
        vec(
            select(vec![
                "mir/device/v1/mir.proto",
                "google/protobuf/descriptor.proto",
                "missing.proto",
                "g.proto",
            ])
            .prop_map(String::from),
            0..3,
        ),
        vec(descriptor(), 0..4),
        enums(),
        vec(field(), 0..2),
        of(select(vec!["proto3", "proto2", "editions", ""]).prop_map(String::from)),
    )
        .prop_map(
            |(name, package, dependency, message_type, enum_type, extension, syntax)| File {
                name: Some(name.to_string()),
                package,
                dependency,
                message_type,
                enum_type,
                extension,
                syntax,
            },
        );
    (vec(file, 1..3), any::<bool>()).prop_map(|(file, with_mir)| {
        let generated = FileSet { file }.encode_to_vec();
        if with_mir {
            // Encoded sets concatenate: the result holds the files of both.
            [mir_proto::MIR_DESCRIPTOR_SET, &generated].concat()
        } else {
            generated
        }
    })
}

/// Found by `generated_descriptor_sets_are_a_schema_or_an_invalid_descriptor`:
/// prost-reflect 0.16 panicked (index out of bounds) on a file of unknown syntax.
#[test]
fn a_file_of_unknown_syntax_is_an_invalid_descriptor_not_a_panic() {
    for syntax in ["editions", "", "proto4"] {
        let file = prost_types::FileDescriptorProto {
            name: Some("g.proto".into()),
            syntax: Some(syntax.into()),
            ..Default::default()
        };
        let set = prost_types::FileDescriptorSet { file: vec![file] }.encode_to_vec();
        let shrunk: &[u8] = b"\n\x13\n\x07g.protob\x08editions";
        for bytes in [set.as_slice(), shrunk] {
            let err = Schema::from_descriptor_set(bytes)
                .map(|_| ())
                .expect_err(syntax);
            assert!(matches!(err, SchemaError::InvalidDescriptor(_)), "{err:?}");
        }
    }
    let mut files = prost_types::FileDescriptorSet::decode(mir_proto::MIR_DESCRIPTOR_SET)
        .expect("the Mir descriptor set");
    files.file.push(prost_types::FileDescriptorProto {
        name: Some("late.proto".into()),
        syntax: Some("editions".into()),
        ..Default::default()
    });
    let err = Schema::from_descriptor_set(&files.encode_to_vec()).map(|_| ());
    assert_eq!(
        err,
        Err(SchemaError::InvalidDescriptor("syntax \"editions\"".into()))
    );
}

proptest! {
    #![proptest_config(config(CI_CASES))]

    #[test]
    fn arbitrary_bytes_are_a_schema_or_an_invalid_descriptor(
        bytes in vec(any::<u8>(), 0..512),
        payload in vec(any::<u8>(), 0..32),
    ) {
        loads_or_is_refused(&bytes, &payload)?;
    }

    #[test]
    fn protobuf_shaped_bytes_are_a_schema_or_an_invalid_descriptor(
        bytes in protobuf_bytes(),
        payload in protobuf_bytes(),
    ) {
        loads_or_is_refused(&bytes, &payload)?;
    }

    #[test]
    fn generated_descriptor_sets_are_a_schema_or_an_invalid_descriptor(
        bytes in file_set(),
        payload in protobuf_bytes(),
    ) {
        loads_or_is_refused(&bytes, &payload)?;
    }

    #[test]
    fn any_hello_schema_decompresses_or_gives_a_typed_error(
        schema in vec(any::<u8>(), 0..256),
        compression in prop_oneof![Just(Compression::Zlib as i32), any::<i32>()],
    ) {
        let hello = Hello { schema: schema.clone().into(), compression, ..Default::default() };
        match schema::hello_schema_bytes(&hello) {
            Ok(bytes) if compression == Compression::Zlib as i32 => {
                prop_assert!(bytes.len() <= MAX_SCHEMA_BYTES);
            }
            // Anything but zlib is read as uncompressed.
            Ok(bytes) => prop_assert_eq!(bytes, schema),
            Err(e) => prop_assert!(
                matches!(e, SchemaError::Decompress(_) | SchemaError::TooLarge),
                "{e:?}"
            ),
        }
    }

    #[test]
    fn compressed_bytes_decompress_to_themselves(bytes in vec(any::<u8>(), 0..2048)) {
        prop_assert_eq!(schema::decompress(&schema::compress(&bytes)), Ok(bytes));
    }
}

proptest! {
    #![proptest_config(config(CI_CASES))]

    #[test]
    fn damaged_real_descriptor_sets_are_a_schema_or_an_invalid_descriptor(
        set in descriptor_sets(),
        mutations in mutations(),
        payload in protobuf_bytes(),
    ) {
        loads_or_is_refused(&mutate(set, &mutations), &payload)?;
    }

    #[test]
    fn a_damaged_compressed_schema_decompresses_or_gives_a_typed_error(
        set in descriptor_sets(),
        mutations in mutations(),
    ) {
        let damaged = mutate(schema::compress(&set), &mutations);
        match schema::decompress(&damaged) {
            Ok(bytes) => prop_assert!(bytes.len() <= MAX_SCHEMA_BYTES),
            Err(e) => prop_assert!(matches!(e, SchemaError::Decompress(_)), "{e:?}"),
        }
    }
}
