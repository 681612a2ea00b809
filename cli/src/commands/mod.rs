//! What each command does, over [`crate::client`] and [`crate::output`].

mod context;
mod device;
mod event;
mod message;
mod provision;
mod telemetry;
pub mod template;

use std::io::Write;
use std::process::ExitCode;

use anyhow::bail;
use clap::CommandFactory;

use mir_shared::domain::{NameRef, Targets, Twin};

use crate::args::{Cli, Command, DeviceCommand};
use crate::client::Client;
use crate::context::{config_path, CliConfig};

/// Runs a parsed command line. Errors are for the caller to print; the exit code says
/// whether every device succeeded.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let conn = Connection::from_flags(cli.api, cli.context, |k| std::env::var(k).ok());
    match cli.command {
        Command::Device(d) => match d.command {
            DeviceCommand::Command(c) => message::command(&conn, c).await,
            DeviceCommand::Config(c) => message::config(&conn, c).await,
            DeviceCommand::Telemetry(t) => telemetry::run(&conn, t).await,
            other => device::run(&conn, other).await,
        },
        Command::Command(c) => message::command(&conn, c).await,
        Command::Config(c) => message::config(&conn, c).await,
        Command::Telemetry(t) => telemetry::run(&conn, t).await,
        Command::Event(e) => event::run(&conn, e).await,
        Command::Context(c) => context::context(&conn, c),
        Command::Tools(crate::args::ToolsArgs {
            command:
                crate::args::ToolsCommand::Generate {
                    command: crate::args::GenerateCommand::DeviceTemplate(a),
                },
        }) => template::run(a),
        Command::Tools(t) => context::tools(t),
        Command::Completion { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "mir", &mut buf);
            out(&String::from_utf8_lossy(&buf))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Swarm(args) => crate::swarm::run(conn.client(), args).await,
        Command::Local(args) => {
            crate::local::run(args).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// How to reach the API: `--api`/`MIR_API`, `--context`, else the current context.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    api: Option<String>,
    context: Option<String>,
    /// `MIR_API_TOKEN`: the hub's bearer token, over the context's.
    token: Option<String>,
}

impl Connection {
    /// Priority: `--api`, `--context`, `MIR_API`, `MIR_CONTEXT`, the current context.
    fn from_flags(
        api: Option<String>,
        context: Option<String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Self {
        let env = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let token = env("MIR_API_TOKEN");
        match (api, context) {
            (Some(api), context) => Self {
                api: Some(api),
                context,
                token,
            },
            (None, Some(context)) => Self {
                api: None,
                context: Some(context),
                token,
            },
            (None, None) => Self {
                api: env("MIR_API"),
                context: env("MIR_CONTEXT"),
                token,
            },
        }
    }

    fn endpoint(&self) -> anyhow::Result<crate::context::Endpoint> {
        let cfg = CliConfig::load(&config_path()?)?;
        cfg.resolve(self.api.as_deref(), self.context.as_deref())
    }

    /// The devices' MQTT endpoint of the context, when it records one.
    fn device_endpoint(&self) -> Option<String> {
        self.endpoint().ok().and_then(|e| e.mqtt)
    }

    /// The console's address, when known (see `Endpoint::console`).
    fn console(&self) -> Option<String> {
        self.endpoint().ok().and_then(|e| e.console)
    }

    fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::for_endpoint(&self.endpoint()?, self.token.clone())?)
    }
}

