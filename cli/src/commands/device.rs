//! `mir device ls|create|update|apply|edit|delete`.

use std::process::ExitCode;

use anyhow::{bail, Context as _};
use serde::Deserialize;

use mir_shared::domain::Twin;

use super::provision::{self, CertDir};
use super::{describe, out, resolve, resolve_one, status, Connection};
use crate::args::{
    DeviceApplyArgs, DeviceCommand, DeviceCreateArgs, DeviceDeleteArgs, DeviceEditArgs,
    DeviceListArgs, DeviceUpdateArgs, Output,
};
use crate::client::Client;
use crate::input;
use crate::output::{self, Table};
use crate::patch::{self, DeviceUpdate};

pub(super) async fn run(conn: &Connection, cmd: DeviceCommand) -> anyhow::Result<ExitCode> {
    if let DeviceCommand::Create(a) = &cmd {
        if a.template {
            out(&template_yaml()?)?;
            return Ok(ExitCode::SUCCESS);
        }
    }
    let client = conn.client()?;
    match cmd {
        DeviceCommand::Ls(a) => list(&client, a).await,
        DeviceCommand::Create(a) => create(&client, a, conn.device_endpoint()).await,
        DeviceCommand::Cert(a) => {
            provision::cert(&client, a, conn.device_endpoint().as_deref()).await
        }
        DeviceCommand::Update(a) => update(&client, a).await,
        DeviceCommand::Apply(a) => apply(&client, a).await,
        DeviceCommand::Edit(a) => edit(&client, a).await,
        DeviceCommand::Delete(a) => delete(&client, a).await,
        DeviceCommand::Command(_) | DeviceCommand::Config(_) | DeviceCommand::Telemetry(_) => {
            bail!("internal: routed elsewhere")
        }
    }
}

