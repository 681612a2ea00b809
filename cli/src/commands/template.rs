//! `mir tools generate device-template NAME`: a new Rust device project on the Mir
//! device SDK: `Cargo.toml`, `build.rs` (protox + prost-build, no protoc), the schema
//! with the `mir.device.v1` annotations, `src/main.rs` (builder, a command handler, a
//! property handler, a telemetry loop), `device.yaml` and a README.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::Args;

use super::out;

/// This repository's device SDK, when the CLI runs from a checkout.
const REPO_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../device-sdk");

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  mir tools generate device-template weather
  mir tools generate device-template pump --dir ~/src/pump --sdk-path ~/src/mir/device-sdk
  cd weather && cargo run          # connects to the target in device.yaml")]
pub struct DeviceTemplateArgs {
    /// Project and device name (letters, digits, '-' and '_', starting with a letter)
    pub name: String,
    /// Where to write the project (default: ./NAME)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Depend on the SDK at this path (default: this repository's device-sdk when it
    /// exists, else the crates.io version)
    #[arg(long, value_name = "PATH", conflicts_with = "sdk_version")]
    pub sdk_path: Option<PathBuf>,
    /// Depend on this SDK version instead of a path
    #[arg(long, value_name = "VERSION")]
    pub sdk_version: Option<String>,
    /// MQTT target written in device.yaml
    #[arg(long, default_value = "mqtt://127.0.0.1:1883", value_name = "URL")]
    pub target: String,
    /// Write into an existing non-empty directory (files are overwritten)
    #[arg(long)]
    pub force: bool,
}

/// How the project depends on the SDK.
#[derive(Debug, Clone, PartialEq)]
pub enum SdkDep {
    Path(PathBuf),
    Version(String),
}

impl SdkDep {
    fn toml(&self) -> String {
        match self {
            SdkDep::Path(p) => format!("{{ path = {} }}", toml_string(&p.to_string_lossy())),
            SdkDep::Version(v) => toml_string(v),
        }
    }
}

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

pub fn run(a: DeviceTemplateArgs) -> anyhow::Result<ExitCode> {
    check_name(&a.name)?;
    let dir = a.dir.clone().unwrap_or_else(|| PathBuf::from(&a.name));
    let sdk = match (&a.sdk_path, &a.sdk_version) {
        (Some(p), _) => SdkDep::Path(
            std::fs::canonicalize(p)
                .with_context(|| format!("--sdk-path {}: no such directory", p.display()))?,
        ),
        (None, Some(v)) => SdkDep::Version(v.clone()),
        (None, None) => match std::fs::canonicalize(REPO_SDK) {
            Ok(p) if p.join("Cargo.toml").exists() => SdkDep::Path(p),
            _ => SdkDep::Version(env!("CARGO_PKG_VERSION").to_string()),
        },
    };
    if dir.exists()
        && !a.force
        && std::fs::read_dir(&dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!(
            "{} exists and is not empty: choose another --dir, or pass --force to overwrite",
            dir.display()
        );
    }
    let files = files(&a.name, &sdk, &a.target);
    for (path, text) in &files {
        let full = dir.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&full, text).with_context(|| format!("cannot write {}", full.display()))?;
    }
    out(&format!(
        "Created the device project {} in {}:\n{}\nNext:\n  cd {}\n  cargo run    # connects to {} (see device.yaml)\n",
        a.name,
        dir.display(),
        files
            .iter()
            .map(|(p, _)| format!("  {p}"))
            .collect::<Vec<_>>()
            .join("\n"),
        dir.display(),
        a.target
    ))?;
    Ok(ExitCode::SUCCESS)
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        bail!(
            "invalid project name {name:?}: use letters, digits, '-' and '_', starting with a letter (it is also the device id)"
        );
    }
    Ok(())
}

/// The project's files: relative path and content.
pub fn files(name: &str, sdk: &SdkDep, target: &str) -> Vec<(&'static str, String)> {
    let vars = |t: &str| {
        t.replace("{{name}}", name)
            .replace("{{sdk}}", &sdk.toml())
            .replace("{{target}}", target)
    };
    vec![
        ("Cargo.toml", vars(CARGO_TOML)),
        ("build.rs", BUILD_RS.to_string()),
        ("src/main.rs", vars(MAIN_RS)),
        ("proto/schema/v1/schema.proto", vars(SCHEMA_PROTO)),
        (
            "proto/mir/device/v1/mir.proto",
            mir_proto::MIR_DEVICE_PROTO.to_string(),
        ),
        ("device.yaml", vars(DEVICE_YAML)),
        ("README.md", vars(README)),
        (".gitignore", "/target\n".to_string()),
    ]
}

