//! The generic merge of layers and the lazily parsed settings.

use std::time::Duration;

use super::*;

fn yaml(text: &str) -> Layer {
    serde_yaml::from_str(text).expect("a valid mir: section")
}

#[test]
fn the_higher_layer_wins_per_field_and_nested_sections_merge_field_by_field() {
    let mut builder = Layer {
        target: Some("mqtt://builder:1883".into()),
        ..Layer::default()
    };
    builder.local_store = Some(LocalStoreSection {
        folder_path: Some("/builder".into()),
        ..LocalStoreSection::default()
    });
    let file = yaml("target: mqtt://file:1883\nlocalStore:\n  folderPath: /file\n  maxBytes: 10\n");
    let env = yaml("localStore:\n  maxBytes: 20\n  inMemory: true\nbackoff:\n  min: 2s\n");
    let merged = builder.merge(file).merge(env);
    assert_eq!(merged.target.as_deref(), Some("mqtt://builder:1883"));
    let store = merged.local_store.expect("merged section");
    assert_eq!(store.folder_path, Some("/builder".into()), "builder");
    assert_eq!(store.max_bytes, Some(10), "the file over the environment");
    assert_eq!(
        store.in_memory,
        Some(true),
        "the environment fills the rest"
    );
    let backoff = merged.backoff.expect("from the environment");
    assert_eq!(
        (backoff.min, backoff.max),
        (Some(Duration::from_secs(2)), None)
    );
}

#[test]
fn settings_from_text_are_parsed_only_when_they_win() {
    let file = yaml("logLevel: warn\nprofile: aws\n");
    let env = yaml("logLevel: loud\nprofile: cloud\n");
    let merged = file.merge(env);
    let level = merged.log_level.expect("set").resolve();
    assert!(matches!(level, Ok(LogLevel::Warn)), "{level:?}");
    let profile = merged.profile.expect("set").resolve();
    assert!(matches!(profile, Ok(Profile::Aws)), "{profile:?}");
    let err = yaml("profile: cloud\n")
        .profile
        .expect("set")
        .resolve()
        .expect_err("the winner is parsed");
    assert!(
        matches!(
            err,
            BuildError::InvalidOption {
                option: "profile",
                ..
            }
        ),
        "{err}"
    );
    let given = Setting::Given(Persistence::Always).merge(Setting::Text("sometimes".into()));
    assert!(matches!(given.resolve(), Ok(Persistence::Always)));
}

#[test]
fn shorthands_fold_into_the_device_section_and_the_nested_key_wins() {
    let l = yaml("deviceId: short\nidPrefix:\n  prefix: p\n").normalized();
    let device = l.device.expect("device");
    assert_eq!(device.id.as_deref(), Some("short"));
    assert_eq!(
        device.id_prefix.and_then(|p| p.prefix).as_deref(),
        Some("p")
    );
    assert!(l.device_id.is_none() && l.id_prefix.is_none());
    let l =
        yaml("deviceId: short\ndevice:\n  id: nested\n  idPrefix: {}\nidPrefix:\n  prefix: p\n")
            .normalized();
    let device = l.device.expect("device");
    assert_eq!(device.id.as_deref(), Some("nested"));
    assert_eq!(
        device.id_prefix,
        Some(IdPrefixSection::default()),
        "a nested idPrefix is taken whole"
    );
}

#[test]
fn builder_only_options_are_refused_in_the_file() {
    let err =
        serde_yaml::from_str::<Layer>("heartbeatInterval: 10s\n").expect_err("not a file key");
    assert!(err.to_string().contains("heartbeatInterval"), "{err}");
}
