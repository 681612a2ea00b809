//! The swarm file (Mir's format): `apiVersion: mir/v1alpha`, `kind: swarm`, `meta`
//! (the schema package is `<namespace>.<name>`), and `swarm` with `logLevel`,
//! `deployBatchSize`, device groups and the shared field definitions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A whole swarm file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SwarmFile {
    #[serde(default = "api_version")]
    pub api_version: String,
    #[serde(default = "kind")]
    pub kind: String,
    #[serde(default)]
    pub meta: Meta,
    #[serde(default)]
    pub swarm: Swarm,
}

fn api_version() -> String {
    "mir/v1alpha".into()
}

fn kind() -> String {
    "swarm".into()
}

/// The same `meta` as a twin's: name, namespace, labels, annotations.
pub use mir_shared::domain::twin::Meta;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Swarm {
    /// debug | info | warn | error: the SDK's log level.
    #[serde(default)]
    pub log_level: Option<String>,
    /// How many devices deploy at once (default 10).
    #[serde(default)]
    pub deploy_batch_size: Option<usize>,
    #[serde(default)]
    pub devices: Vec<DeviceGroup>,
    #[serde(default)]
    pub fields: Vec<FieldDef>,
}

/// `count` devices sharing meta and messages; named `name__i` when `count > 1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceGroup {
    #[serde(default = "one")]
    pub count: usize,
    #[serde(default)]
    pub meta: Meta,
    #[serde(default)]
    pub telemetry: Vec<MessageDef>,
    #[serde(default)]
    pub commands: Vec<MessageDef>,
    #[serde(default)]
    pub properties: Vec<MessageDef>,
}

fn one() -> usize {
    1
}

/// A telemetry (`interval`), command or property (`delay`) message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MessageDef {
    pub name: String,
    #[serde(default)]
    pub interval: Option<String>,
    #[serde(default)]
    pub delay: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Names of entries of `swarm.fields`.
    #[serde(default)]
    pub fields: Vec<String>,
}

/// A field: a value (`int8..int64`, `uint8..uint64`, `float32`, `float64`, `bool`,
/// `string`) or a `message` made of other fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FieldDef {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// For `message`: names of other fields.
    #[serde(default)]
    pub fields: Vec<String>,
    #[serde(default)]
    pub generator: Option<Generator>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Generator {
    pub expr: String,
}

impl SwarmFile {
    /// Parses YAML (or JSON) text.
    pub fn parse(text: &str) -> anyhow::Result<SwarmFile> {
        let file: SwarmFile =
            serde_yaml::from_str(text).map_err(|e| anyhow::anyhow!("invalid swarm file: {e}"))?;
        if file.kind != "swarm" {
            anyhow::bail!(
                "invalid swarm file: kind is {:?}, expected \"swarm\" (print an example with `mir swarm -j`)",
                file.kind
            );
        }
        Ok(file)
    }

    /// The swarm of `mir swarm --ids a,b`: one device per id in namespace `default`,
    /// with the schema of Mir's quick start (package `swarm.v1`): telemetry
    /// `EnvironmentTlm` (temperature, humidity) and `PowerConsumption` (power, voltage)
    /// every 5 s, the command `ActivateHVAC` (`durationSec`) echoed back, and the
    /// property `DataRateProp` (`sec`) reported back.
    pub fn for_ids(ids: &[String]) -> SwarmFile {
        let msg = |name: &str, fields: &[&str]| MessageDef {
            name: name.into(),
            fields: fields.iter().map(|f| f.to_string()).collect(),
            ..Default::default()
        };
        let field = |name: &str, kind: &str, unit: Option<&str>, expr: Option<&str>| FieldDef {
            name: name.into(),
            kind: kind.into(),
            tags: unit
                .map(|u| BTreeMap::from([("unit".to_string(), u.to_string())]))
                .unwrap_or_default(),
            fields: vec![],
            generator: expr.map(|e| Generator { expr: e.into() }),
        };
        let every = |m: MessageDef| MessageDef {
            interval: Some("5s".into()),
            ..m
        };
        let after = |m: MessageDef| MessageDef {
            delay: Some("100ms".into()),
            ..m
        };
        SwarmFile {
            api_version: api_version(),
            kind: kind(),
            meta: Meta {
                name: "v1".into(),
                namespace: "swarm".into(),
                ..Default::default()
            },
            swarm: Swarm {
                log_level: None,
                deploy_batch_size: None,
                devices: ids
                    .iter()
                    .map(|id| DeviceGroup {
                        count: 1,
                        meta: Meta {
                            name: id.trim().to_string(),
                            namespace: "default".into(),
                            ..Default::default()
                        },
                        telemetry: vec![
                            every(msg("EnvironmentTlm", &["temperature", "humidity"])),
                            every(msg("PowerConsumption", &["power", "voltage"])),
                        ],
                        commands: vec![after(msg("ActivateHVAC", &["durationSec"]))],
                        properties: vec![after(msg("DataRateProp", &["sec"]))],
                    })
                    .collect(),
                fields: vec![
                    field(
                        "temperature",
                        "float64",
                        Some("C"),
                        Some("20 + 5*sin(t/60) + rand"),
                    ),
                    field("humidity", "float64", Some("%"), Some("60 + 10*cos(t/120)")),
                    field(
                        "power",
                        "float64",
                        Some("W"),
                        Some("100 + 30*cos(t/450) + rand*5"),
                    ),
                    field("voltage", "float64", Some("V"), Some("230 + 2*sin(t/90)")),
                    field("durationSec", "int32", Some("s"), None),
                    field("sec", "int32", Some("s"), None),
                ],
            },
        }
    }
}

