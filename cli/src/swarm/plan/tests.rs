//! Tests of the plan: devices, schemas and generators from whole swarm files, and the
//! errors of invalid ones.

use std::time::Duration;

use prost_reflect::DescriptorPool;

use super::{device_id, plan};
use crate::swarm::spec::{SwarmFile, TEMPLATE};

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
fn names_are_sanitized_into_ids() {
    assert_eq!(device_id("env sensor/1"), "env-sensor-1");
}
