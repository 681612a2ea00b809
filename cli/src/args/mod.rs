//! The command tree: verbs, flags and aliases follow Mir's CLI.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::local::LocalArgs;

const ABOUT: &str = "A command line to operate the Mir ecosystem on AWS serverless";

const TARGET_HELP: &str =
    "Devices: name/namespace, name (any namespace), /namespace or */namespace";

#[derive(Debug, Parser)]
#[command(name = "mir", version, about = ABOUT, propagate_version = true)]
#[command(after_help = "Examples:
  mir local                                   # start the local hub
  mir device ls                               # list every device
  mir dev ls weather/default -o yaml          # print a device twin
  mir cmd send weather/default -n schema.v1.ActivateHVACCmd -p '{\"durationSec\": 5}'
  mir cfg send weather/default -n schema.v1.DataRateProp -c
  mir ctx                                     # list contexts")]
pub struct Cli {
    /// Base URL of the Mir API [env: MIR_API] (else the context's)
    #[arg(long, global = true, value_name = "URL")]
    pub api: Option<String>,

    /// Use this context instead of the current one [env: MIR_CONTEXT]
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,

    /// Log level of the CLI itself (error, warn, info, debug, trace; before the command,
    /// e.g. `mir --log-level debug dev ls`); logs go to stderr
    #[arg(
        long,
        env = "MIR_LOG_LEVEL",
        default_value = "warn",
        value_name = "LEVEL"
    )]
    pub log_level: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the fleet of Mir devices
    #[command(visible_alias = "dev")]
    Device(DeviceArgs),
    /// Send commands to devices and list the commands they accept
    #[command(visible_alias = "cmd")]
    Command(CommandArgs),
    /// Send configuration (desired properties) to devices
    #[command(visible_alias = "cfg")]
    Config(ConfigArgs),
    /// Explore the telemetry devices send
    #[command(visible_alias = "tlm")]
    Telemetry(TelemetryArgs),
    /// Explore the events Mir records (the audit trail)
    #[command(visible_alias = "evt")]
    Event(EventArgs),
    /// Set and list contexts (which Mir API to talk to)
    #[command(visible_alias = "ctx")]
    Context(ContextArgs),
    /// Various tools: the CLI configuration
    Tools(ToolsArgs),
    /// Print a shell completion script
    #[command(after_help = "Examples:
  mir completion bash > ~/.local/share/bash-completion/completions/mir
  mir completion zsh > \"${fpath[1]}/_mir\"
  mir completion fish > ~/.config/fish/completions/mir.fish")]
    Completion {
        /// The shell
        shell: clap_complete::Shell,
    },
    /// Run the local hub: MQTT broker, rules, functions and the HTTP API in one process
    Local(LocalArgs),
    /// Create virtual devices to mimic workload for test or demo purposes
    Swarm(crate::swarm::SwarmArgs),
}

/// Output format of listing commands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    #[default]
    Table,
    Yaml,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Output format
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Device selection shared by every command that works on several devices.
#[derive(Debug, Clone, Default, Args)]
pub struct TargetArgs {
    #[arg(help = TARGET_HELP, value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Same as the positional TARGET, as in Mir (repeatable)
    #[arg(long = "target", value_name = "TARGET")]
    pub target_flags: Vec<String>,
    /// Only devices with these labels (k=v,k2=v2; repeatable)
    #[arg(short, long = "label", value_name = "K=V,...")]
    pub labels: Vec<String>,
    /// Devices by id (a,b; repeatable)
    #[arg(long, value_name = "ID,...", value_delimiter = ',')]
    pub ids: Vec<String>,
    /// Every device of a namespace (repeatable)
    #[arg(long = "namespace", value_name = "NS")]
    pub namespaces: Vec<String>,
}

// ---- device ----

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  mir device ls                                  # every device
  mir device ls /default                         # devices of a namespace
  mir device ls weather/default -o yaml > w.yaml # the twin, to edit and apply
  mir device create --id weather --label site=lab
  mir device create -j > device.yaml; cat device.yaml | mir device create
  mir device apply -f w.yaml
  mir device edit weather/default
  mir device update weather/default --label floor=2 --remove-label old
  mir device delete weather/default")]
