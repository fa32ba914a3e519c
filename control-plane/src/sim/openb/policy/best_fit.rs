//! BestFit (`best_fit_score.go`): prefers the node with the least free CPU
//! and GPU left after placement, weighted half and half.
//!
//! The original min–max normalises the scores over the feasible nodes; since
//! the raw scores lie in `[0, 100]` that never merges distinct values, so
//! the raw score gives the same argmax and is returned as is.

use super::super::cluster::Cluster;
use super::{PodReq, Policy};

/// The BestFit policy.
pub struct BestFit;

impl Policy for BestFit {
    fn score(&mut self, cluster: &Cluster, node: usize, pod: PodReq<'_>) -> i64 {
        let n = &cluster.nodes[node];
        let p = pod.spec;
        let cpu_left = (n.cpu_free - p.cpu_milli) as f64;
        let gpu_left = (n.gpu_free_total() - p.gpu_request()) as f64;
        (100.0 * (1.0 - (0.5 * cpu_left / 128_000.0 + 0.5 * gpu_left / 8_000.0))) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{cluster, pod};
    use super::*;

    #[test]
    fn tighter_node_scores_higher() {
        let c = cluster(&[(128_000, 8, "G2"), (16_000, 2, "P100")]);
        let p = pod(8_000, 1, 1000);
        let req = PodReq { spec: &p, class: 0 };
        // 1 − (0.5·120000/128000 + 0.5·7000/8000) = 0.09375.
        assert_eq!(BestFit.score(&c, 0, req), 9);
        // 1 − (0.5·8000/128000 + 0.5·1000/8000) = 0.90625.
        assert_eq!(BestFit.score(&c, 1, req), 90);
    }
}
