//! From a swarm file to what runs: the devices of each group, the group's protobuf
//! schema and, for each telemetry message, how to generate a reading.
//!
//! Each group gets its own schema (package `<namespace>.<name>` of the file's meta)
//! holding only its messages, so that a device lists only its own commands.
//!
//! - [`schema`]: the `.proto` text of a group, compiled with protox ([`compile`]).
//! - [`values`]: telemetry field generators ([`TelemetryPlan`]).
//! - this module: validation, device ids, intervals and delays, and the [`Plan`].

mod schema;
mod values;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use bytes::Bytes;

use mir_proto::DeviceId;

use super::spec::{DeviceGroup, MessageDef, SwarmFile};
pub use schema::compile;
use schema::{package_segment, Fields, GroupSchema, MessageKind};
pub use values::TelemetryPlan;

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

/// Validates a swarm file and builds its plan.
pub fn plan(file: &SwarmFile) -> anyhow::Result<Plan> {
    let package = format!(
        "{}.{}",
        package_segment(&file.meta.namespace, "swarm"),
        package_segment(&file.meta.name, "local")
    );
    let fields = Fields::new(&file.swarm.fields)?;
    if file.swarm.devices.is_empty() {
        bail!("the swarm has no devices: add groups under swarm.devices (see `mir swarm -j`)");
    }
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut groups = Vec::new();
    for (gi, group) in file.swarm.devices.iter().enumerate() {
        let g = group_plan(&fields, &package, gi, group, &mut ids)
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
    fields: &Fields<'_>,
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

    let mut schema = GroupSchema::new(fields, package, name)?;
    let mut tlm_specs = Vec::new();
    let kinds: [(MessageKind, &[MessageDef]); 3] = [
        (MessageKind::Telemetry, &group.telemetry),
        (MessageKind::Command, &group.commands),
        (MessageKind::Property, &group.properties),
    ];
    let mut commands = Vec::new();
    let mut properties = Vec::new();
    for (kind, defs) in kinds {
        for m in defs {
            let context = format!("{} {:?}", kind.what(), m.name);
            let (full_name, specs) = schema.message(kind, m, &context)?;
            match kind {
                MessageKind::Telemetry => {
                    if m.delay.is_some() {
                        tracing::debug!("{context}: delay is for commands and properties");
                    }
                    let interval = duration(m.interval.as_deref(), DEFAULT_INTERVAL, &context)?;
                    if interval < Duration::from_millis(10) {
                        bail!("{context}: the interval must be at least 10ms");
                    }
                    tlm_specs.push((full_name, interval, specs));
                }
                MessageKind::Command => commands.push((
                    full_name,
                    duration(m.delay.as_deref(), DEFAULT_DELAY, &context)?,
                )),
                MessageKind::Property => properties.push((
                    full_name,
                    duration(m.delay.as_deref(), DEFAULT_DELAY, &context)?,
                )),
            }
        }
    }
    let file_name = format!("swarm/{}.proto", device_id(name).replace(':', "_"));
    let proto = schema.into_proto();
    let (descriptor_set, pool) = compile(&file_name, &proto)?;
    let telemetry = tlm_specs
        .into_iter()
        .map(|(full_name, interval, specs)| TelemetryPlan::new(full_name, interval, &pool, specs))
        .collect::<anyhow::Result<_>>()?;
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
mod tests;
