//! GpuPacking (`gpu_packing_score.go`): share an already-used device
//! (tightest first), else use free devices on a used node, else open the
//! idle node with the fewest GPUs.

use super::super::cluster::{Cluster, GPU_MILLI};
use super::{PodReq, Policy};

/// The GpuPacking policy.
pub struct GpuPacking;

impl Policy for GpuPacking {
    fn score(&mut self, cluster: &Cluster, node: usize, pod: PodReq<'_>) -> i64 {
        let p = pod.spec;
        if p.num_gpu == 0 || p.gpu_milli <= 0 {
            return 0;
        }
        let n = &cluster.nodes[node];
        let fully_free = n.fully_free() as i64;
        if fully_free == n.gpus as i64 {
            return (33 - fully_free).max(fully_free);
        }
        let mut order: Vec<usize> = (0..n.gpus).collect();
        order.sort_by_key(|&i| n.gpu_free[i]); // stable: index order on ties
        let picked: Vec<i64> = order
            .into_iter()
            .map(|i| i64::from(n.gpu_free[i]))
            .filter(|&free| free >= p.gpu_milli)
            .take(p.num_gpu as usize)
            .collect();
        let free_picked = picked.iter().filter(|&&f| f == GPU_MILLI).count() as i64;
        if free_picked > 0 {
            (50 - free_picked).max(33)
        } else {
            let sum: i64 = picked.iter().map(|&f| f * 100 / GPU_MILLI).sum();
            (100 - sum / 10).max(50)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{cluster, pod};
    use super::*;

    #[test]
    fn prefers_used_devices_then_used_nodes_then_small_idle_nodes() {
        let mut c = cluster(&[
            (96_000, 8, "G2"),
            (96_000, 2, "T4"),
            (96_000, 8, "G2"),
            (96_000, 8, "G2"),
        ]);
        c.bind(2, &pod(1000, 1, 1000), &[0]);
        c.bind(3, &pod(1000, 1, 700), &[0]);
        let share = pod(1000, 1, 200);
        let req = PodReq {
            spec: &share,
            class: 0,
        };
        assert_eq!(GpuPacking.score(&c, 0, req), 25); // idle 8-GPU node
        assert_eq!(GpuPacking.score(&c, 1, req), 31); // idle 2-GPU node
        assert_eq!(GpuPacking.score(&c, 2, req), 49); // one free device picked
        // Device with 300 free: 100 − 30/10 = 97.
        assert_eq!(GpuPacking.score(&c, 3, req), 97);
        let two = pod(1000, 2, 1000);
        assert_eq!(
            GpuPacking.score(
                &c,
                2,
                PodReq {
                    spec: &two,
                    class: 0
                }
            ),
            48
        );
        assert_eq!(
            GpuPacking.score(
                &c,
                2,
                PodReq {
                    spec: &pod(1, 0, 0),
                    class: 0
                }
            ),
            0
        );
    }
}
