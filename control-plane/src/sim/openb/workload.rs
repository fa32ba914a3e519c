//! The submission order and node ranks of one run (PROTOCOL.md §2.2–2.5).
//!
//! Reproduces the original simulator's draw sequence on Go's global RNG:
//! seed, one discarded `Int63`, shuffle of the name-sorted pods, tuning up
//! (sampling with replacement, appended) or down (random removal), ten
//! `Int63` draws taken by the Kubernetes informers, then `Perm(#nodes)`.

use sha2::{Digest, Sha256};

use super::go_rand::GoRand;
use super::trace::{NodeSpec, PodSpec};

/// Informer reflectors draw one `Float64` each before the node permutation.
const HIDDEN_INFORMER_DRAWS: usize = 10;

/// One submission: an original pod or a tuned copy of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Submission {
    /// Index of the pod in the name-sorted trace.
    pub pod: usize,
    /// `Some(i)` for the copy named `<name>-tuned-<i>`.
    pub tuned: Option<usize>,
}

/// The generated workload of one (trace, tune, seed) run.
#[derive(Clone, Debug)]
pub struct Workload {
    /// The trace's pods sorted by name.
    pub pods: Vec<PodSpec>,
    /// The cluster's nodes sorted by name.
    pub nodes: Vec<NodeSpec>,
    /// Submission order after shuffling and tuning.
    pub order: Vec<Submission>,
    /// `ranks[i]` is the tie-break rank of `nodes[i]` (its 4-digit prefix).
    pub ranks: Vec<usize>,
    /// Σ requested GPU milli over the submissions.
    pub total_gpu_milli: i64,
    /// The generator, positioned after the node permutation; only the
    /// Random policy draws from it afterwards.
    pub rng: GoRand,
}

impl Workload {
    /// Runs steps 1–6 of §2.5 for `tune × cluster GPU capacity` and `seed`.
    pub fn generate(
        mut nodes: Vec<NodeSpec>,
        mut pods: Vec<PodSpec>,
        tune: f64,
        seed: i64,
    ) -> Self {
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let capacity: i64 = nodes.iter().map(|n| n.gpus as i64 * 1000).sum();
        let target = tune * capacity as f64;

        let mut rng = GoRand::new(seed);
        rng.int63();
        let mut order: Vec<Submission> = (0..pods.len())
            .map(|pod| Submission { pod, tuned: None })
            .collect();
        rng.shuffle(&mut order);

        let mut total: i64 = pods.iter().map(PodSpec::gpu_request).sum();
        if (total as f64) < target && !pods.is_empty() {
            let mut copies = 0;
            loop {
                let idx = rng.intn(pods.len());
                let pod = &pods[idx];
                // The stop test uses the per-GPU milli, not num_gpu × milli.
                if (total + pod.gpu_milli) as f64 > target {
                    break;
                }
                order.push(Submission {
                    pod: idx,
                    tuned: Some(copies),
                });
                copies += 1;
                total += pod.gpu_request();
            }
        } else {
            while (total as f64) > target && !order.is_empty() {
                let idx = rng.intn(order.len());
                let removed = order.remove(idx);
                total -= pods[removed.pod].gpu_request();
            }
        }

        for _ in 0..HIDDEN_INFORMER_DRAWS {
            rng.int63();
        }
        let ranks = rng.perm(nodes.len());
        Workload {
            pods,
            nodes,
            order,
            ranks,
            total_gpu_milli: total,
            rng,
        }
    }

    /// Cluster GPU capacity in milli.
    pub fn capacity_milli(&self) -> i64 {
        self.nodes.iter().map(|n| n.gpus as i64 * 1000).sum()
    }

    /// Number of tuned copies in the order.
    pub fn tuned_count(&self) -> usize {
        self.order.iter().filter(|s| s.tuned.is_some()).count()
    }

    /// The submitted name of `s`, e.g. `openb-pod-0017-tuned-3`.
    pub fn name(&self, s: Submission) -> String {
        let base = &self.pods[s.pod].name;
        match s.tuned {
            Some(i) => format!("{base}-tuned-{i}"),
            None => base.clone(),
        }
    }

    /// The submission order as `replay_orders/*.pods.txt` spells it: one
    /// name a line, each ending in `\n`.
    pub fn order_text(&self) -> String {
        let mut out = String::new();
        for &s in &self.order {
            out.push_str(&self.name(s));
            out.push('\n');
        }
        out
    }

    /// The node ranks as `replay_orders/*.node_rank.tsv` spells them:
    /// `rank<TAB>node` in name order, rank zero-padded to 4 digits.
    pub fn rank_text(&self) -> String {
        let mut out = String::new();
        for (node, rank) in self.nodes.iter().zip(&self.ranks) {
            out.push_str(&format!("{rank:04}\t{}\n", node.name));
        }
        out
    }

    /// Lower-case hex SHA-256 of [`Self::order_text`].
    pub fn order_sha256(&self) -> String {
        sha256_hex(self.order_text().as_bytes())
    }

    /// Lower-case hex SHA-256 of [`Self::rank_text`].
    pub fn rank_sha256(&self) -> String {
        sha256_hex(self.rank_text().as_bytes())
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, num_gpu: u32, gpu_milli: i64) -> PodSpec {
        PodSpec {
            name: name.into(),
            cpu_milli: 1000,
            memory_mib: 0,
            num_gpu,
            gpu_milli,
            gpu_spec: String::new(),
        }
    }

    fn node(name: &str) -> NodeSpec {
        NodeSpec {
            name: name.into(),
            cpu_milli: 1000,
            memory_mib: 1,
            gpus: 1,
            model: "T4".into(),
        }
    }

    #[test]
    fn tune_up_appends_copies_and_stops_on_per_gpu_milli() {
        let pods = vec![pod("b", 1, 500), pod("a", 0, 0)];
        let w = Workload::generate(vec![node("n1"), node("n0")], pods, 1.3, 42);
        // Capacity 2000, target 2600: the originals bring 500.
        assert!(w.total_gpu_milli <= 2600 && w.total_gpu_milli > 2600 - 500);
        assert_eq!(w.order.len(), 2 + w.tuned_count());
        assert_eq!(w.pods[0].name, "a");
        assert_eq!(w.nodes[0].name, "n0");
        let mut ranks = w.ranks.clone();
        ranks.sort();
        assert_eq!(ranks, [0, 1]);
    }

    #[test]
    fn tune_down_removes_originals_only() {
        let pods: Vec<PodSpec> = (0..10).map(|i| pod(&format!("p{i}"), 1, 1000)).collect();
        let w = Workload::generate(vec![node("n0")], pods, 1.0, 7);
        assert_eq!(w.total_gpu_milli, 1000);
        assert_eq!(w.order.len(), 1);
        assert_eq!(w.tuned_count(), 0);
    }
}
