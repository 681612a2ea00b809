//! The protobuf schema of a device group: `.proto` text importing
//! `mir/device/v1/mir.proto`, compiled with protox.
//!
//! Telemetry messages get a first field `ts` (nanoseconds, `TIMESTAMP_TYPE_NANO`);
//! message tags become `mir.device.v1.meta` and field tags `mir.device.v1.field_meta`.
//! Nested `message` fields are declared inside the message that uses them. Writing a
//! message also gives its field generators ([`FieldSpec`]s), resolved once compiled.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use anyhow::{anyhow, bail};
use bytes::Bytes;
use prost_reflect::DescriptorPool;

use super::values::{FieldSpec, Scalar, ScalarGen};
use super::TIMESTAMP_FIELD;
use crate::swarm::expr::Expr;
use crate::swarm::spec::{FieldDef, MessageDef};

/// What a message of a device group is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MessageKind {
    Telemetry,
    Command,
    Property,
}

impl MessageKind {
    /// The word for it in error messages.
    pub(super) fn what(self) -> &'static str {
        match self {
            MessageKind::Telemetry => "telemetry",
            MessageKind::Command => "command",
            MessageKind::Property => "property",
        }
    }

    fn message_type(self) -> &'static str {
        match self {
            MessageKind::Telemetry => "MESSAGE_TYPE_TELEMETRY",
            MessageKind::Command => "MESSAGE_TYPE_TELECOMMAND",
            MessageKind::Property => "MESSAGE_TYPE_TELECONFIG",
        }
    }
}

/// The shared field definitions (`swarm.fields`), by name.
pub(super) struct Fields<'a> {
    fields: HashMap<&'a str, &'a FieldDef>,
}

impl<'a> Fields<'a> {
    /// Checks the names: protobuf identifiers, not the timestamp's, each defined once.
    pub(super) fn new(defs: &'a [FieldDef]) -> anyhow::Result<Fields<'a>> {
        let mut fields = HashMap::new();
        for f in defs {
            if !is_ident(&f.name) {
                bail!(
                    "field name {:?} is not valid: use letters, digits and '_', starting with a letter",
                    f.name
                );
            }
            if f.name == TIMESTAMP_FIELD {
                bail!("field name {TIMESTAMP_FIELD:?} is reserved for the telemetry timestamp");
            }
            if fields.insert(f.name.as_str(), f).is_some() {
                bail!("field {:?} is defined twice in swarm.fields", f.name);
            }
        }
        Ok(Fields { fields })
    }

    /// Writes the fields of a message (numbered from `first`) and the nested types
    /// they need; returns the field generators.
    #[allow(clippy::too_many_arguments)]
    fn message_body(
        &self,
        out: &mut String,
        indent: usize,
        names: &[String],
        first: u32,
        taken: &mut HashSet<String>,
        stack: &mut Vec<String>,
        context: &str,
    ) -> anyhow::Result<Vec<FieldSpec>> {
        let pad = " ".repeat(indent);
        let mut specs = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let number = first + i as u32;
            let def = self.fields.get(name.as_str()).ok_or_else(|| {
                let mut known: Vec<&str> = self.fields.keys().copied().collect();
                known.sort_unstable();
                anyhow!(
                    "{context}: unknown field {name:?}; fields defined in swarm.fields: {}",
                    known.join(", ")
                )
            })?;
            if !taken.insert(name.clone()) {
                bail!("{context}: field {name:?} is listed twice");
            }
            let options = if def.tags.is_empty() {
                String::new()
            } else {
                format!(
                    " [(mir.device.v1.field_meta) = {}]",
                    tags_literal(&def.tags)
                )
            };
            if def.kind == "message" {
                if stack.contains(name) {
                    bail!(
                        "field {name:?} contains itself ({} -> {name})",
                        stack.join(" -> ")
                    );
                }
                if def.fields.is_empty() {
                    bail!("field {name:?} is a message without fields: list them under `fields`");
                }
                let mut type_name = pascal(name);
                if type_name == *name {
                    type_name.push_str("Type");
                }
                writeln!(out, "{pad}message {type_name} {{")?;
                stack.push(name.clone());
                let inner = self.message_body(
                    out,
                    indent + 2,
                    &def.fields,
                    1,
                    &mut HashSet::new(),
                    stack,
                    &format!("message field {name:?}"),
                )?;
                stack.pop();
                writeln!(out, "{pad}}}")?;
                writeln!(out, "{pad}{type_name} {name} = {number}{options};")?;
                specs.push(FieldSpec::Message {
                    name: name.clone(),
                    fields: inner,
                });
            } else {
                let kind = Scalar::parse(&def.kind).ok_or_else(|| {
                    anyhow!(
                        "field {name:?}: unknown type {:?}; types: {}",
                        def.kind,
                        Scalar::TYPES
                    )
                })?;
                let expr = match &def.generator {
                    Some(g) => Some(
                        Expr::parse(&g.expr)
                            .map_err(|e| anyhow!("field {name:?}: generator {:?}: {e}", g.expr))?,
                    ),
                    None => None,
                };
                writeln!(
                    out,
                    "{pad}{} {name} = {number}{options};",
                    kind.proto_type()
                )?;
                specs.push(FieldSpec::Scalar(ScalarGen {
                    name: name.clone(),
                    kind,
                    expr,
                }));
            }
        }
        Ok(specs)
    }
}

