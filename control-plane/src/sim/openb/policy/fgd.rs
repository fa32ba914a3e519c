//! FGD, Fragmentation Gradient Descent (`fgd_score.go`, PROTOCOL.md §5.6):
//! place the pod where it increases the node's expected fragmentation the
//! least, scored as `trunc(100 · σ(ΔFrag / 1000))`.
//!
//! Scores are cached per (node, pod class) and reused while the node's
//! version is unchanged, so only nodes touched since the last pod of the
//! same class are re-scored.

use super::super::cluster::{Cluster, is_sharing};
use super::super::go_rand::GoRand;
use super::frag::{FragMeasure, take_fitting};
use super::{PodReq, Policy};

/// A cached score: the node version it was computed at, score and device.
#[derive(Clone, Copy, Default)]
struct Cached {
    version: u32,
    score: i64,
    device: u8,
}

/// The FGD policy with its caches.
pub struct Fgd {
    frag: FragMeasure,
    /// Per node: (version, fragmentation of the current state).
    before: Vec<(u32, f64)>,
    /// `[node * classes + class]`.
    scores: Vec<Cached>,
    classes: usize,
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn to_score(delta: f64) -> i64 {
    (sigmoid(delta / 1000.0) * 100.0) as i64
}

impl Fgd {
    /// FGD over `cluster` for pods of `classes` distinct keys.
    pub fn new(frag: FragMeasure, cluster: &Cluster, classes: usize) -> Self {
        let nodes = cluster.nodes.len();
        Fgd {
            frag,
            before: vec![(0, 0.0); nodes],
            scores: vec![Cached::default(); nodes * classes],
            classes,
        }
    }

    fn frag_before(&mut self, cluster: &Cluster, node: usize) -> f64 {
        let n = &cluster.nodes[node];
        if self.before[node].0 != n.version {
            let v = self.frag.frag(n.model, n.cpu_free, n.devices());
            self.before[node] = (n.version, v);
        }
        self.before[node].1
    }

    fn evaluate(&mut self, cluster: &Cluster, node: usize, pod: PodReq<'_>) -> Cached {
        let slot = node * self.classes + pod.class;
        let version = cluster.nodes[node].version;
        if self.scores[slot].version == version {
            return self.scores[slot];
        }
        let before = self.frag_before(cluster, node);
        let n = &cluster.nodes[node];
        let p = pod.spec;
        let cpu_after = n.cpu_free - p.cpu_milli;
        let mut devices = n.gpu_free;
        let g = n.gpus;
        let result = if is_sharing(p) {
            let mut best: Option<(i64, usize)> = None;
            for i in 0..g {
                if i64::from(devices[i]) < p.gpu_milli {
                    continue;
                }
                devices[i] -= p.gpu_milli as u16;
                let s = to_score(before - self.frag.frag(n.model, cpu_after, &devices[..g]));
                devices[i] += p.gpu_milli as u16;
                if best.is_none_or(|(b, _)| s > b) {
                    best = Some((s, i));
                }
            }
            let (score, device) = best.expect("a feasible node has a fitting device");
            Cached {
                version,
                score,
                device: device as u8,
            }
        } else {
            if p.num_gpu > 0 && p.gpu_milli > 0 {
                take_fitting(&mut devices[..g], p.num_gpu, p.gpu_milli);
            }
            let score = to_score(before - self.frag.frag(n.model, cpu_after, &devices[..g]));
            Cached {
                version,
                score,
                device: 0,
            }
        };
        self.scores[slot] = result;
        result
    }
}

impl Policy for Fgd {
    fn score(&mut self, cluster: &Cluster, node: usize, pod: PodReq<'_>) -> i64 {
        self.evaluate(cluster, node, pod).score
    }

    fn sharing_device(
        &mut self,
        cluster: &Cluster,
        node: usize,
        pod: PodReq<'_>,
        _rng: &mut GoRand,
    ) -> usize {
        self.evaluate(cluster, node, pod).device as usize
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::typical::{PodKey, TypicalPod};
    use super::super::test_support::{cluster, pod};
    use super::*;

    #[test]
    fn prefers_the_placement_that_fragments_least() {
        let mut c = cluster(&[(96_000, 2, "T4"), (96_000, 2, "T4")]);
        c.bind(1, &pod(1000, 1, 500), &[1]);
        let key = PodKey {
            cpu_milli: 1000,
            gpu_milli: 500,
            num_gpu: 1,
            gpu_spec: String::new(),
        };
        let typical = vec![TypicalPod {
            key,
            count: 1,
            weight: 1.0,
        }];
        let mut fgd = Fgd::new(FragMeasure::new(&typical, &c.models), &c, 1);
        let p = pod(1000, 1, 500);
        let req = PodReq { spec: &p, class: 0 };
        // Every half-GPU placement keeps the fragment at 0: score 50 everywhere,
        // device 0 on the idle node (lowest index).
        assert_eq!(fgd.score(&c, 0, req), 50);
        assert_eq!(fgd.score(&c, 1, req), 50);
        assert_eq!(fgd.sharing_device(&c, 0, req, &mut GoRand::new(1)), 0);
        // A 700-milli pod on node 1's half-used device leaves 0 behind there
        // only if it fits; it does not (500 free), so it takes device 0 and
        // leaves a 300 fragment: Δ = −300·1 → trunc(100·σ(−0.3)) = 42.
        let big = pod(1000, 1, 700);
        let big_req = PodReq {
            spec: &big,
            class: 0,
        };
        let mut fgd = Fgd::new(FragMeasure::new(&typical, &c.models), &c, 1);
        assert_eq!(fgd.score(&c, 1, big_req), 42);
        assert_eq!(fgd.sharing_device(&c, 1, big_req, &mut GoRand::new(1)), 0);
    }
}