/// What `mir swarm -j` prints: a complete example using every feature.
pub const TEMPLATE: &str = r#"# A Mir swarm: virtual devices for tests and demos. Run it with `mir swarm -f FILE`.
apiVersion: mir/v1alpha
kind: swarm
meta:
  name: local          # the schema package is <namespace>.<name>: swarm.local
  namespace: swarm
  labels: {}
  annotations: {}
swarm:
  logLevel: info       # debug|info|warn|error
  deployBatchSize: 10  # devices deployed at once
  devices:
    # Environmental sensors: env-sensor__0 .. env-sensor__2
    - count: 3
      meta:
        name: env-sensor
        namespace: swarm
        labels:
          type: environmental
        annotations:
          location: warehouse
      telemetry:
        - name: Environment
          interval: 5s
          tags:
            unit_system: metric
          fields: [temperature, humidity, pressure]
        - name: AirQuality
          interval: 30s
          fields: [co2, voc]
      commands:
        - name: Calibrate    # echoed back after the delay
          delay: 1s
          fields: [calibrationMode]
      properties:
        - name: SensorConfig # desired values reported back after the delay
          delay: 1s
          fields: [sampleRate, enabled]
    # One power monitor, named as is
    - count: 1
      meta:
        name: power-monitor
        namespace: swarm
        labels:
          type: power
      telemetry:
        - name: PowerMetrics
          interval: 5s
          fields: [consumption]
      commands:
        - name: ResetMetrics
          delay: 500ms
          fields: [resetType]
  fields:
    # Types: int8 int16 int32 int64 uint8 uint16 uint32 uint64 float32 float64 bool
    # string message. Generators (telemetry): + - * / % ^, sin cos tan abs sqrt pow
    # exp log log10 floor ceil round min max rand rand(a,b); pi π e; t = seconds
    # since the swarm started.
    - name: temperature
      type: float64
      tags:
        unit: C
      generator:
        expr: "22 + 3*sin(t/120) + rand(-0.5, 0.5)"
    - name: humidity
      type: float32
      tags:
        unit: "%"
      generator:
        expr: "60 + 15*cos(t/180)"
    - name: pressure
      type: int32
      tags:
        unit: hPa
      generator:
        expr: "1013 + 5*sin(t/300)"
    - name: co2
      type: int16
      tags:
        unit: ppm
      generator:
        expr: "400 + 50*sin(t/600)"
    - name: voc
      type: float64
      tags:
        unit: ppb
      generator:
        expr: "100 + 30*cos(t/450)"
    - name: consumption
      type: message
      fields: [power, energy]
    - name: power
      type: float64
      tags:
        unit: W
      generator:
        expr: "100 + 30*cos(t/450) + rand*5"
    - name: energy
      type: float64
      tags:
        unit: kWh
      generator:
        expr: "t/3600"
    - name: calibrationMode
      type: int32
      tags:
        description: "0=auto, 1=manual"
    - name: sampleRate
      type: int32
      tags:
        unit: Hz
    - name: enabled
      type: bool
    - name: resetType
      type: string
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_parses_and_round_trips() {
        let f = SwarmFile::parse(TEMPLATE).expect("template parses");
        assert_eq!(f.swarm.devices.len(), 2);
        assert_eq!(f.swarm.devices[0].count, 3);
        assert_eq!(f.swarm.deploy_batch_size, Some(10));
        let again = SwarmFile::parse(&serde_yaml::to_string(&f).expect("yaml")).expect("parses");
        assert_eq!(again, f);
    }

    #[test]
    fn typos_and_wrong_kinds_are_refused() {
        let e = SwarmFile::parse("kind: swarm\nswarm:\n  devicez: []\n").expect_err("typo");
        assert!(e.to_string().contains("devicez"), "{e}");
        let e = SwarmFile::parse("kind: device\n").expect_err("kind");
        assert!(e.to_string().contains("expected \"swarm\""), "{e}");
    }
}
