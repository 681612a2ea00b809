//! `mir local`: the local hub (being written by the lead).

/// Options of `mir local`.
#[derive(Debug, Clone, clap::Args)]
pub struct LocalArgs {}

/// Runs the hub until Ctrl-C.
pub async fn run(_args: LocalArgs) -> anyhow::Result<()> {
    anyhow::bail!("the local hub is not written yet")
}
