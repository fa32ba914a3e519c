//! FGD's typical-pod distribution per trace: the number of kept keys out of
//! the distinct keys must equal the simulator's log (PROTOCOL.md §5.6).

use std::collections::HashSet;
use std::path::PathBuf;

use coxswain_control_plane::sim::openb::trace::read_pods;
use coxswain_control_plane::sim::openb::typical::{PodKey, typical_pods};

fn data_dir() -> PathBuf {
    coxswain_control_plane::sim::openb::existing_data_dir().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn kept_typical_keys_match_the_protocol() -> anyhow::Result<()> {
    let want = [
        ("default", 35, 91),
        ("cpu050", 35, 89),
        ("cpu100", 35, 91),
        ("cpu200", 34, 90),
        ("gpushare40", 36, 88),
        ("gpushare60", 33, 85),
        ("gpushare80", 32, 80),
        ("gpuspec10", 74, 249),
        ("gpuspec20", 102, 285),
        ("gpuspec25", 113, 312),
        ("multigpu20", 38, 91),
        ("multigpu30", 40, 91),
        ("multigpu40", 42, 91),
    ];
    let dir = data_dir();
    for (trace, kept, distinct) in want {
        let pods = read_pods(&dir.join(format!("csv/openb_pod_list_{trace}.csv")))?;
        let keys: HashSet<PodKey> = pods.iter().map(PodKey::of).collect();
        let typical = typical_pods(&pods);
        assert_eq!((typical.len(), keys.len()), (kept, distinct), "{trace}");
        let weight: f64 = typical.iter().map(|t| t.weight).sum();
        assert!(
            (weight - 1.0).abs() < 1e-9,
            "{trace}: weights sum to {weight}"
        );
        if trace == "default" {
            let covered = typical.iter().map(|t| t.count).sum::<usize>() as f64 / pods.len() as f64;
            assert_eq!(format!("{:.2}", covered * 100.0), "95.26");
        }
    }
    Ok(())
}
