//! The replay loop: pods strictly one at a time, filter, score, pick the
//! highest score with the smallest node rank, choose devices, bind; a pod
//! that fits nowhere is dropped (PROTOCOL.md §3).

use std::collections::HashMap;

use super::cluster::{Cluster, is_sharing};
use super::policy::{PodReq, PolicyKind};
use super::typical::{PodKey, typical_pods};
use super::workload::{Submission, Workload};

/// What happened to one submission, with the cluster totals after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The submission.
    pub submission: Submission,
    /// Chosen node (index in name order), `None` if the pod failed.
    pub node: Option<usize>,
    /// Devices the pod got on that node, ascending.
    pub devices: Vec<usize>,
    /// Σ requested GPU milli of submissions so far, this one included.
    pub arrived_gpu_milli: i64,
    /// GPU milli held by placed pods after this submission.
    pub used_gpu_milli: i64,
}

/// The outcome of one replay.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// One event per submission, in order.
    pub events: Vec<Event>,
    /// The final cluster state.
    pub cluster: Cluster,
}

impl RunResult {
    /// Number of submissions that fitted nowhere.
    pub fn failed(&self) -> usize {
        self.events.iter().filter(|e| e.node.is_none()).count()
    }

    /// `(arrived, used)` GPU milli after each submission.
    pub fn samples(&self) -> Vec<(i64, i64)> {
        self.events
            .iter()
            .map(|e| (e.arrived_gpu_milli, e.used_gpu_milli))
            .collect()
    }
}

/// Replays `workload` under `policy`.
pub fn replay(workload: &Workload, policy: PolicyKind) -> RunResult {
    replay_prefix(workload, policy, workload.order.len())
}

/// Replays the first `limit` submissions of `workload` under `policy`.
pub fn replay_prefix(workload: &Workload, policy: PolicyKind, limit: usize) -> RunResult {
    let mut cluster = Cluster::new(workload.nodes.clone());
    let mut rng = workload.rng.clone();

    let mut class_ids: HashMap<PodKey, usize> = HashMap::new();
    let classes: Vec<usize> = workload
        .pods
        .iter()
        .map(|p| {
            let next = class_ids.len();
            *class_ids.entry(PodKey::of(p)).or_insert(next)
        })
        .collect();
    let mut class_masks: Vec<Option<Vec<bool>>> = vec![None; class_ids.len()];
    let typical = if policy.uses_typical() {
        typical_pods(&workload.pods)
    } else {
        Vec::new()
    };
    let mut scorer = policy.build(&cluster, class_ids.len(), &typical);

    let mut events = Vec::with_capacity(limit.min(workload.order.len()));
    let mut arrived = 0;
    let mut feasible = Vec::with_capacity(cluster.nodes.len());
    for &submission in workload.order.iter().take(limit) {
        let spec = &workload.pods[submission.pod];
        let class = classes[submission.pod];
        let pod = PodReq { spec, class };
        arrived += spec.gpu_request();
        let mask = class_masks[class].get_or_insert_with(|| cluster.model_mask(spec));

        feasible.clear();
        feasible.extend((0..cluster.nodes.len()).filter(|&n| cluster.fits(n, spec, mask)));
        let chosen = match feasible.len() {
            0 => None,
            1 => Some(feasible[0]),
            _ => {
                scorer.pre_score(&feasible, &mut rng);
                let mut best: Option<(i64, usize, usize)> = None;
                for &n in &feasible {
                    let score = scorer.score(&cluster, n, pod);
                    let rank = workload.ranks[n];
                    if best.is_none_or(|(s, r, _)| score > s || (score == s && rank < r)) {
                        best = Some((score, rank, n));
                    }
                }
                best.map(|(_, _, n)| n)
            }
        };

        let devices = match chosen {
            Some(n) if is_sharing(spec) => vec![scorer.sharing_device(&cluster, n, pod, &mut rng)],
            Some(n) if spec.num_gpu > 0 && spec.gpu_milli > 0 => {
                cluster.nodes[n].lowest_free_devices(spec.num_gpu as usize)
            }
            _ => Vec::new(),
        };
        if let Some(n) = chosen {
            cluster.bind(n, spec, &devices);
        }
        events.push(Event {
            submission,
            node: chosen,
            devices,
            arrived_gpu_milli: arrived,
            used_gpu_milli: cluster.used_gpu_milli,
        });
    }
    RunResult { events, cluster }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::openb::trace::{NodeSpec, PodSpec};

    #[test]
    fn places_by_score_then_rank_and_drops_misfits() {
        let nodes = (0..3)
            .map(|i| NodeSpec {
                name: format!("n{i}"),
                cpu_milli: 16_000,
                memory_mib: 1024,
                gpus: 2,
                model: "T4".into(),
            })
            .collect();
        let mk = |name: &str, num_gpu, gpu_milli| PodSpec {
            name: name.into(),
            cpu_milli: 1000,
            memory_mib: 10,
            num_gpu,
            gpu_milli,
            gpu_spec: String::new(),
        };
        let pods = vec![mk("a", 2, 1000), mk("b", 1, 500), mk("c", 8, 1000)];
        let w = Workload::generate(nodes, pods, 0.5, 42);
        let r = replay(&w, PolicyKind::BestFit);
        let first_two: Vec<_> = r.events.iter().filter(|e| e.node.is_some()).collect();
        assert!(!first_two.is_empty());
        for e in &r.events {
            if w.pods[e.submission.pod].name == "c" {
                assert_eq!(e.node, None);
            }
        }
        assert_eq!(
            r.cluster.used_gpu_milli,
            r.events.last().unwrap().used_gpu_milli
        );
    }
}
