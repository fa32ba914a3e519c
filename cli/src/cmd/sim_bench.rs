//! `cox sim bench`: the scheduler framework over hollow nodes with a synthetic workload mix
//! (1/2/4/8-GPU pods, fractional pods, gangs, priorities), reporting throughput and per-pod
//! decision latency.

use clap::Args;
use coxswain_control_plane::scheduler::bench::{BenchConfig, run_bench};

/// Arguments of `cox sim bench`.
#[derive(Args)]
pub struct SimBenchArgs {
    /// Hollow nodes (DGX H100 template: racks of 32, blocks of 8 racks).
    #[arg(long, default_value_t = 5_000)]
    nodes: usize,
    /// GPUs per node.
    #[arg(long, default_value_t = 8)]
    gpus_per_node: usize,
    /// Pods to submit, gang members included.
    #[arg(long, default_value_t = 50_000)]
    pods: usize,
    /// Workload seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Share of feasible nodes scored per pod, as kube-scheduler's
    /// percentageOfNodesToScore [default: kube's adaptive rule].
    #[arg(long)]
    percentage_of_nodes_to_score: Option<u32>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

/// Runs `cox sim bench`.
pub fn run(args: SimBenchArgs) -> anyhow::Result<()> {
    if args.nodes == 0 || args.gpus_per_node == 0 || args.pods == 0 {
        anyhow::bail!("--nodes, --gpus-per-node and --pods must be at least 1");
    }
    if matches!(args.percentage_of_nodes_to_score, Some(0) | Some(101..)) {
        anyhow::bail!("--percentage-of-nodes-to-score: must be between 1 and 100");
    }
    let mut config = BenchConfig::new(args.nodes, args.gpus_per_node, args.pods);
    config.seed = args.seed;
    config.percentage_of_nodes_to_score = args.percentage_of_nodes_to_score;
    let summary = run_bench(&config);
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    Ok(())
}
