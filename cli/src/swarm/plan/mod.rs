//! From a swarm file to what runs: the devices of each group, the group's protobuf
//! schema (`.proto` text importing `mir/device/v1/mir.proto`, compiled with protox)
//! and, for each telemetry message, how to generate a reading.
//!
//! Each group gets its own schema (package `<namespace>.<name>` of the file's meta)
//! holding only its messages, so that a device lists only its own commands. Telemetry
//! messages get a first field `ts` (nanoseconds, `TIMESTAMP_TYPE_NANO`); message tags
//! become `mir.device.v1.meta` and field tags `mir.device.v1.field_meta`. Nested
//! `message` fields are declared inside the message that uses them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use bytes::Bytes;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, Value};

use mir_proto::DeviceId;

use super::expr::Expr;
use super::spec::{DeviceGroup, FieldDef, MessageDef, SwarmFile};

/// The name of the generated timestamp field of telemetry messages.
pub const TIMESTAMP_FIELD: &str = "ts";
/// Default telemetry interval, command and property delays.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_DELAY: Duration = Duration::ZERO;
pub const DEFAULT_BATCH_SIZE: usize = 10;

/// Everything the swarm runs.
#[derive(Debug, Clone)]
pub struct Plan {
    pub package: String,
    pub batch_size: usize,
    pub log_level: Option<String>,
    pub groups: Vec<GroupPlan>,
}

impl Plan {
    pub fn device_count(&self) -> usize {
        self.groups.iter().map(|g| g.devices.len()).sum()
    }
}