const CARGO_TOML: &str = r#"[package]
name = "{{name}}"
version = "0.1.0"
edition = "2021"
publish = false

[dependencies]
mir-device-sdk = {{sdk}}
prost = "0.14"
tokio = { version = "1", features = ["rt-multi-thread", "macros", "signal", "time", "sync"] }
tracing = "0.1"

[build-dependencies]
protox = "0.9"
prost-build = "0.14"

# A project of its own, even when created inside another workspace.
[workspace]
"#;

const BUILD_RS: &str = r#"//! Compiles `proto/schema/v1/schema.proto` with protox (no protoc needed): the prost
//! types, and the encoded descriptor set the device sends to Mir. The descriptor set
//! is encoded by protox itself so that the `mir.device.v1` options survive.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true).include_source_info(false);
    compiler.open_file("proto/schema/v1/schema.proto")?;
    std::fs::write(out.join("schema.bin"), compiler.encode_file_descriptor_set())?;
    // Rust types for this project's package only.
    let mut fds = compiler.file_descriptor_set();
    fds.file.retain(|f| f.package() == "schema.v1");
    prost_build::Config::new()
        .enable_type_names()
        .compile_fds(fds)?;
    Ok(())
}
"#;

const MAIN_RS: &str = r#"//! {{name}}: a Mir device. Its messages are in `proto/schema/v1/schema.proto`; where
//! it connects and its id are in `device.yaml` (or `MIR__...` variables).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mir_device_sdk::Mir;

/// The messages of the schema, generated by `build.rs`.
pub mod schema {
    include!(concat!(env!("OUT_DIR"), "/schema.v1.rs"));
}

use schema::{ActivateHvacCmd, ActivateHvacResp, DataRateProp, DataRateStatus, Env};

/// The encoded schema the device announces to Mir.
const SCHEMA: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/schema.bin"));

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // ./device.yaml, ~/.config/mir/device.yaml or /etc/mir/device.yaml, then MIR__...
    let mir = Mir::builder()
        .default_config_file()
        .schema(SCHEMA)
        .build()?;

    // Commands: answer ActivateHVACCmd.
    mir.handle_command(|cmd: ActivateHvacCmd| async move {
        tracing::info!(duration_sec = cmd.duration_sec, "HVAC on");
        Ok::<_, String>(ActivateHvacResp { success: true })
    });

    // Configuration: apply the desired data rate, then report it.
    let rate = Arc::new(AtomicU64::new(5));
    let (reporter, current) = (mir.clone(), Arc::clone(&rate));
    mir.handle_properties(move |p: DataRateProp| {
        let sec = p.sec.max(1);
        current.store(sec as u64, Ordering::Relaxed);
        if let Err(e) = reporter.send_properties(&DataRateStatus { sec }) {
            tracing::warn!("cannot report the data rate: {e}");
        }
    });

    // Ctrl-C stops the telemetry loop and the device.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        let _ = stop_tx.send(true);
    });
    let mut shutdown = stop_rx.clone();
    let running = mir
        .launch(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await?;
    tracing::info!(device = %mir.device_id(), "launched");

    // Telemetry: a reading every `rate` seconds.
    let mut stop = stop_rx;
    let mut tick = 0u64;
    loop {
        let reading = Env {
            ts: now_ns(),
            temperature: 20.0 + 5.0 * (tick as f64 / 10.0).sin(),
            humidity: 50,
        };
        if let Err(e) = mir.send_telemetry(&reading).await {
            tracing::warn!("telemetry not sent: {e}");
        }
        tick += 1;
        let wait = Duration::from_secs(rate.load(Ordering::Relaxed));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    running.wait().await?;
    Ok(())
}
"#;

const SCHEMA_PROTO: &str = r#"// The schema of {{name}}: plain protobuf with the mir.device.v1 annotations.
syntax = "proto3";

package schema.v1;

import "mir/device/v1/mir.proto";

// Telemetry: sent by the device, stored by Mir. `ts` is the reading's time.
message Env {
  option (mir.device.v1.message_type) = MESSAGE_TYPE_TELEMETRY;
  option (mir.device.v1.meta) = {
    tags: [{key: "device", value: "{{name}}"}]
  };

  int64 ts = 1 [(mir.device.v1.timestamp) = TIMESTAMP_TYPE_NANO];
  double temperature = 2 [(mir.device.v1.field_meta) = {
    tags: [{key: "unit", value: "celsius"}]
  }];
  int32 humidity = 3 [(mir.device.v1.field_meta) = {
    tags: [{key: "unit", value: "%"}]
  }];
}

// A command: `mir cmd send {{name}} -n schema.v1.ActivateHVACCmd -p '{"durationSec": 5}'`
message ActivateHVACCmd {
  option (mir.device.v1.message_type) = MESSAGE_TYPE_TELECOMMAND;
  int32 duration_sec = 1;
}

message ActivateHVACResp {
  bool success = 1;
}

// Configuration: `mir cfg send {{name}} -n schema.v1.DataRateProp -p '{"sec": 10}'`
message DataRateProp {
  option (mir.device.v1.message_type) = MESSAGE_TYPE_TELECONFIG;
  int32 sec = 1;
}

// What the device reports back.
message DataRateStatus {
  int32 sec = 1;
}
"#;

const DEVICE_YAML: &str = r#"# Configuration of {{name}} (MIR__... environment variables fill what is not here).
mir:
  target: {{target}}
  logLevel: info
  device:
    id: {{name}}
user: {}
"#;

const README: &str = r#"# {{name}}

A Mir device on the Rust device SDK.

- `proto/schema/v1/schema.proto`: the device's messages (telemetry `Env`, command
  `ActivateHVACCmd`, configuration `DataRateProp`), annotated with `mir.device.v1`.
  `build.rs` compiles it with protox (no `protoc` needed).
