//! Submission orders and node ranks against `replay_orders/INDEX.csv`:
//! every trace × seed's generated order and rank list must hash to the
//! published SHA-256 sums (PROTOCOL.md §2.5).

use std::collections::BTreeMap;
use std::path::PathBuf;

use coxswain_control_plane::sim::openb::Workload;
use coxswain_control_plane::sim::openb::reference::read_order_index;
use coxswain_control_plane::sim::openb::trace::{read_nodes, read_pods};

fn data_dir() -> PathBuf {
    coxswain_control_plane::sim::openb::existing_data_dir().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_trace_and_seed_reproduces_the_published_order_and_ranks() -> anyhow::Result<()> {
    let dir = data_dir();
    let nodes = read_nodes(&dir.join("csv/openb_node_list_gpu_node.csv"))?;
    let index = read_order_index(&dir.join("replay_orders/INDEX.csv"))?;
    assert_eq!(index.len(), 130);
    let mut by_trace: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for entry in index {
        by_trace
            .entry(entry.workload.clone())
            .or_default()
            .push(entry);
    }
    let mut mismatches = Vec::new();
    for (trace, entries) in by_trace {
        let pods = read_pods(&dir.join(format!("csv/{trace}.csv")))?;
        for e in entries {
            let w = Workload::generate(nodes.clone(), pods.clone(), 1.3, e.seed);
            let got = (
                w.order.len(),
                w.tuned_count(),
                w.total_gpu_milli,
                w.order_sha256(),
                w.rank_sha256(),
            );
            let want = (
                e.n_pods,
                e.n_tuned,
                e.total_gpu_milli,
                e.sha256_pod_order.clone(),
                e.sha256_node_rank.clone(),
            );
            if got != want {
                mismatches.push(format!("{trace}/{}: got {got:?}, want {want:?}", e.seed));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    Ok(())
}