/// The `.proto` text of one device group, written message by message.
pub(super) struct GroupSchema<'a> {
    fields: &'a Fields<'a>,
    package: &'a str,
    proto: String,
    names: HashSet<String>,
}

impl<'a> GroupSchema<'a> {
    /// The file's header, for the group `name` in `package`.
    pub(super) fn new(
        fields: &'a Fields<'a>,
        package: &'a str,
        name: &str,
    ) -> anyhow::Result<GroupSchema<'a>> {
        let mut proto = String::new();
        writeln!(
            proto,
            "// Generated by `mir swarm` for the device group {name:?}.\nsyntax = \"proto3\";\n\npackage {package};\n\nimport \"mir/device/v1/mir.proto\";"
        )?;
        Ok(GroupSchema {
            fields,
            package,
            proto,
            names: HashSet::new(),
        })
    }

    /// Writes one message; returns its full name and its field generators.
    pub(super) fn message(
        &mut self,
        kind: MessageKind,
        m: &MessageDef,
        context: &str,
    ) -> anyhow::Result<(String, Vec<FieldSpec>)> {
        if !is_ident(&m.name) {
            bail!("{context}: the name must be a protobuf message name (letters, digits, '_')");
        }
        if !self.names.insert(m.name.clone()) {
            bail!("{context}: the message name is used twice in the group");
        }
        let full_name = format!("{}.{}", self.package, m.name);
        let proto = &mut self.proto;
        writeln!(proto, "\nmessage {} {{", m.name)?;
        writeln!(
            proto,
            "  option (mir.device.v1.message_type) = {};",
            kind.message_type()
        )?;
        if !m.tags.is_empty() {
            writeln!(
                proto,
                "  option (mir.device.v1.meta) = {};",
                tags_literal(&m.tags)
            )?;
        }
        let first = if kind == MessageKind::Telemetry {
            writeln!(
                proto,
                "  int64 {TIMESTAMP_FIELD} = 1 [(mir.device.v1.timestamp) = TIMESTAMP_TYPE_NANO];"
            )?;
            2
        } else {
            1
        };
        let specs = self.fields.message_body(
            proto,
            2,
            &m.fields,
            first,
            &mut HashSet::new(),
            &mut Vec::new(),
            context,
        )?;
        writeln!(proto, "}}")?;
        Ok((full_name, specs))
    }

    /// The whole `.proto` text.
    pub(super) fn into_proto(self) -> String {
        self.proto
    }
}

/// Compiles one `.proto` source (importing mir.proto) with protox.
pub fn compile(file_name: &str, source: &str) -> anyhow::Result<(Bytes, DescriptorPool)> {
    struct Sources {
        files: Vec<(String, String)>,
    }
    impl protox::file::FileResolver for Sources {
        fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
            match self.files.iter().find(|(n, _)| n == name) {
                Some((n, s)) => protox::file::File::from_source(n, s),
                None => Err(protox::Error::file_not_found(name)),
            }
        }
    }
    let mut chain = protox::file::ChainFileResolver::new();
    chain.add(Sources {
        files: vec![
            (file_name.to_string(), source.to_string()),
            (
                "mir/device/v1/mir.proto".to_string(),
                mir_proto::MIR_DEVICE_PROTO.to_string(),
            ),
        ],
    });
    chain.add(protox::file::GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(chain);
    compiler.include_imports(true).include_source_info(false);
    compiler
        .open_file(file_name)
        .map_err(|e| anyhow!("the generated schema does not compile: {e}\n{source}"))?;
    Ok((
        Bytes::from(compiler.encode_file_descriptor_set()),
        compiler.descriptor_pool(),
    ))
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A proto package segment from free text: lowercase, `[a-z0-9_]`, not starting with a digit.
pub(super) fn package_segment(s: &str, default: &str) -> String {
    let mut out: String = s
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() {
        out = default.to_string();
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

fn pascal(s: &str) -> String {
    let mut out = String::new();
    let mut upper = true;
    for c in s.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn tags_literal(tags: &BTreeMap<String, String>) -> String {
    let items: Vec<String> = tags
        .iter()
        .map(|(k, v)| format!("{{key: {}, value: {}}}", quote(k), quote(v)))
        .collect();
    format!("{{tags: [{}]}}", items.join(", "))
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;
