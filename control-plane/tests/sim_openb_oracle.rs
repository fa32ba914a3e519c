//! The reference run (default trace, FGD, seed 42) step by step: every
//! submission's node, GPU indices, arrived and used milli must equal the
//! original simulator's, and the discretised curve must equal the cached
//! row of `expected_allo_discrete.csv` exactly.

use std::path::PathBuf;

use coxswain_control_plane::sim::openb::reference::{read_expected, read_oracle_events};
use coxswain_control_plane::sim::openb::trace::{read_nodes, read_pods};
use coxswain_control_plane::sim::openb::{PolicyKind, RunSummary, Workload, replay};

fn data_dir() -> PathBuf {
    coxswain_control_plane::sim::openb::existing_data_dir().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn default_fgd_seed42_matches_the_reference_run_step_by_step() -> anyhow::Result<()> {
    let dir = data_dir();
    let nodes = read_nodes(&dir.join("csv/openb_node_list_gpu_node.csv"))?;
    let pods = read_pods(&dir.join("csv/openb_pod_list_default.csv"))?;
    let oracle = read_oracle_events(&dir.join("reference_run/default_FGD_seed42_events.csv.gz"))?;
    let w = Workload::generate(nodes, pods, 1.3, 42);
    assert_eq!(w.order.len(), oracle.len());

    let run = replay(&w, PolicyKind::Fgd);
    for (k, (got, want)) in run.events.iter().zip(&oracle).enumerate() {
        let node = got.node.map(|n| w.nodes[n].name.clone());
        assert_eq!(w.name(got.submission), want.pod, "submission {k}: pod");
        assert_eq!(node, want.node, "submission {k} ({}): node", want.pod);
        assert_eq!(
            got.devices, want.devices,
            "submission {k} ({}): GPU indices",
            want.pod
        );
        assert_eq!(
            got.arrived_gpu_milli, want.arrived_gpu_milli,
            "submission {k}: arrived milli"
        );
        assert_eq!(
            got.used_gpu_milli, want.used_gpu_milli,
            "submission {k}: used milli"
        );
    }
    assert_eq!(run.failed(), 2532);

    let summary = RunSummary::new("openb_pod_list_default", &w, PolicyKind::Fgd, 1.3, 42, &run);
    let expected = read_expected(&dir.join("expected_allo_discrete.csv"))?;
    let row = expected
        .iter()
        .find(|r| r.workload == "openb_pod_list_default" && r.policy == "06-FGD" && r.seed == 42)
        .expect("cached default/FGD/42 row");
    assert_eq!(summary.curve, row.curve, "the whole 131-value row, exactly");
    assert_eq!(summary.curve[100], Some(9514));
    assert_eq!(summary.curve[130], Some(9529));
    Ok(())
}

#[test]
fn default_seed42_rows_of_the_other_deterministic_policies_are_exact() -> anyhow::Result<()> {
    let dir = data_dir();
    let nodes = read_nodes(&dir.join("csv/openb_node_list_gpu_node.csv"))?;
    let pods = read_pods(&dir.join("csv/openb_pod_list_default.csv"))?;
    let expected = read_expected(&dir.join("expected_allo_discrete.csv"))?;
    let w = Workload::generate(nodes, pods, 1.3, 42);
    for policy in [
        PolicyKind::DotProd,
        PolicyKind::GpuClustering,
        PolicyKind::GpuPacking,
        PolicyKind::BestFit,
    ] {
        let run = replay(&w, policy);
        let summary = RunSummary::new("openb_pod_list_default", &w, policy, 1.3, 42, &run);
        let row = expected
            .iter()
            .find(|r| {
                r.workload == "openb_pod_list_default"
                    && r.policy == policy.csv_name()
                    && r.seed == 42
            })
            .expect("cached row");
        assert_eq!(summary.curve, row.curve, "{}", policy.csv_name());
    }
    Ok(())
}