async fn list(client: &Client, a: DeviceListArgs) -> anyhow::Result<ExitCode> {
    let targets = input::targets(&a.targets)?;
    let devices = client.list_devices(&targets).await?.devices;
    let one_named = targets.names.len() + targets.ids.len() == 1
        && targets.namespaces.is_empty()
        && targets.labels.is_empty()
        && devices.len() == 1;
    let format = a.output.unwrap_or(if one_named {
        Output::Yaml
    } else {
        Output::Table
    });
    match format {
        Output::Json => out(&format!("{}\n", output::pretty_json(&devices)?))?,
        Output::Yaml => out(&output::yaml_docs(&devices)?)?,
        Output::Table => {
            if devices.is_empty() {
                eprintln!("{}", super::no_device(&targets));
            } else {
                out(&device_table(&devices, chrono::Utc::now()))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// NAME/NAMESPACE, DEVICE ID, ONLINE, LAST HEARTBEAT, LABELS.
pub(crate) fn device_table(devices: &[Twin], now: chrono::DateTime<chrono::Utc>) -> String {
    let mut t = Table::new([
        "NAME/NAMESPACE",
        "DEVICE ID",
        "ONLINE",
        "LAST HEARTBEAT",
        "LABELS",
    ]);
    for d in devices {
        let online = if d.spec.disabled {
            format!("{} (disabled)", d.status.online)
        } else {
            d.status.online.to_string()
        };
        t.row([
            d.display_name(),
            d.spec.device_id.clone(),
            online,
            output::relative_opt(d.status.last_heartbeat, now),
            output::labels(&d.meta.labels),
        ]);
    }
    t.render()
}

/// What `mir device create -j` prints: the editable part of a twin.
fn template_yaml() -> anyhow::Result<String> {
    let mut twin = Twin::default();
    twin.meta.name = "my-device".into();
    twin.meta.namespace = mir_shared::domain::twin::DEFAULT_NAMESPACE.into();
    twin.meta.labels.insert("type".into(), "sensor".into());
    twin.spec.device_id = "my-device".into();
    let mut value = serde_yaml::to_value(&twin)?;
    if let serde_yaml::Value::Mapping(m) = &mut value {
        m.remove("status");
    }
    Ok(serde_yaml::to_string(&value)?)
}

/// Parses one twin document.
fn parse_twin(text: &str, source: &str) -> anyhow::Result<Twin> {
    serde_yaml::from_str(text)
        .with_context(|| format!("{source} is not a valid twin (see `mir device create -j`)"))
}

async fn create(
    client: &Client,
    a: DeviceCreateArgs,
    device_endpoint: Option<String>,
) -> anyhow::Result<ExitCode> {
    let mut twin = match &a.file {
        Some(path) => parse_twin(&input::read_file_or_stdin(path)?, &path.display().to_string())?,
        None if a.id.is_none() => match input::piped_stdin()? {
            Some(text) if !text.trim().is_empty() => parse_twin(&text, "stdin")?,
            _ => bail!(
                "give the device id with --id, a twin with -f FILE or on stdin (template: `mir device create -j`)"
            ),
        },
        None => Twin::default(),
    };
    if let Some(id) = &a.id {
        twin.spec.device_id = id.clone();
    }
    if let Some(name) = &a.name {
        twin.meta.name = name.clone();
    }
    if let Some(ns) = &a.namespace {
        twin.meta.namespace = ns.clone();
    }
    twin.meta
        .labels
        .extend(input::key_values(&a.labels, "label")?);
    twin.meta
        .annotations
        .extend(input::key_values(&a.annotations, "annotation")?);
    if a.disabled {
        twin.spec.disabled = true;
    }
    if twin.spec.device_id.trim().is_empty() {
        bail!("the twin has no spec.deviceId: give --id");
    }
    let files = CertDir::new(&a.cert_dir);
    if a.provision {
        files.check(a.force)?;
    }
    let created = client.create_device(&twin).await?;
    out(&format!(
        "{} created (device id {})\n",
        created.display_name(),
        created.spec.device_id
    ))?;
    if a.provision {
        let done = provision::provision(
            client,
            &created.spec.device_id,
            &files,
            device_endpoint.as_deref(),
        )
        .await
        .context("the device was created but its certificate was not issued (retry with `mir device cert`)")?;
        out(&provision::summary(&done))?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn update(client: &Client, a: DeviceUpdateArgs) -> anyhow::Result<ExitCode> {
    let upd = DeviceUpdate {
        name: a.name,
        namespace: a.namespace,
        set_labels: input::key_values(&a.labels, "label")?,
        remove_labels: a.remove_labels,
        set_annotations: input::key_values(&a.annotations, "annotation")?,
        remove_annotations: a.remove_annotations,
        disabled: a.disabled,
    };
    if upd.is_empty() {
        bail!("nothing to update: give --label, --remove-label, --annotation, --name, --namespace or --disabled");
    }
    let targets = input::positional_targets(&[a.targets, a.target_flags].concat())?;
    let devices = resolve(client, &targets).await?;
    if upd.name.is_some() && devices.len() > 1 {
        bail!(
            "--name renames one device, but {} match {}",
            devices.len(),
            describe(&targets)
        );
    }
    let patch = upd.to_patch();
    let mut ok = true;
    for d in &devices {
        match client.patch_device(&d.spec.device_id, &patch).await {
            Ok(t) => out(&format!("{} updated\n", t.display_name()))?,
            Err(e) => {
                ok = false;
                eprintln!("{}: {e}", d.display_name());
            }
        }
    }
    Ok(status(ok))
}

/// The twins of a multi-document YAML text (empty documents skipped).
pub(crate) fn parse_twins(text: &str) -> anyhow::Result<Vec<Twin>> {
    let mut twins = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = serde_yaml::Value::deserialize(doc)
            .with_context(|| format!("document {} is not valid YAML", i + 1))?;
        if value.is_null() {
            continue;
        }
        let twin: Twin = serde_yaml::from_value(value)
            .with_context(|| format!("document {} is not a valid twin", i + 1))?;
        if twin.spec.device_id.trim().is_empty() {
            bail!("document {} has no spec.deviceId", i + 1);
        }
        twins.push(twin);
    }
    Ok(twins)
}

async fn apply(client: &Client, a: DeviceApplyArgs) -> anyhow::Result<ExitCode> {
    let text = input::read_file_or_stdin(&a.file)?;
    let twins = parse_twins(&text)?;
    if twins.is_empty() {
        bail!("{} holds no twin", a.file.display());
    }
    let mut ok = true;
    for twin in &twins {
        match client.apply_device(&twin.spec.device_id, twin).await {
            Ok(t) => out(&format!("{} applied\n", t.display_name()))?,
            Err(e) => {
                ok = false;
                eprintln!("{} ({}): {e}", twin.display_name(), twin.spec.device_id);
            }
        }
    }
    Ok(status(ok))
}

const EDIT_HEADER: &str = "# Edit the twin, save and quit to apply it; an empty file cancels.\n\
# Only meta, spec.disabled and properties.desired are editable.\n";

async fn edit(client: &Client, a: DeviceEditArgs) -> anyhow::Result<ExitCode> {
    let found = resolve_one(client, a.target.get()).await?;
    let original = client.get_device(&found.spec.device_id).await?;
    let text = format!("{EDIT_HEADER}{}", serde_yaml::to_string(&original)?);
    let file = input::TempFile::create(&text, "yaml")?;
    input::run_editor(&file.path)?;
    let edited_text = std::fs::read_to_string(&file.path)
        .with_context(|| format!("cannot read {}", file.path.display()))?;
    let meaningful = edited_text
        .lines()
        .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    if !meaningful {
        out("edit cancelled: nothing changed\n")?;
        return Ok(ExitCode::SUCCESS);
    }
    let edited: Twin = match serde_yaml::from_str(&edited_text) {
        Ok(t) => t,
        Err(e) => {
            let kept = file.keep();
            bail!(
                "the edited twin is not valid: {e}\nyour edit is kept in {}: fix it and run `mir device apply -f {}`",
                kept.display(),
                kept.display()
            );
        }
    };
    let ignored = patch::read_only_changes(&original, &edited);
    if !ignored.is_empty() {
        eprintln!(
            "note: {} cannot be edited (only meta, spec.disabled and properties.desired are); those changes are ignored",
            ignored.join(", ")
        );
    }
    if !patch::editable_changed(&original, &edited) {
        out(&format!("{} unchanged\n", original.display_name()))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut to_send = edited;
    to_send.spec.device_id = original.spec.device_id.clone();
    let updated = client
        .apply_device(&original.spec.device_id, &to_send)
        .await?;
    out(&format!("{} updated\n", updated.display_name()))?;
    Ok(ExitCode::SUCCESS)
}

async fn delete(client: &Client, a: DeviceDeleteArgs) -> anyhow::Result<ExitCode> {
    let targets = input::targets(&a.targets)?;
    if targets.is_all() {
        bail!("name the devices to delete, e.g. `mir device delete weather/default` or `mir device delete /namespace`");
    }
    let devices = resolve(client, &targets).await?;
    let mut ok = true;
    for d in &devices {
        match client.delete_device(&d.spec.device_id).await {
            Ok(()) => out(&format!("{} deleted\n", d.display_name()))?,
            Err(e) => {
                ok = false;
                eprintln!("{}: {e}", d.display_name());
            }
        }
    }
    Ok(status(ok))
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    #[test]
    fn the_device_table_shows_presence_and_labels() {
        let now = Utc
            .with_ymd_and_hms(2025, 1, 2, 12, 0, 0)
            .single()
            .expect("time");
        let mut a = Twin::default();
        a.meta.name = "weather".into();
        a.meta.namespace = "default".into();
        a.spec.device_id = "weather".into();
        a.status.online = true;
        a.status.last_heartbeat = Some(now - chrono::Duration::seconds(3));
        a.meta.labels.insert("type".into(), "sensor".into());
        let mut b = Twin::default();
        b.meta.name = "p".into();
        b.meta.namespace = "lab".into();
        b.spec.device_id = "power-1".into();
        b.spec.disabled = true;
        let table = device_table(&[a, b], now);
        assert_eq!(
            table,
            "NAME/NAMESPACE    DEVICE ID   ONLINE             LAST HEARTBEAT   LABELS\n\
             weather/default   weather     true               3s ago           type=sensor\n\
             p/lab             power-1     false (disabled)   never\n"
        );
    }

    #[test]
    fn the_template_is_a_valid_twin_without_status() {
        let yaml = template_yaml().expect("yaml");
        assert!(!yaml.contains("status"), "{yaml}");
        let twin = parse_twin(&yaml, "template").expect("parses");
        assert_eq!(twin.spec.device_id, "my-device");
    }

    #[test]
    fn multi_document_yaml_gives_each_twin() {
        let text = "spec:\n  deviceId: a\n---\n---\nmeta:\n  name: b\nspec:\n  deviceId: b\n";
        let twins = parse_twins(text).expect("ok");
        assert_eq!(twins.len(), 2);
        assert_eq!(twins[1].meta.name, "b");
        let e = parse_twins("meta:\n  name: x\n").expect_err("no id");
        assert_eq!(e.to_string(), "document 1 has no spec.deviceId");
        let err = parse_twins("spec:\n  deviceID: a\n").expect_err("typo");
        assert!(format!("{err:#}").contains("deviceID"), "{err:#}");
    }
}