#[derive(Debug, Clone)]
pub struct GroupPlan {
    pub proto: String,
    /// Encoded by protox: keeps the custom options the hub reads.
    pub descriptor_set: Bytes,
    pub devices: Vec<DevicePlan>,
    pub telemetry: Vec<TelemetryPlan>,
    /// Full name and delay.
    pub commands: Vec<(String, Duration)>,
    pub properties: Vec<(String, Duration)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DevicePlan {
    pub id: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct TelemetryPlan {
    pub full_name: String,
    pub interval: Duration,
    desc: MessageDescriptor,
    fields: Vec<FieldGen>,
}

#[derive(Debug, Clone)]
enum FieldGen {
    Scalar {
        name: String,
        kind: Scalar,
        expr: Option<Expr>,
    },
    Message {
        name: String,
        desc: MessageDescriptor,
        fields: Vec<FieldGen>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Scalar {
    Int { min: i64, max: i64, wide: bool },
    Uint { max: u64, wide: bool },
    F32,
    F64,
    Bool,
    Str,
}

impl Scalar {
    const TYPES: &'static str =
        "int8, int16, int32, int64, uint8, uint16, uint32, uint64, float32, float64, bool, string, message";

    fn parse(kind: &str) -> Option<Scalar> {
        let int = |bits: u32| Scalar::Int {
            min: -(1i64 << (bits - 1)),
            max: (1i64 << (bits - 1)) - 1,
            wide: false,
        };
        let uint = |bits: u32| Scalar::Uint {
            max: (1u64 << bits) - 1,
            wide: false,
        };
        Some(match kind {
            "int8" => int(8),
            "int16" => int(16),
            "int32" => int(32),
            "int64" => Scalar::Int {
                min: i64::MIN,
                max: i64::MAX,
                wide: true,
            },
            "uint8" => uint(8),
            "uint16" => uint(16),
            "uint32" => uint(32),
            "uint64" => Scalar::Uint {
                max: u64::MAX,
                wide: true,
            },
            "float32" => Scalar::F32,
            "float64" => Scalar::F64,
            "bool" => Scalar::Bool,
            "string" => Scalar::Str,
            _ => return None,
        })
    }

    fn proto_type(self) -> &'static str {
        match self {
            Scalar::Int { wide: true, .. } => "int64",
            Scalar::Int { .. } => "int32",
            Scalar::Uint { wide: true, .. } => "uint64",
            Scalar::Uint { .. } => "uint32",
            Scalar::F32 => "float",
            Scalar::F64 => "double",
            Scalar::Bool => "bool",
            Scalar::Str => "string",
        }
    }

    /// The field value of a generated number: integers are rounded and clamped to
    /// their type's range (NaN gives 0).
    fn value(self, v: f64) -> Value {
        let v = if v.is_nan() { 0.0 } else { v };
        match self {
            Scalar::Int { min, max, wide } => {
                let n = (v.round().clamp(min as f64, max as f64)) as i64;
                if wide {
                    Value::I64(n)
                } else {
                    Value::I32(n as i32)
                }
            }
            Scalar::Uint { max, wide } => {
                let n = v.round().clamp(0.0, max as f64) as u64;
                if wide {
                    Value::U64(n)
                } else {
                    Value::U32(n as u32)
                }
            }
            Scalar::F32 => Value::F32(v as f32),
            Scalar::F64 => Value::F64(v),
            Scalar::Bool => Value::Bool(v != 0.0),
            Scalar::Str => Value::String(format_number(v)),
        }
    }
}

fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

impl TelemetryPlan {
    /// A reading at `t` seconds since the start, stamped `now_ns`, encoded.
    pub fn reading(&self, t: f64, now_ns: i64, rng: &mut impl rand::Rng) -> Bytes {
        let mut msg = DynamicMessage::new(self.desc.clone());
        msg.set_field_by_name(TIMESTAMP_FIELD, Value::I64(now_ns));
        fill(&mut msg, &self.fields, t, rng);
        Bytes::from(prost::Message::encode_to_vec(&msg))
    }

    /// The same reading, as a dynamic message (tests).
    pub fn decode(&self, bytes: &[u8]) -> anyhow::Result<DynamicMessage> {
        Ok(DynamicMessage::decode(self.desc.clone(), bytes)?)
    }
}

fn fill(msg: &mut DynamicMessage, fields: &[FieldGen], t: f64, rng: &mut impl rand::Rng) {
    for f in fields {
        match f {
            FieldGen::Scalar { name, kind, expr } => {
                let v = expr.as_ref().map(|e| e.eval(t, rng)).unwrap_or(0.0);
                msg.set_field_by_name(name, kind.value(v));
            }
            FieldGen::Message { name, desc, fields } => {
                let mut inner = DynamicMessage::new(desc.clone());
                fill(&mut inner, fields, t, rng);
                msg.set_field_by_name(name, Value::Message(inner));
            }
        }
    }
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A proto package segment from free text: lowercase, `[a-z0-9_]`, not starting with a digit.
fn package_segment(s: &str, default: &str) -> String {
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

fn duration(text: Option<&str>, default: Duration, what: &str) -> anyhow::Result<Duration> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(default),
        Some(t) => humantime::parse_duration(t)
            .map_err(|e| anyhow!("{what}: invalid duration {t:?} ({e}); use e.g. 500ms, 5s, 1m")),
    }
}

/// Sanitizes a device name into a device id: invalid characters become `-`.
fn device_id(name: &str) -> String {
    let id: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    id.chars().take(DeviceId::MAX_LEN).collect()
}

struct Builder<'a> {
    fields: HashMap<&'a str, &'a FieldDef>,
}

impl<'a> Builder<'a> {
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
                specs.push(FieldSpec::Scalar {
                    name: name.clone(),
                    kind,
                    expr,
                });
            }
        }
        Ok(specs)
    }
}

/// Field generators before the descriptors exist.
enum FieldSpec {
    Scalar {
        name: String,
        kind: Scalar,
        expr: Option<Expr>,
    },
    Message {
        name: String,
        fields: Vec<FieldSpec>,
    },
}