/// Writes to stdout; a closed pipe (`mir ... | head`) is not an error.
pub(crate) fn out(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

pub(crate) fn status(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// How a selection reads in messages: `weather/default, /lab, labels k=v`.
pub(crate) fn describe(t: &Targets) -> String {
    if t.is_all() {
        return "any device".to_string();
    }
    let mut parts: Vec<String> = t.ids.iter().map(|i| format!("id {i}")).collect();
    parts.extend(t.names.iter().map(|n: &NameRef| match &n.namespace {
        Some(ns) => format!("{}/{ns}", n.name),
        None => n.name.clone(),
    }));
    parts.extend(t.namespaces.iter().map(|ns| format!("/{ns}")));
    if !t.labels.is_empty() {
        parts.push(format!("labels {}", crate::output::labels(&t.labels)));
    }
    parts.join(", ")
}

/// What to say when a selection is empty.
pub(crate) fn no_device(t: &Targets) -> String {
    if t.is_all() {
        "there are no devices yet: create one with `mir device create --id ID`, or connect one"
            .to_string()
    } else {
        format!(
            "no device matches {}; list devices with `mir device ls`",
            describe(t)
        )
    }
}

/// The devices of a selection; an error when there are none.
pub(crate) async fn resolve(client: &Client, targets: &Targets) -> anyhow::Result<Vec<Twin>> {
    let devices = client.list_devices(targets).await?.devices;
    if devices.is_empty() {
        bail!("{}", no_device(targets));
    }
    Ok(devices)
}

/// Why one device could not be picked out of an argument.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResolveError {
    #[error("{0}")]
    Target(#[from] mir_shared::domain::DomainError),
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
    #[error("no device {0:?}; list devices with `mir device ls`")]
    NoDevice(String),
    #[error("{arg:?} matches {} devices ({}): name one as name/namespace", .names.len(), .names.join(", "))]
    Ambiguous { arg: String, names: Vec<String> },
}

/// One device from `name/namespace`, `/namespace` (if it holds one device), a name or an id.
pub(crate) async fn resolve_one(client: &Client, arg: &str) -> Result<Twin, ResolveError> {
    let targets = single_target(arg)?;
    let mut devices = client.list_devices(&targets).await?.devices;
    match devices.len() {
        0 => Err(ResolveError::NoDevice(arg.to_string())),
        1 => Ok(devices.remove(0)),
        _ => Err(ResolveError::Ambiguous {
            arg: arg.to_string(),
            names: devices.iter().map(Twin::display_name).collect(),
        }),
    }
}

/// A single-device argument: with a `/`, Mir's target syntax; without, a name or an id.
pub(crate) fn single_target(arg: &str) -> Result<Targets, mir_shared::domain::DomainError> {
    let mut t = Targets::default();
    t.add_positional(arg)?;
    if !arg.contains('/') {
        t.ids.push(arg.trim().to_string());
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_target_without_namespace_is_a_name_or_an_id() {
        let t = single_target("weather").expect("ok");
        assert_eq!(t.ids, ["weather"]);
        assert_eq!(t.names[0].name, "weather");
        let t = single_target("weather/lab").expect("ok");
        assert!(t.ids.is_empty());
        assert_eq!(describe(&t), "weather/lab");
        let mut t = Targets::default();
        t.namespaces.push("lab".into());
        t.labels.insert("k".into(), "v".into());
        assert_eq!(describe(&t), "/lab, labels k=v");
        assert!(no_device(&Targets::all()).contains("no devices yet"));
    }

    #[test]
    fn flags_beat_the_environment_for_the_api() {
        let env = |k: &str| match k {
            "MIR_API" => Some("http://env".to_string()),
            "MIR_CONTEXT" => Some("envctx".to_string()),
            _ => None,
        };
        let c = Connection::from_flags(None, None, env);
        assert_eq!(
            (c.api.as_deref(), c.context.as_deref()),
            (Some("http://env"), Some("envctx"))
        );
        let c = Connection::from_flags(None, Some("prod".into()), env);
        assert_eq!(
            (c.api.as_deref(), c.context.as_deref()),
            (None, Some("prod"))
        );
        let c = Connection::from_flags(Some("http://flag".into()), None, env);
        assert_eq!(c.api.as_deref(), Some("http://flag"));
        let c = Connection::from_flags(None, None, |_| Some(" ".into()));
        assert_eq!((c.api, c.context), (None, None));
    }
}
