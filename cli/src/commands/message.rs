//! `mir command` and `mir config`: the same flow (list, template, payload, send) over
//! two kinds of messages.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use serde_json::Value;

use mir_shared::api::{Catalog, ConfigStatus, MessageInfo, SendCommand, SendConfig};
use mir_shared::domain::{CommandStatus, Targets};

use super::{describe, no_device, out, resolve, status, Connection};
use crate::args::{
    CommandArgs, CommandCommand, ConfigArgs, ConfigCommand, MessageListArgs, MessageSendArgs,
    Output,
};
use crate::client::Client;
use crate::input;
use crate::output;

/// How long devices get to resend their schema after `-r`.
const REFRESH_WAIT: Duration = Duration::from_secs(1);
/// The API waits at most this long for command answers.
const MAX_COMMAND_TIMEOUT: Duration = Duration::from_secs(25);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Command,
    Config,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Command => "command",
            Kind::Config => "config",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Kind::Command => "commands",
            Kind::Config => "config messages",
        }
    }

    fn cli(self) -> &'static str {
        match self {
            Kind::Command => "cmd",
            Kind::Config => "cfg",
        }
    }

    async fn catalog(
        self,
        client: &Client,
        targets: &Targets,
        name: Option<&str>,
    ) -> anyhow::Result<Catalog> {
        Ok(match self {
            Kind::Command => client.command_catalog(targets).await?,
            Kind::Config => client.config_catalog(targets, name).await?,
        })
    }
}

pub(super) async fn command(conn: &Connection, args: CommandArgs) -> anyhow::Result<ExitCode> {
    let client = conn.client()?;
    match args.command {
        CommandCommand::Ls(a) => list(&client, Kind::Command, a).await,
        CommandCommand::Get { id, output } => {
            let rec = client.get_command(&id).await?;
            let text = match output.output {
                Output::Yaml => output::document(&rec, true)?,
                Output::Json => output::document(&rec, false)?,
                Output::Table => {
                    let r = mir_shared::api::CommandResult {
                        device_id: rec.device_id.clone(),
                        name: rec.device_name.clone(),
                        namespace: rec.namespace.clone(),
                        command_id: Some(rec.id.clone()),
                        status: rec.status,
                        response_name: rec.response_name.clone(),
                        response: rec.response.clone(),
                        error: rec.error.clone(),
                    };
                    output::command_result(1, &r)?
                }
            };
            out(&text)?;
            Ok(status(rec.status.is_final()))
        }
        CommandCommand::Send(a) => {
            let timeout_ms = match &a.timeout {
                Some(t) => {
                    let d = input::parse_duration(t)?;
                    if d.is_zero() || d > MAX_COMMAND_TIMEOUT {
                        bail!("--timeout must be between 1ms and 25s (the time the devices have to answer; --no-wait returns at once with ids to poll)");
                    }
                    Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                }
                None => None,
            };
            send(
                &client,
                Kind::Command,
                a.send,
                Extra::Command {
                    timeout_ms,
                    no_wait: a.no_wait,
                },
            )
            .await
        }
    }
}

pub(super) async fn config(conn: &Connection, args: ConfigArgs) -> anyhow::Result<ExitCode> {
    let client = conn.client()?;
    match args.command {
        ConfigCommand::Ls(a) => list(&client, Kind::Config, a).await,
        ConfigCommand::Send(a) => {
            send(
                &client,
                Kind::Config,
                a.send,
                Extra::Config { current: a.current },
            )
            .await
        }
    }
}

/// Asks each device of the selection to resend its schema, then gives them a moment.
pub(super) async fn refresh(client: &Client, targets: &Targets) -> anyhow::Result<()> {
    let devices = resolve(client, targets).await?;
    for d in &devices {
        if let Err(e) = client.refresh_schema(&d.spec.device_id).await {
            eprintln!("{}: schema refresh failed: {e}", d.display_name());
        }
    }
    tokio::time::sleep(REFRESH_WAIT).await;
    Ok(())
}

async fn list(client: &Client, kind: Kind, a: MessageListArgs) -> anyhow::Result<ExitCode> {
    let targets = input::targets(&a.targets)?;
    if a.refresh {
        refresh(client, &targets).await?;
    }
    let catalog = kind.catalog(client, &targets, None).await?;
    print_catalog(kind, &catalog, &targets, a.output.output)
}

