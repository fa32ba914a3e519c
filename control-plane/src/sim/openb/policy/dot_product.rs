//! DotProduct (`dot_product_score.go`, dimExt `merge`, norm `max`): prefers
//! the node whose free (CPU, GPU) vector is least aligned with the pod's.

use super::super::cluster::Cluster;
use super::{PodReq, Policy};

/// CPU normaliser: the largest node's milli-cores.
const CPU_NORM: f64 = 128_000.0;
/// GPU normaliser: the largest node's milli-GPU.
const GPU_NORM: f64 = 8_000.0;

/// The DotProduct policy.
pub struct DotProduct;

impl Policy for DotProduct {
    fn score(&mut self, cluster: &Cluster, node: usize, pod: PodReq<'_>) -> i64 {
        let n = &cluster.nodes[node];
        let p = pod.spec;
        let dot = (n.cpu_free as f64 / CPU_NORM) * (p.cpu_milli as f64 / CPU_NORM)
            + (n.gpu_free_total() as f64 / GPU_NORM) * (p.gpu_request() as f64 / GPU_NORM);
        (100.0 * (1.0 - dot / 2.0)) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{cluster, pod};
    use super::*;

    #[test]
    fn fuller_nodes_score_higher() {
        let mut c = cluster(&[(128_000, 8, "G2"), (128_000, 8, "G2")]);
        let p = pod(64_000, 8, 1000);
        c.bind(1, &pod(64_000, 4, 1000), &[0, 1, 2, 3]);
        let req = PodReq { spec: &p, class: 0 };
        // Empty node: dot = 1·0.5 + 1·1 = 1.5 → 100·(1 − 0.75) = 25.
        assert_eq!(DotProduct.score(&c, 0, req), 25);
        // Half-used node: dot = 0.5·0.5 + 0.5·1 = 0.75 → 62.5.
        assert_eq!(DotProduct.score(&c, 1, req), 62);
        let cpu_only = pod(64_000, 0, 0);
        assert_eq!(
            DotProduct.score(
                &c,
                0,
                PodReq {
                    spec: &cpu_only,
                    class: 0
                }
            ),
            75
        );
    }
}
