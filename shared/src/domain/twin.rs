//! The digital twin: the same document as Mir's (`apiVersion: mir/v1alpha`, `kind: device`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use mir_proto::DeviceId;

use super::DomainError;

pub const API_VERSION: &str = "mir/v1alpha";
pub const KIND: &str = "device";
pub const DEFAULT_NAMESPACE: &str = "default";

fn api_version() -> String {
    API_VERSION.to_string()
}
fn kind() -> String {
    KIND.to_string()
}

/// A device twin as users see it in YAML and JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Twin {
    #[serde(default = "api_version")]
    pub api_version: String,
    #[serde(default = "kind")]
    pub kind: String,
    #[serde(default)]
    pub meta: Meta,
    #[serde(default)]
    pub spec: Spec,
    #[serde(default)]
    pub properties: Properties,
    #[serde(default)]
    pub status: Status,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Meta {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spec {
    #[serde(default)]
    pub device_id: String,
    #[serde(default)]
    pub disabled: bool,
}

/// Desired (written by operators) and reported (written by the device) properties:
/// message full name -> the message as proto3 JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Properties {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub desired: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reported: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Status {
    #[serde(default)]
    pub online: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// The latest connection the lifecycle events told about (see
    /// [`presence`](super::presence)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<super::presence::SessionStatus>,
    /// The device's heartbeat interval, as its `Hello` said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_sec: Option<u32>,
    /// While online: when the device counts as gone if it sends nothing more (see
    /// [`presence::stale_at`](super::presence::stale_at)); the sweep reads only the
    /// devices past theirs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub schema: SchemaStatus,
    #[serde(default, skip_serializing_if = "PropertyTimes::is_empty")]
    pub properties: PropertyTimes,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SchemaStatus {
    #[serde(default)]
    pub package_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schema_fetch: Option<DateTime<Utc>>,
}

/// When each property was last set. Reported times are the device's own times, so a
/// replayed or duplicated older value never overwrites a newer one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PropertyTimes {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub desired: BTreeMap<String, DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reported: BTreeMap<String, DateTime<Utc>>,
}

impl PropertyTimes {
    pub fn is_empty(&self) -> bool {
        self.desired.is_empty() && self.reported.is_empty()
    }
}

impl Default for Twin {
    fn default() -> Self {
        Self {
            api_version: api_version(),
            kind: kind(),
            meta: Meta::default(),
            spec: Spec::default(),
            properties: Properties::default(),
            status: Status::default(),
        }
    }
}

impl Twin {
    /// The twin of a device that connected without being created first: namespace
    /// `default`, name = id.
    pub fn auto_provisioned(id: &DeviceId) -> Self {
        let mut twin = Twin::default();
        twin.spec.device_id = id.to_string();
        twin.meta.name = id.to_string();
        twin.meta.namespace = DEFAULT_NAMESPACE.to_string();
        twin
    }

    /// Fills defaults (name = id, namespace `default`) and checks the document.
    pub fn normalized(mut self) -> Result<Self, DomainError> {
        if self.api_version.is_empty() {
            self.api_version = api_version();
        }
        if self.kind.is_empty() {
            self.kind = kind();
        }
        if self.api_version != API_VERSION {
            return Err(DomainError::Invalid(format!(
                "apiVersion must be {API_VERSION:?}, not {:?}",
                self.api_version
            )));
        }
        if !self.kind.eq_ignore_ascii_case(KIND) {
            return Err(DomainError::Invalid(format!(
                "kind must be {KIND:?}, not {:?}",
                self.kind
            )));
        }
        self.kind = kind();
        DeviceId::check(&self.spec.device_id)
            .map_err(|e| DomainError::Invalid(format!("spec.deviceId: {e}")))?;
        if self.meta.name.is_empty() {
            self.meta.name = self.spec.device_id.clone();
        }
        if self.meta.namespace.is_empty() {
            self.meta.namespace = DEFAULT_NAMESPACE.to_string();
        }
        check_name("meta.name", &self.meta.name)?;
        check_name("meta.namespace", &self.meta.namespace)?;
        for (k, v) in &self.meta.labels {
            check_label("meta.labels key", k)?;
            check_label("meta.labels value", v)?;
        }
        Ok(self)
    }

    pub fn device_id(&self) -> Result<DeviceId, DomainError> {
        DeviceId::new(self.spec.device_id.clone())
            .map_err(|e| DomainError::Invalid(format!("spec.deviceId: {e}")))
    }

    /// `name/namespace`, the way the CLI shows a device.
    pub fn display_name(&self) -> String {
        format!("{}/{}", self.meta.name, self.meta.namespace)
    }

    /// Applies what an operator may edit (meta, spec.disabled, desired properties)
    /// from `edit`, keeping the id and everything the system maintains. Returns the
    /// desired properties whose value changed.
    pub fn apply_edit(&mut self, edit: &Twin, now: DateTime<Utc>) -> Vec<String> {
        self.meta = edit.meta.clone();
        if self.meta.name.is_empty() {
            self.meta.name = self.spec.device_id.clone();
        }
        if self.meta.namespace.is_empty() {
            self.meta.namespace = DEFAULT_NAMESPACE.to_string();
        }
        self.spec.disabled = edit.spec.disabled;
        let mut changed = Vec::new();
        for (name, value) in &edit.properties.desired {
            if self.properties.desired.get(name) != Some(value) {
                changed.push(name.clone());
            }
        }
        let removed: Vec<String> = self
            .properties
            .desired
            .keys()
            .filter(|k| !edit.properties.desired.contains_key(*k))
            .cloned()
            .collect();
        for name in removed {
            self.properties.desired.remove(&name);
            self.status.properties.desired.remove(&name);
        }
        for name in &changed {
            if let Some(v) = edit.properties.desired.get(name) {
                self.properties.desired.insert(name.clone(), v.clone());
                self.status.properties.desired.insert(name.clone(), now);
            }
        }
        changed
    }
}