fn resolve(spec: Vec<FieldSpec>, desc: &MessageDescriptor) -> anyhow::Result<Vec<FieldGen>> {
    spec.into_iter()
        .map(|f| match f {
            FieldSpec::Scalar { name, kind, expr } => Ok(FieldGen::Scalar { name, kind, expr }),
            FieldSpec::Message { name, fields } => {
                let field = desc
                    .get_field_by_name(&name)
                    .ok_or_else(|| anyhow!("internal: no field {name} in {}", desc.full_name()))?;
                let inner = match field.kind() {
                    prost_reflect::Kind::Message(m) => m,
                    _ => bail!("internal: field {name} is not a message"),
                };
                let fields = resolve(fields, &inner)?;
                Ok(FieldGen::Message {
                    name,
                    desc: inner,
                    fields,
                })
            }
        })
        .collect()
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

/// Validates a swarm file and builds its plan.
pub fn plan(file: &SwarmFile) -> anyhow::Result<Plan> {
    let package = format!(
        "{}.{}",
        package_segment(&file.meta.namespace, "swarm"),
        package_segment(&file.meta.name, "local")
    );
    let mut fields = HashMap::new();
    for f in &file.swarm.fields {
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
    if file.swarm.devices.is_empty() {
        bail!("the swarm has no devices: add groups under swarm.devices (see `mir swarm -j`)");
    }
    let builder = Builder { fields };
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut groups = Vec::new();
    for (gi, group) in file.swarm.devices.iter().enumerate() {
        let g = group_plan(&builder, &package, gi, group, &mut ids)
            .with_context(|| format!("device group {} ({:?})", gi + 1, group.meta.name))?;
        groups.push(g);
    }
    let batch_size = file.swarm.deploy_batch_size.unwrap_or(DEFAULT_BATCH_SIZE);
    if batch_size == 0 {
        bail!("swarm.deployBatchSize must be at least 1");
    }
    Ok(Plan {
        package,
        batch_size,
        log_level: file.swarm.log_level.clone(),
        groups,
    })
}

fn group_plan(
    builder: &Builder<'_>,
    package: &str,
    index: usize,
    group: &DeviceGroup,
    ids: &mut HashMap<String, usize>,
) -> anyhow::Result<GroupPlan> {
    if group.count == 0 {
        bail!("count must be at least 1");
    }
    let name = group.meta.name.trim();
    if name.is_empty() {
        bail!("meta.name is empty: it names the devices");
    }
    let base = device_id(name);
    let namespace = match group.meta.namespace.trim() {
        "" => "default".to_string(),
        ns => ns.to_string(),
    };
    let mut devices = Vec::with_capacity(group.count);
    for i in 0..group.count {
        let id = if group.count == 1 {
            base.clone()
        } else {
            device_id(&format!("{base}__{i}"))
        };
        DeviceId::check(&id).map_err(|e| anyhow!("device {id:?}: {e}"))?;
        if let Some(other) = ids.insert(id.clone(), index) {
            bail!(
                "device {id:?} is also made by group {}: give the groups different meta.name",
                other + 1
            );
        }
        devices.push(DevicePlan {
            id,
            namespace: namespace.clone(),
            labels: group.meta.labels.clone(),
            annotations: group.meta.annotations.clone(),
        });
    }

    let mut proto = String::new();
    writeln!(
        proto,
        "// Generated by `mir swarm` for the device group {name:?}.\nsyntax = \"proto3\";\n\npackage {package};\n\nimport \"mir/device/v1/mir.proto\";"
    )?;
    let mut names = HashSet::new();
    let mut tlm_specs = Vec::new();
    let kinds: [(&str, &[MessageDef], &str); 3] = [
        ("telemetry", &group.telemetry, "MESSAGE_TYPE_TELEMETRY"),
        ("command", &group.commands, "MESSAGE_TYPE_TELECOMMAND"),
        ("property", &group.properties, "MESSAGE_TYPE_TELECONFIG"),
    ];
    let mut commands = Vec::new();
    let mut properties = Vec::new();
    for (what, defs, message_type) in kinds {
        for m in defs {
            let context = format!("{what} {:?}", m.name);
            if !is_ident(&m.name) {
                bail!("{context}: the name must be a protobuf message name (letters, digits, '_')");
            }
            if !names.insert(m.name.clone()) {
                bail!("{context}: the message name is used twice in the group");
            }
            let full_name = format!("{package}.{}", m.name);
            writeln!(proto, "\nmessage {} {{", m.name)?;
            writeln!(
                proto,
                "  option (mir.device.v1.message_type) = {message_type};"
            )?;
            if !m.tags.is_empty() {
                writeln!(
                    proto,
                    "  option (mir.device.v1.meta) = {};",
                    tags_literal(&m.tags)
                )?;
            }
            let mut taken = HashSet::new();
            let first = if what == "telemetry" {
                writeln!(
                    proto,
                    "  int64 {TIMESTAMP_FIELD} = 1 [(mir.device.v1.timestamp) = TIMESTAMP_TYPE_NANO];"
                )?;
                2
            } else {
                1
            };
            let specs = builder.message_body(
                &mut proto,
                2,
                &m.fields,
                first,
                &mut taken,
                &mut Vec::new(),
                &context,
            )?;
            writeln!(proto, "}}")?;
            match what {
                "telemetry" => {
                    if m.delay.is_some() {
                        tracing::debug!("{context}: delay is for commands and properties");
                    }
                    let interval = duration(m.interval.as_deref(), DEFAULT_INTERVAL, &context)?;
                    if interval < Duration::from_millis(10) {
                        bail!("{context}: the interval must be at least 10ms");
                    }
                    tlm_specs.push((full_name, interval, specs));
                }
                "command" => commands.push((
                    full_name,
                    duration(m.delay.as_deref(), DEFAULT_DELAY, &context)?,
                )),
                _ => properties.push((
                    full_name,
                    duration(m.delay.as_deref(), DEFAULT_DELAY, &context)?,
                )),
            }
        }
    }
    let file_name = format!("swarm/{}.proto", device_id(name).replace(':', "_"));
    let (descriptor_set, pool) = compile(&file_name, &proto)?;
    let mut telemetry = Vec::new();
    for (full_name, interval, specs) in tlm_specs {
        let desc = pool
            .get_message_by_name(&full_name)
            .ok_or_else(|| anyhow!("internal: {full_name} is not in the compiled schema"))?;
        let fields = resolve(specs, &desc)?;
        telemetry.push(TelemetryPlan {
            full_name,
            interval,
            desc,
            fields,
        });
    }
    Ok(GroupPlan {
        proto,
        descriptor_set,
        devices,
        telemetry,
        commands,
        properties,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::spec::TEMPLATE;

    #[test]
    fn the_template_plans_into_devices_schemas_and_generators() {
        let file = SwarmFile::parse(TEMPLATE).expect("parses");
        let plan = plan(&file).expect("plans");
        assert_eq!(plan.package, "swarm.local");
        assert_eq!(plan.device_count(), 4);
        let env = &plan.groups[0];
        let ids: Vec<&str> = env.devices.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["env-sensor__0", "env-sensor__1", "env-sensor__2"]);
        assert_eq!(env.devices[0].labels["type"], "environmental");
        assert_eq!(plan.groups[1].devices[0].id, "power-monitor");
        assert_eq!(
            env.commands,
            [("swarm.local.Calibrate".to_string(), Duration::from_secs(1))]
        );
        assert_eq!(env.properties[0].0, "swarm.local.SensorConfig");
        assert!(
            env.proto.contains("MESSAGE_TYPE_TELEMETRY"),
            "{}",
            env.proto
        );

        // The descriptor set keeps the Mir options (checked on the raw bytes' pool).
        let pool = DescriptorPool::decode(env.descriptor_set.as_ref()).expect("pool");
        let m = pool
            .get_message_by_name("swarm.local.Environment")
            .expect("Environment");
        let opts = m.options();
        let ext = pool
            .get_extension_by_name("mir.device.v1.message_type")
            .expect("extension");
        assert_eq!(opts.get_extension(&ext).as_enum_number(), Some(1));
        let meta = pool
            .get_extension_by_name("mir.device.v1.meta")
            .expect("meta");
        let tags = opts.get_extension(&meta);
        assert!(format!("{tags:?}").contains("unit_system"), "{tags:?}");
        let ts = m.get_field_by_name("ts").expect("ts");
        let ts_ext = pool
            .get_extension_by_name("mir.device.v1.timestamp")
            .expect("ts ext");
        assert_eq!(
            ts.options().get_extension(&ts_ext).as_enum_number(),
            Some(4)
        );

        // Readings decode with generated values in range.
        let tlm = &env.telemetry[0];
        let bytes = tlm.reading(0.0, 42, &mut rand::rng());
        let msg = tlm.decode(&bytes).expect("decodes");
        assert_eq!(msg.get_field_by_name("ts").expect("ts").as_i64(), Some(42));
        let temp = msg
            .get_field_by_name("temperature")
            .expect("t")
            .as_f64()
            .expect("f64");
        assert!((21.5..22.5).contains(&temp), "{temp}");
        assert_eq!(
            msg.get_field_by_name("pressure").expect("p").as_i32(),
            Some(1013)
        );
        let power = &plan.groups[1].telemetry[0];
        let msg = power
            .decode(&power.reading(3600.0, 1, &mut rand::rng()))
            .expect("decodes");
        let consumption = msg.get_field_by_name("consumption").expect("c");
        let energy = consumption
            .as_message()
            .and_then(|m| m.get_field_by_name("energy"))
            .and_then(|v| v.as_f64());
        assert_eq!(energy, Some(1.0));
    }

    #[test]
    fn integers_round_and_clamp() {
        let i8t = Scalar::parse("int8").expect("int8");
        assert_eq!(i8t.value(300.0), Value::I32(127));
        assert_eq!(i8t.value(-300.0), Value::I32(-128));
        assert_eq!(i8t.value(2.5), Value::I32(3));
        assert_eq!(i8t.value(f64::NAN), Value::I32(0));
        assert_eq!(
            Scalar::parse("uint16").expect("u16").value(-5.0),
            Value::U32(0)
        );
        assert_eq!(
            Scalar::parse("int64").expect("i64").value(1e30),
            Value::I64(i64::MAX)
        );
        assert_eq!(
            Scalar::parse("bool").expect("bool").value(1.0),
            Value::Bool(true)
        );
        assert_eq!(
            Scalar::parse("string").expect("s").value(3.0),
            Value::String("3".into())
        );
    }

    #[test]
    fn mistakes_get_clear_errors() {
        let err = |yaml: &str| {
            let file = SwarmFile::parse(yaml).expect("parses");
            format!("{:#}", plan(&file).expect_err("invalid"))
        };
        let base = "kind: swarm\nswarm:\n  devices:\n    - meta: {name: a}\n      telemetry:\n        - name: T\n          fields: [x]\n";
        let e = err(&format!("{base}  fields: [{{name: y, type: int32}}]\n"));
        assert!(e.contains("unknown field \"x\"") && e.contains("y"), "{e}");
        let e = err(&format!("{base}  fields: [{{name: x, type: int33}}]\n"));
        assert!(
            e.contains("unknown type \"int33\"") && e.contains("float64"),
            "{e}"
        );
        let e = err(&format!(
            "{base}  fields: [{{name: x, type: int32, generator: {{expr: \"1 +\"}}}}]\n"
        ));
        assert!(
            e.contains("generator \"1 +\"") && e.contains("at character 4"),
            "{e}"
        );
        let e = err(&format!(
            "{base}  fields: [{{name: x, type: message, fields: [x]}}]\n"
        ));
        assert!(e.contains("contains itself"), "{e}");
        let e = err("kind: swarm\nswarm:\n  devices:\n    - {count: 2, meta: {name: a}}\n    - {meta: {name: a__1}}\n");
        assert!(e.contains("\"a__1\" is also made by group 1"), "{e}");
        let e = err("kind: swarm\nswarm:\n  devices: []\n");
        assert!(e.contains("no devices"), "{e}");
        let e = err(&format!(
            "{base}          interval: 5 parsecs\n  fields: [{{name: x, type: int32}}]\n"
        ));
        assert!(e.contains("invalid duration"), "{e}");
    }

    #[test]
    fn ids_give_devices_with_the_schema_of_mirs_quick_start() {
        let file = SwarmFile::for_ids(&["power".into(), "weather".into()]);
        let plan = plan(&file).expect("plans");
        assert_eq!(plan.device_count(), 2);
        assert_eq!(plan.package, "swarm.v1");
        assert_eq!(plan.groups[1].devices[0].id, "weather");
        assert_eq!(plan.groups[0].devices[0].namespace, "default");
        let telemetry: Vec<&str> = plan.groups[0]
            .telemetry
            .iter()
            .map(|t| t.full_name.as_str())
            .collect();
        assert_eq!(
            telemetry,
            ["swarm.v1.EnvironmentTlm", "swarm.v1.PowerConsumption"]
        );
        assert_eq!(plan.groups[0].commands[0].0, "swarm.v1.ActivateHVAC");
        assert_eq!(plan.groups[0].properties[0].0, "swarm.v1.DataRateProp");
        let pool = DescriptorPool::decode(plan.groups[0].descriptor_set.clone()).expect("schema");
        let fields = |name: &str| -> Vec<String> {
            pool.get_message_by_name(name)
                .expect(name)
                .fields()
                .map(|f| f.json_name().to_string())
                .collect()
        };
        assert_eq!(
            fields("swarm.v1.EnvironmentTlm"),
            ["ts", "temperature", "humidity"]
        );
        assert_eq!(
            fields("swarm.v1.PowerConsumption"),
            ["ts", "power", "voltage"]
        );
        assert_eq!(fields("swarm.v1.ActivateHVAC"), ["durationSec"]);
        assert_eq!(fields("swarm.v1.DataRateProp"), ["sec"]);
    }

    #[test]
    fn names_are_sanitized_into_ids_and_packages() {
        assert_eq!(device_id("env sensor/1"), "env-sensor-1");
        assert_eq!(package_segment("My Fleet", "x"), "my_fleet");
        assert_eq!(package_segment("9lives", "x"), "_9lives");
        assert_eq!(package_segment("", "swarm"), "swarm");
        assert_eq!(pascal("power_usage"), "PowerUsage");
    }
}