pub struct DeviceArgs {
    #[command(subcommand)]
    pub command: DeviceCommand,
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// List devices (a table, or the twins as YAML or JSON)
    #[command(visible_alias = "list")]
    Ls(DeviceListArgs),
    /// Create a device from flags or from a twin YAML (-f file or stdin)
    Create(DeviceCreateArgs),
    /// Update devices with flags (a JSON merge patch)
    Update(DeviceUpdateArgs),
    /// Create or replace devices from twin YAML documents (meta, spec.disabled, desired)
    Apply(DeviceApplyArgs),
    /// Edit a device twin in $EDITOR
    Edit(DeviceEditArgs),
    /// Delete devices
    #[command(visible_alias = "rm")]
    Delete(DeviceDeleteArgs),
    /// Issue a new certificate for a device (the key is generated here, only a CSR is sent)
    Cert(DeviceCertArgs),
    /// Send commands to devices (same as `mir command`)
    #[command(visible_alias = "cmd")]
    Command(CommandArgs),
    /// Send configuration to devices (same as `mir config`)
    #[command(visible_alias = "cfg")]
    Config(ConfigArgs),
    /// Explore telemetry (same as `mir telemetry`)
    #[command(visible_alias = "tlm")]
    Telemetry(TelemetryArgs),
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  mir device ls
  mir device ls weather/default -o yaml
  mir device ls /factory --label type=hvac -o json

As in Mir, naming one device (`mir device ls power`) prints its twin as YAML;
a selection prints a table.")]
pub struct DeviceListArgs {
    #[command(flatten)]
    pub targets: TargetArgs,
    /// Output format (default: the twin as YAML when one device is named, else a table)
    #[arg(short, long, value_enum)]
    pub output: Option<Output>,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  mir device create --id weather --namespace lab --label type=sensor
  mir device create -j > device.yaml      # a template twin
  mir device create -f device.yaml
  cat device.yaml | mir device create
  mir device create --id weather --provision --cert-dir ./certs")]
pub struct DeviceCreateArgs {
    /// Device id (AWS thing name: letters, digits, ':', '_', '-')
    #[arg(long)]
    pub id: Option<String>,
    /// Name (default: the id)
    #[arg(long)]
    pub name: Option<String>,
    /// Namespace (default: default)
    #[arg(long)]
    pub namespace: Option<String>,
    /// Label k=v (repeatable, or k=v,k2=v2)
    #[arg(short, long = "label", value_name = "K=V")]
    pub labels: Vec<String>,
    /// Annotation k=v (repeatable)
    #[arg(long = "annotation", value_name = "K=V")]
    pub annotations: Vec<String>,
    /// Create the device disabled
    #[arg(long)]
    pub disabled: bool,
    /// Twin YAML file ('-' for stdin)
    #[arg(short, long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Print a template twin YAML and exit
    #[arg(short = 'j', long = "template")]
    pub template: bool,
    /// Also issue a certificate: the key pair is generated here and only a CSR is sent;
    /// writes tls.crt, tls.key (0600), ca.crt and a device.yaml for the SDK
    #[arg(long)]
    pub provision: bool,
    /// Where --provision writes the files
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub cert_dir: PathBuf,
    /// Overwrite existing certificate files
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
#[command(
    after_help = "The key pair is generated on this machine; only a certificate signing
request goes to the API. Writes tls.crt, tls.key (mode 0600), ca.crt and device.yaml
(the SDK configuration: target, files, device id) in --cert-dir.

Examples:
  mir device cert weather/default --cert-dir ./weather-certs
  mir device cert weather --cert-dir ./weather-certs --force   # rotate"
)]
pub struct DeviceCertArgs {
    #[command(flatten)]
    pub targets: TargetArgs,
    /// Where to write the files
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub cert_dir: PathBuf,
    /// Overwrite existing files
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  mir device update weather/default --label floor=2,room=12
  mir device update weather/default --remove-label floor
  mir device update weather/default --disabled true
  mir device update weather/default --name weather-1 --namespace lab")]
pub struct DeviceUpdateArgs {
    #[arg(help = TARGET_HELP, value_name = "TARGET", required_unless_present = "target_flags")]
    pub targets: Vec<String>,
    /// Same as the positional TARGET, as in Mir (repeatable)
    #[arg(long = "target", value_name = "TARGET")]
    pub target_flags: Vec<String>,
    /// Set labels k=v (repeatable, or k=v,k2=v2)
    #[arg(short, long = "label", value_name = "K=V")]
    pub labels: Vec<String>,
    /// Remove labels (repeatable, or a,b)
    #[arg(long = "remove-label", value_name = "KEY", value_delimiter = ',')]
    pub remove_labels: Vec<String>,
    /// Set annotations k=v (repeatable)
    #[arg(long = "annotation", value_name = "K=V")]
    pub annotations: Vec<String>,
    /// Remove annotations (repeatable, or a,b)
    #[arg(long = "remove-annotation", value_name = "KEY", value_delimiter = ',')]
    pub remove_annotations: Vec<String>,
    /// New name (one device only)
    #[arg(long)]
    pub name: Option<String>,
    /// New namespace
    #[arg(long)]
    pub namespace: Option<String>,
    /// Disable or enable the devices
    #[arg(long, value_name = "BOOL")]
    pub disabled: Option<bool>,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  mir device ls weather/default -o yaml > weather.yaml
  # edit weather.yaml, then
  mir device apply -f weather.yaml
  cat devices.yaml | mir device apply -f -")]
pub struct DeviceApplyArgs {
    /// Twin YAML file, several documents separated by '---' ('-' for stdin)
    #[arg(short, long, value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Only meta, spec.disabled and properties.desired are editable.

Examples:
  mir device edit weather/default
  EDITOR=nano mir device edit weather"
)]
pub struct DeviceEditArgs {
    #[command(flatten)]
    pub target: OneTarget,
}

/// One device, given as the positional TARGET or as `--target` (as in Mir).
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct OneTarget {
    #[arg(help = TARGET_HELP, value_name = "TARGET")]
    positional: Option<String>,
    /// Same as the positional TARGET, as in Mir
    #[arg(long = "target", value_name = "TARGET")]
    flag: Option<String>,
}

impl OneTarget {
    /// The device selector, whichever way it was given.
    pub fn get(&self) -> &str {
        self.positional
            .as_deref()
            .or(self.flag.as_deref())
            .unwrap_or_default()
    }
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  mir device delete weather/default
  mir device delete /lab --label type=test")]
pub struct DeviceDeleteArgs {
    #[command(flatten)]
    pub targets: TargetArgs,
}

// ---- commands and config ----

#[derive(Debug, Args)]
pub struct CommandArgs {
    #[command(subcommand)]
    pub command: CommandCommand,
}

#[derive(Debug, Subcommand)]
pub enum CommandCommand {
    /// Send a command (without -n: list the commands of each device)
    #[command(after_help = "Examples:
  mir cmd send weather                                        # list commands
  mir cmd send weather/default -n schema.v1.ActivateHVACCmd -j  # payload template
  mir cmd send weather/default -n schema.v1.ActivateHVACCmd -p '{\"durationSec\": 5}'
  cat payload.json | mir cmd send weather/default -n schema.v1.ActivateHVACCmd
  mir cmd send weather/default -n schema.v1.ActivateHVACCmd -e  # edit, then send
  mir cmd send /default -n schema.v1.ActivateHVACCmd --dry-run")]
    Send(CommandSendArgs),
    /// List the commands each device accepts
    #[command(visible_alias = "list")]
    Ls(MessageListArgs),
    /// Show one sent command (e.g. after --no-wait)
    Get {
        /// Command id
        id: String,
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// What `cmd send` and `cfg send` share.
#[derive(Debug, Clone, Args)]
pub struct MessageSendArgs {
    #[command(flatten)]
    pub targets: TargetArgs,
    /// Full name of the message (e.g. schema.v1.ActivateHVACCmd)
    #[arg(short, long)]
    pub name: Option<String>,
    /// JSON payload (else piped stdin, else {})
    #[arg(short, long, value_name = "JSON")]
    pub payload: Option<String>,
    /// Edit the payload in $EDITOR, starting from the template, then send it
    #[arg(short, long, conflicts_with = "payload")]
    pub edit: bool,
    /// Print the JSON template of -n and exit
    #[arg(short = 'j', long = "template")]
    pub template: bool,
    /// Validate only: nothing reaches the devices
    #[arg(long)]
    pub dry_run: bool,
    /// Ask the devices to resend their schema first
    #[arg(short, long)]
    pub refresh: bool,
    /// Send to every device: required when no TARGET, label, id or namespace is given
    #[arg(long = "all")]
    pub all_devices: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct CommandSendArgs {
    #[command(flatten)]
    pub send: MessageSendArgs,
    /// How long to wait for the devices' answers (e.g. 10s, 500ms; at most 25s)
    #[arg(short, long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Do not wait: print command ids to look at later with `mir cmd get`
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Args)]
pub struct MessageListArgs {
    #[command(flatten)]
    pub targets: TargetArgs,
    /// Ask the devices to resend their schema first
    #[arg(short, long)]
    pub refresh: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Send configuration (without -n: list the config messages of each device)
    #[command(after_help = "Examples:
  mir cfg send weather                                       # list config messages
  mir cfg send weather/default -n schema.v1.DataRateProp -c  # current desired value
  mir cfg send weather/default -n schema.v1.DataRateProp -j  # payload template
  mir cfg send weather/default -n schema.v1.DataRateProp -p '{\"sec\": 5}'
  cat rate.json | mir cfg send weather/default -n schema.v1.DataRateProp
  mir cfg send weather/default -n schema.v1.DataRateProp -e")]
    Send(ConfigSendArgs),
    /// List the config messages each device accepts
    #[command(visible_alias = "list")]
    Ls(MessageListArgs),
}

#[derive(Debug, Args)]
pub struct ConfigSendArgs {
    #[command(flatten)]
    pub send: MessageSendArgs,
    /// Print the current desired value of -n (or its template when none) and exit
    #[arg(short, long)]
    pub current: bool,
}

// ---- telemetry ----

#[derive(Debug, Args)]
pub struct TelemetryArgs {
    #[command(subcommand)]
    pub command: TelemetryCommand,
}

#[derive(Debug, Subcommand)]
pub enum TelemetryCommand {
    /// List the telemetry messages of each device, with what is stored
    #[command(visible_alias = "ls")]
    #[command(after_help = "Examples:
  mir tlm list weather/default
  mir tlm list /default -o json")]
    List(MessageListArgs),
    /// Show recent values of one telemetry message of one device
    #[command(after_help = "Examples:
  mir tlm query weather/default -n schema.v1.Env --since 15m
  mir tlm query weather -n schema.v1.Env --since 2h --limit 500 --chart temperature")]
    Query(TelemetryQueryArgs),
}

#[derive(Debug, Args)]
pub struct TelemetryQueryArgs {
    #[command(flatten)]
    pub target: OneTarget,
    /// Full name of the telemetry message
    #[arg(short, long)]
    pub name: String,
    /// How far back: 30s, 15m, 2h, 7d or an RFC 3339 time
    #[arg(short, long, default_value = "15m")]
    pub since: String,
    /// The newest this many rows (the API pages of at most 10,000 are followed)
    #[arg(long)]
    pub limit: Option<usize>,
    /// Also draw a line chart of this numeric field
    #[arg(long, value_name = "FIELD")]
    pub chart: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

// ---- events ----

#[derive(Debug, Args)]
pub struct EventArgs {
    #[command(subcommand)]
    pub command: EventCommand,
}

#[derive(Debug, Subcommand)]
pub enum EventCommand {
    /// List events, newest first
    #[command(visible_alias = "list")]
    #[command(after_help = "Examples:
  mir evt ls
  mir evt ls --device weather/default --since 1h
  mir evt ls --reason CommandFailed --limit 20 -o yaml
  mir evt ls --since 2d --until 1d --limit 5000")]
    Ls(EventListArgs),
    /// Stream events as they are recorded (Ctrl-C stops)
    #[command(
        after_help = "A local hub streams its feed; on an aws context the command polls GET /v1/events once a second (one API request per second), from the events recorded after it starts, and says on stderr when it fell behind.

Examples:
  mir evt watch
  mir evt watch --reason DeviceOffline
  mir evt watch --namespace lab -l site=roof -o json"
    )]
    Watch(EventWatchArgs),
}

/// The filters of `mir evt ls` and a device selection by namespace and labels.
#[derive(Debug, Args)]
pub struct EventWatchArgs {
    /// Only this device: name/namespace, name or id
    #[arg(short, long, value_name = "TARGET")]
    pub device: Option<String>,
    /// Only this reason (e.g. DeviceOnline, CommandFailed)
    #[arg(short, long)]
    pub reason: Option<String>,
    /// Only devices of this namespace
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Only devices with these labels (k=v,k2=v2; repeatable)
    #[arg(short, long = "label", value_name = "K=V,...")]
    pub labels: Vec<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct EventListArgs {
    /// Only this device: name/namespace, name or id
    #[arg(short, long, value_name = "TARGET")]
    pub device: Option<String>,
    /// Only this reason (e.g. DeviceOnline, CommandFailed)
    #[arg(short, long)]
    pub reason: Option<String>,
    /// How far back: 30s, 15m, 2h, 7d or an RFC 3339 time
    #[arg(short, long)]
    pub since: Option<String>,
    /// Only events before this: 30s, 15m, 2h, 7d (ago) or an RFC 3339 time
    #[arg(short, long)]
    pub until: Option<String>,
    /// At most this many events, read in as many pages as it takes
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    #[command(flatten)]
    pub output: OutputArgs,
}

// ---- contexts and tools ----

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
#[command(after_help = "Examples:
  mir ctx                                   # list contexts, * marks the current one
  mir ctx prod                              # switch to the context prod
  mir ctx add staging --api http://10.0.0.5:8180
  mir ctx add prod --kind aws --region eu-west-1 --api https://abc.execute-api.eu-west-1.amazonaws.com
  mir ctx import --outputs cdk-outputs.json      # an aws context from `cdk deploy`")]
pub struct ContextArgs {
    /// Switch to this context
    pub name: Option<String>,
    #[command(subcommand)]
    pub command: Option<ContextCommand>,
}

/// Kind of Mir deployment a context points to.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ContextKind {
    #[default]
    Local,
    Localstack,
    Aws,
}

#[derive(Debug, Subcommand)]
pub enum ContextCommand {
    /// Add (or replace) a context
    Add {
        name: String,
        /// Base URL of the Mir API
        #[arg(long, value_name = "URL")]
        api: String,
        #[arg(long, value_enum, default_value_t = ContextKind::Local)]
        kind: ContextKind,
        /// AWS region (aws)
        #[arg(long)]
        region: Option<String>,
        /// AWS profile (aws)
        #[arg(long)]
        profile: Option<String>,
        /// Bearer token of a hub bound beyond loopback (its access.apiToken)
        #[arg(long)]
        token: Option<String>,
        /// The console's address (default: the API's `/`, where a hub serves it)
        #[arg(long, value_name = "URL")]
        console: Option<String>,
        /// Also switch to it
        #[arg(long = "use")]
        use_it: bool,
    },
    /// Add an aws context from `cdk deploy --outputs-file` (stacks mir-<stage>-*)
    #[command(after_help = "Examples:
  cdk deploy --all --outputs-file cdk-outputs.json
  mir ctx import --outputs cdk-outputs.json               # context mir-<stage>, now current
  mir ctx import --outputs cdk-outputs.json --name prod --stage prod --profile ops")]
    Import {
        /// The CDK outputs JSON file
        #[arg(long, value_name = "FILE", default_value = "cdk-outputs.json")]
        outputs: PathBuf,
        /// Context name (default: mir-<stage>)
        #[arg(long)]
        name: Option<String>,
        /// The stage, when the file holds several
        #[arg(long)]
        stage: Option<String>,
        /// AWS profile used to sign requests (else the standard credential chain)
        #[arg(long)]
        profile: Option<String>,
        /// Do not switch to the new context
        #[arg(long)]
        no_use: bool,
    },
    /// Remove a context
    #[command(visible_alias = "rm")]
    Remove { name: String },
}

#[derive(Debug, Args)]
pub struct ToolsArgs {
    #[command(subcommand)]
    pub command: ToolsCommand,
}

#[derive(Debug, Subcommand)]
pub enum ToolsCommand {
    /// View and edit the CLI configuration (contexts)
    #[command(visible_alias = "cfg")]
    Config {
        #[command(subcommand)]
        command: ToolsConfigCommand,
    },
    /// Generate projects and files
    Generate {
        #[command(subcommand)]
        command: GenerateCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// A new Rust device project on the Mir device SDK
    DeviceTemplate(crate::commands::template::DeviceTemplateArgs),
}

#[derive(Debug, Subcommand)]
pub enum ToolsConfigCommand {
    /// Print the configuration file (or the defaults when there is none)
    Print,
    /// Print where the configuration file is
    Path,
    /// Edit the configuration file in $EDITOR; it is saved only if it is still valid
    Edit,
}

#[cfg(test)]
mod tests;