fn check_name(what: &str, s: &str) -> Result<(), DomainError> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if ok {
        Ok(())
    } else {
        Err(DomainError::Invalid(format!(
            "{what} {s:?} must be 1 to 128 letters, digits, '-', '_', '.' or ':'"
        )))
    }
}

fn check_label(what: &str, s: &str) -> Result<(), DomainError> {
    if s.len() > 256 || s.contains(',') || s.contains('=') {
        return Err(DomainError::Invalid(format!(
            "{what} {s:?} must be at most 256 characters without ',' or '='"
        )));
    }
    Ok(())
}

/// A value with the store version it was read at (optimistic concurrency).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Versioned<T> {
    pub version: u64,
    pub value: T,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIR_DOC: &str = r#"
apiVersion: mir/v1alpha
kind: device
meta:
  name: temperature-sensor-01
  namespace: building-a
  labels:
    type: sensor
    location: floor-1
  annotations:
    manufacturer: "Acme Sensors Inc"
spec:
  deviceId: temp-sensor-01
  disabled: false
properties:
  desired:
    sensor.v1.SampleRate:
      intervalSeconds: 60
  reported:
    sensor.v1.BatteryStatus:
      percentage: 87
      voltage: 3.2
status:
  online: true
  lastHeartbeat: 2024-11-21T10:30:45Z
  schema:
    packageNames:
    - sensor.v1
    - mir.device.v1
    lastSchemaFetch: 2024-11-21T09:00:00Z
  properties:
    desired:
      sensor.v1.SampleRate: 2024-11-20T14:00:00Z
    reported:
      sensor.v1.BatteryStatus: 2024-11-21T10:30:00Z
"#;

    #[test]
    fn the_twin_from_mirs_documentation_parses_and_round_trips() {
        let twin: Twin = serde_yaml::from_str(MIR_DOC).expect("parses");
        assert_eq!(twin.meta.labels["location"], "floor-1");
        assert_eq!(
            twin.properties.reported["sensor.v1.BatteryStatus"]["voltage"],
            3.2
        );
        assert_eq!(
            twin.status.schema.package_names,
            ["sensor.v1", "mir.device.v1"]
        );
        let yaml = serde_yaml::to_string(&twin).expect("serializes");
        let back: Twin = serde_yaml::from_str(&yaml).expect("parses again");
        assert_eq!(back, twin);
        let json = serde_json::to_value(&twin).expect("json");
        assert_eq!(json["spec"]["deviceId"], "temp-sensor-01");
        assert_eq!(json["status"]["lastHeartbeat"], "2024-11-21T10:30:45Z");
    }

    #[test]
    fn a_double_in_a_property_reads_back_exactly_from_json() {
        // Found by the property tests: without serde_json's float_roundtrip feature this
        // double read back as a neighbouring one.
        let mut twin = Twin::default();
        let value = serde_json::json!([{ "v": 1.17415022518014e-232 }]);
        twin.properties.reported.insert("x.V".into(), value);
        let text = serde_json::to_string(&twin).expect("json");
        assert_eq!(serde_json::from_str::<Twin>(&text).expect("parses"), twin);
    }

    #[test]
    fn an_unknown_field_is_refused_so_typos_are_not_silently_dropped() {
        let err = serde_yaml::from_str::<Twin>("spec:\n  deviceID: x\n").expect_err("typo");
        assert!(err.to_string().contains("deviceID"), "{err}");
    }

    #[test]
    fn normalizing_fills_name_and_namespace_and_checks_the_id() {
        let mut twin = Twin::default();
        twin.spec.device_id = "weather".into();
        let twin = twin.normalized().expect("valid");
        assert_eq!(twin.display_name(), "weather/default");
        let mut bad = Twin::default();
        bad.spec.device_id = "bad id".into();
        let e = bad.normalized().expect_err("an invalid device id");
        assert!(e.to_string().starts_with("spec.deviceId: "), "{e}");
    }

    #[test]
    fn an_empty_twin_prints_like_mir_with_empty_properties() {
        let twin = Twin::auto_provisioned(&DeviceId::new("weather").expect("id"));
        let yaml = serde_yaml::to_string(&twin).expect("yaml");
        assert!(yaml.contains("properties: {}"), "{yaml}");
        assert!(yaml.contains("labels: {}"), "{yaml}");
    }

    #[test]
    fn editing_changes_meta_and_desired_but_never_status_or_id() {
        let mut twin = Twin::auto_provisioned(&DeviceId::new("w").expect("id"));
        twin.status.online = true;
        let mut edit = twin.clone();
        edit.spec.device_id = "other".into();
        edit.status.online = false;
        edit.meta.labels.insert("a".into(), "b".into());
        edit.properties
            .desired
            .insert("x.P".into(), serde_json::json!({"sec": 5}));
        let changed = twin.apply_edit(&edit, Utc::now());
        assert_eq!(changed, ["x.P"]);
        assert_eq!(twin.spec.device_id, "w");
        assert!(twin.status.online);
        assert_eq!(twin.meta.labels["a"], "b");
        assert!(twin.status.properties.desired.contains_key("x.P"));
    }
}
