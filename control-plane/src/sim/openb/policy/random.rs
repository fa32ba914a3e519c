//! Random (`random_score.go`): one feasible node drawn uniformly scores
//! 100, all others 0; sharing pods get a uniformly drawn fitting device.
//!
//! Not reproducible bit for bit even by the original simulator (its feasible
//! list is filled by parallel workers), so compare it statistically only.

use super::super::cluster::Cluster;
use super::super::go_rand::GoRand;
use super::{PodReq, Policy};

/// The Random policy; remembers the node drawn for the current pod.
#[derive(Default)]
pub struct RandomPolicy {
    chosen: Option<usize>,
}

impl Policy for RandomPolicy {
    fn pre_score(&mut self, feasible: &[usize], rng: &mut GoRand) {
        self.chosen = Some(feasible[rng.intn(feasible.len())]);
    }

    fn score(&mut self, _cluster: &Cluster, node: usize, _pod: PodReq<'_>) -> i64 {
        if self.chosen == Some(node) { 100 } else { 0 }
    }

    fn sharing_device(
        &mut self,
        cluster: &Cluster,
        node: usize,
        pod: PodReq<'_>,
        rng: &mut GoRand,
    ) -> usize {
        // Reservoir sampling over device index order, one Intn per candidate.
        let mut pick = None;
        let mut seen = 0;
        for (i, &free) in cluster.nodes[node].devices().iter().enumerate() {
            if i64::from(free) >= pod.spec.gpu_milli {
                seen += 1;
                if rng.intn(seen) == 0 {
                    pick = Some(i);
                }
            }
        }
        pick.expect("a feasible node has a fitting device")
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{cluster, pod};
    use super::*;

    #[test]
    fn exactly_the_drawn_node_scores_100() {
        let c = cluster(&[(8000, 2, "T4"), (8000, 2, "T4"), (8000, 2, "T4")]);
        let p = pod(1000, 1, 500);
        let req = PodReq { spec: &p, class: 0 };
        let mut policy = RandomPolicy::default();
        let mut rng = GoRand::new(42);
        policy.pre_score(&[0, 1, 2], &mut rng);
        let scores: Vec<i64> = (0..3).map(|n| policy.score(&c, n, req)).collect();
        assert_eq!(scores.iter().sum::<i64>(), 100);
        let d = policy.sharing_device(&c, 0, req, &mut rng);
        assert!(d < 2);
    }
}