- `src/main.rs`: the device: handlers for the command and the configuration, and a
  telemetry loop.
- `device.yaml`: where the device connects (`mir.target`) and its id.

## Run it

```sh
mir local &          # a local hub, if you have none
cargo run
```

Then, from another terminal:

```sh
mir device ls {{name}}
mir tlm query {{name}} -n schema.v1.Env --since 5m
mir cmd send {{name}} -n schema.v1.ActivateHVACCmd -p '{"durationSec": 5}'
mir cfg send {{name}} -n schema.v1.DataRateProp -p '{"sec": 10}'
```

Against AWS IoT Core, set `mir.target` to `mqtts://<endpoint>:8883` and add
`tlsCert`, `tlsKey` and `rootCA` (see the SDK's documentation).
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_name_the_device_and_the_sdk() {
        let files = files(
            "pump",
            &SdkDep::Path("/src/mir/device-sdk".into()),
            "mqtt://h:1",
        );
        let get = |p: &str| &files.iter().find(|(n, _)| *n == p).expect(p).1;
        assert!(get("Cargo.toml").contains("name = \"pump\""));
        assert!(get("Cargo.toml").contains("mir-device-sdk = { path = \"/src/mir/device-sdk\" }"));
        assert!(get("device.yaml").contains("target: mqtt://h:1"));
        assert!(get("device.yaml").contains("id: pump"));
        assert!(get("proto/schema/v1/schema.proto").contains("MESSAGE_TYPE_TELECOMMAND"));
        assert!(!get("src/main.rs").contains("{{"));
        let files = files_with_version();
        assert!(files.contains("mir-device-sdk = \"0.1.0\""), "{files}");
        check_name("weather-1").expect("a valid name");
        for bad in ["1weather", "a b"] {
            let e = check_name(bad).expect_err(bad);
            assert!(
                e.to_string()
                    .starts_with(&format!("invalid project name {bad:?}")),
                "{e}"
            );
        }
    }

    fn files_with_version() -> String {
        files("x", &SdkDep::Version("0.1.0".into()), "mqtt://h:1")[0]
            .1
            .clone()
    }

    #[test]
    fn the_schema_compiles_with_the_mir_options() {
        let files = files("pump", &SdkDep::Version("0.1.0".into()), "mqtt://h:1");
        let proto = &files[3].1;
        let (_, pool) =
            crate::swarm::plan::compile("schema/v1/schema.proto", proto).expect("compiles");
        assert!(pool
            .get_message_by_name("schema.v1.ActivateHVACCmd")
            .is_some());
    }
}
