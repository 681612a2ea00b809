//! The `mir` command line.
//!
//! Layout:
//! - [`args`]: the command tree (clap derive), with help and examples.
//! - [`context`]: the CLI config file (`cli.yaml`), contexts and how the API URL is chosen.
//! - [`client`]: the HTTP API client, one function per route, typed with `mir_shared::api`.
//! - [`sigv4`]: SigV4 signing of API requests for aws contexts.
//! - [`output`]: tables, relative times, YAML/JSON printing, Mir-style result lines, charts.
//! - [`input`]: targets and flags parsing, payloads from a flag, stdin or `$EDITOR`.
//! - [`patch`]: JSON merge patches (RFC 7386) for `mir device update`.
//! - [`progress`]: progress bars and spinners, on a terminal only.
//! - [`commands`]: what each command does (devices, commands/config, telemetry, events,
//!   contexts, tools), over the client and the output helpers.
//! - [`local`]: `mir local`, the local hub.
//! - [`swarm`]: `mir swarm`, virtual devices from a swarm file on the real device SDK.
//!
//! Architecture: see docs/architecture.md in the repository (sections Layout, Profiles, Guides).

pub mod args;
pub mod client;
pub mod commands;
pub mod context;
pub mod input;
pub mod local;
pub mod output;
pub mod patch;
pub mod progress;
pub mod sigv4;
pub mod swarm;

pub use commands::run;
