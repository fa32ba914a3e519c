//! GpuClustering (`gpu_clustering_score.go`): keeps pods of the same GPU
//! class (sharing, 1-, 2-, 4-, 8-GPU) together, then prefers fuller nodes.

use super::super::cluster::{Cluster, pod_tag};
use super::{PodReq, Policy};

/// The GpuClustering policy.
pub struct GpuClustering;

impl Policy for GpuClustering {
    fn score(&mut self, cluster: &Cluster, node: usize, pod: PodReq<'_>) -> i64 {
        let p = pod.spec;
        if p.num_gpu == 0 || p.gpu_milli <= 0 {
            return 0;
        }
        let n = &cluster.nodes[node];
        let used_bonus = 25 * (8000 - n.gpu_free_total()) / 8000;
        let tag = pod_tag(p);
        let base = if n.tags & tag != 0 {
            if n.tags.count_ones() == 1 { 75 } else { 50 }
        } else if n.tags == 0 {
            25
        } else {
            0
        };
        base + used_bonus
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{cluster, pod};
    use super::*;

    #[test]
    fn same_class_beats_empty_beats_other_class() {
        let mut c = cluster(&[
            (96_000, 8, "G2"),
            (96_000, 8, "G2"),
            (96_000, 8, "G2"),
            (96_000, 8, "G2"),
        ]);
        c.bind(0, &pod(1000, 1, 500), &[0]);
        c.bind(1, &pod(1000, 1, 500), &[0]);
        c.bind(1, &pod(1000, 2, 1000), &[1, 2]);
        c.bind(2, &pod(1000, 2, 1000), &[0, 1]);
        let p = pod(1000, 1, 300);
        let req = PodReq { spec: &p, class: 0 };
        // F = 7500 → b = 25·500/8000 = 1.
        assert_eq!(GpuClustering.score(&c, 0, req), 76);
        // F = 5500 → b = 7; mixed tags.
        assert_eq!(GpuClustering.score(&c, 1, req), 57);
        // F = 6000 → b = 6; other tag only.
        assert_eq!(GpuClustering.score(&c, 2, req), 6);
        assert_eq!(GpuClustering.score(&c, 3, req), 25);
        assert_eq!(
            GpuClustering.score(
                &c,
                0,
                PodReq {
                    spec: &pod(1000, 0, 0),
                    class: 0
                }
            ),
            0
        );
    }
}
