//! `cox bench`: benchmarks whose figures go into docs/benchmarks.md.

use clap::Args;

/// Arguments of `cox bench`.
#[derive(Args)]
pub struct BenchArgs {}

/// Runs `cox bench`.
pub fn run(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("cox bench: no benchmark is built yet")
}
