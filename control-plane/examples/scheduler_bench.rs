//! Runs the scheduler benchmark: `cargo run --release -p coxswain-control-plane
//! --example scheduler_bench -- [NODES] [GPUS_PER_NODE] [PODS] [PERCENT_OF_NODES_TO_SCORE]`
//! (default 5000 8 50000, adaptive).

use coxswain_control_plane::scheduler::bench::{BenchConfig, run_bench};

fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let get = |i: usize, d: usize| args.get(i).copied().unwrap_or(d);
    let mut config = BenchConfig::new(get(0, 5000), get(1, 8), get(2, 50_000));
    config.percentage_of_nodes_to_score = args.get(3).map(|&p| p as u32);
    let summary = run_bench(&config);
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}
