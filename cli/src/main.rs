//! The `mir` binary.

use std::process::ExitCode;

use clap::Parser;

use mir_cli::args::{Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // `mir local` sets up its own logs.
    if !matches!(cli.command, Command::Local(_)) {
        let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level)
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
    match mir_cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
