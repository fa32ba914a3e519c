//! `cox sim`: the placement simulator.

use clap::Args;

/// Arguments of `cox sim`.
#[derive(Args)]
pub struct SimArgs {}

/// Runs `cox sim`.
pub fn run(_args: SimArgs) -> anyhow::Result<()> {
    anyhow::bail!("cox sim: the simulator is not built yet")
}