fn print_catalog(
    kind: Kind,
    catalog: &Catalog,
    targets: &Targets,
    format: Output,
) -> anyhow::Result<ExitCode> {
    match format {
        Output::Yaml => out(&output::document(catalog, true)?)?,
        Output::Json => out(&output::document(catalog, false)?)?,
        Output::Table => {
            if catalog.devices.is_empty() {
                bail!("{}", no_device(targets));
            }
            out(&catalog_text(kind, catalog))?;
            if catalog.devices.iter().any(|d| d.messages.is_empty()) {
                eprintln!(
                    "tip: if a device's {} are missing, use -r to refresh its schema",
                    kind.plural()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `1. weather/default` then `schema.v1.ActivateHVACCmd{}` per message, like Mir.
fn catalog_text(kind: Kind, catalog: &Catalog) -> String {
    let mut text = String::new();
    for (i, d) in catalog.devices.iter().enumerate() {
        text.push_str(&format!("{}. {}/{}\n", i + 1, d.name, d.namespace));
        for m in &d.messages {
            text.push_str(&output::message_line(&m.name));
            text.push('\n');
        }
        if d.messages.is_empty() {
            match &d.error {
                Some(e) => text.push_str(&format!("({e})\n")),
                None => text.push_str(&format!("(no {})\n", kind.plural())),
            }
        }
    }
    text
}

/// The message `name` in a catalog (the first device that offers it), else an error
/// listing the names known.
fn find_message<'a>(
    kind: Kind,
    catalog: &'a Catalog,
    name: &str,
    targets: &Targets,
) -> anyhow::Result<&'a MessageInfo> {
    if catalog.devices.is_empty() {
        bail!("{}", no_device(targets));
    }
    if let Some(m) = catalog
        .devices
        .iter()
        .flat_map(|d| &d.messages)
        .find(|m| m.name == name)
    {
        return Ok(m);
    }
    let mut known: Vec<&str> = catalog
        .devices
        .iter()
        .flat_map(|d| &d.messages)
        .map(|m| m.name.as_str())
        .collect();
    known.sort_unstable();
    known.dedup();
    let known = if known.is_empty() {
        "none (use -r to refresh the schema)".to_string()
    } else {
        known.join(", ")
    };
    bail!(
        "no device of {} accepts the {} {name}; known: {known}",
        describe(targets),
        kind.noun()
    )
}

/// What only one kind of message has.
enum Extra {
    Command {
        timeout_ms: Option<u64>,
        no_wait: bool,
    },
    Config {
        current: bool,
    },
}

async fn send(
    client: &Client,
    kind: Kind,
    a: MessageSendArgs,
    extra: Extra,
) -> anyhow::Result<ExitCode> {
    let targets = input::targets(&a.targets)?;
    if a.refresh {
        refresh(client, &targets).await?;
    }
    let current = matches!(extra, Extra::Config { current: true });
    let Some(name) = a.name.clone() else {
        if a.template || current || a.edit || a.payload.is_some() {
            bail!(
                "give the {} name with -n (list them with `mir {} send TARGET`)",
                kind.noun(),
                kind.cli()
            );
        }
        let catalog = kind.catalog(client, &targets, None).await?;
        return print_catalog(kind, &catalog, &targets, a.output.output);
    };

    // The catalog is needed only to print a template or a value, or to start an edit.
    let info = if a.template || current || a.edit {
        let catalog = kind.catalog(client, &targets, Some(&name)).await?;
        Some(find_message(kind, &catalog, &name, &targets)?.clone())
    } else {
        None
    };
    if let Some(info) = &info {
        if a.template {
            out(&format!("{}\n", output::pretty_json(&info.template)?))?;
            return Ok(ExitCode::SUCCESS);
        }
        if current {
            let value = info.desired.as_ref().unwrap_or(&info.template);
            out(&format!("{}\n", output::pretty_json(value)?))?;
            return Ok(ExitCode::SUCCESS);
        }
    }
    if targets.is_all() != a.all_devices {
        bail!(if a.all_devices {
            "--all sends to every device: give it without TARGET, --label, --ids or --namespace"
        } else {
            "no TARGET: name the devices (TARGET, --label, --ids, --namespace), or pass --all to send to every device"
        });
    }
    let payload = input::payload(a.payload.as_deref(), a.edit, || {
        Ok(info
            .as_ref()
            .map(|i| i.desired.clone().unwrap_or_else(|| i.template.clone()))
            .unwrap_or(Value::Object(Default::default())))
    })?;

    match extra {
        Extra::Command {
            timeout_ms,
            no_wait,
        } => {
            let req = SendCommand {
                targets: targets.clone(),
                all_devices: a.all_devices,
                name,
                payload,
                dry_run: a.dry_run,
                timeout_ms,
                no_wait,
            };
            let waiting = bulk_spinner(&targets, &req.name, "waiting for the devices' answers");
            let results = client.send_command(&req).await;
            waiting.finish_and_clear();
            let results = results?.results;
            if results.is_empty() {
                bail!("{}", no_device(&targets));
            }
            if a.output.output != Output::Table {
                out(&output::document(
                    &mir_shared::api::CommandResults {
                        results: results.clone(),
                    },
                    a.output.output == Output::Yaml,
                )?)?;
            } else {
                for (i, r) in results.iter().enumerate() {
                    out(&output::command_result(i + 1, r)?)?;
                }
            }
            let ok = results.iter().all(|r| match r.status {
                CommandStatus::Success => true,
                CommandStatus::Validated => a.dry_run,
                CommandStatus::Pending => no_wait,
                CommandStatus::Error | CommandStatus::Timeout => false,
            });
            Ok(status(ok))
        }
        Extra::Config { .. } => {
            let req = SendConfig {
                targets: targets.clone(),
                all_devices: a.all_devices,
                name: name.clone(),
                payload,
                dry_run: a.dry_run,
            };
            let waiting = bulk_spinner(&targets, &req.name, "storing and sending");
            let results = client.send_config(&req).await;
            waiting.finish_and_clear();
            let results = results?.results;
            if results.is_empty() {
                bail!("{}", no_device(&targets));
            }
            if a.output.output != Output::Table {
                out(&output::document(
                    &mir_shared::api::ConfigResults {
                        results: results.clone(),
                    },
                    a.output.output == Output::Yaml,
                )?)?;
            } else {
                for (i, r) in results.iter().enumerate() {
                    out(&output::config_result(i + 1, &name, r)?)?;
                }
            }
            let ok = results.iter().all(|r| match r.status {
                ConfigStatus::Sent | ConfigStatus::Stored => true,
                ConfigStatus::Validated => a.dry_run,
                ConfigStatus::Error => false,
            });
            Ok(status(ok))
        }
    }
}

/// Whether a selection may hold many devices (anything but one name or one id).
fn is_bulk(targets: &Targets) -> bool {
    targets.names.len() + targets.ids.len() != 1
        || !targets.namespaces.is_empty()
        || !targets.labels.is_empty()
}

/// A spinner while a send to many devices runs (on a terminal only).
fn bulk_spinner(targets: &Targets, name: &str, doing: &str) -> indicatif::ProgressBar {
    crate::progress::spinner(
        format!("{name} to {}: {doing}", describe(targets)),
        is_bulk(targets) && crate::progress::on_terminal(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use mir_shared::api::DeviceCatalog;

    #[test]
    fn a_selection_beyond_one_named_device_is_a_bulk_send() {
        let one = crate::commands::single_target("weather/default").expect("target");
        assert!(!is_bulk(&one));
        let mut ns = Targets::default();
        ns.namespaces.push("factory".into());
        assert!(is_bulk(&ns));
        assert!(is_bulk(&Targets::default()), "the whole fleet");
    }
    use serde_json::json;

    fn catalog() -> Catalog {
        Catalog {
            devices: vec![
                DeviceCatalog {
                    device_id: "weather".into(),
                    name: "weather".into(),
                    namespace: "default".into(),
                    messages: vec![MessageInfo {
                        name: "schema.v1.ActivateHVACCmd".into(),
                        template: json!({"durationSec": 0}),
                        desired: None,
                    }],
                    error: None,
                },
                DeviceCatalog {
                    device_id: "p".into(),
                    name: "p".into(),
                    namespace: "lab".into(),
                    messages: vec![],
                    error: Some("no schema yet".into()),
                },
            ],
        }
    }

    #[test]
    fn the_catalog_lists_messages_like_mir() {
        assert_eq!(
            catalog_text(Kind::Command, &catalog()),
            "1. weather/default\nschema.v1.ActivateHVACCmd{}\n2. p/lab\n(no schema yet)\n"
        );
    }

    #[test]
    fn an_unknown_message_lists_the_known_ones() {
        let t = Targets::default();
        let c = catalog();
        let found = find_message(Kind::Command, &c, "schema.v1.ActivateHVACCmd", &t)
            .expect("offered by weather");
        assert_eq!(found.template, json!({"durationSec": 0}));
        let err = find_message(Kind::Command, &catalog(), "x.Nope", &t).expect_err("unknown");
        assert!(
            err.to_string().contains("known: schema.v1.ActivateHVACCmd"),
            "{err}"
        );
    }
}
