//! Score: fragmentation-aware packing in the spirit of FGD (Weng et al., "Beware of
//! Fragmentation", USENIX ATC'23).
//!
//! A node's fragmentation is the GPU capacity the recent workload cannot use: for each
//! pod shape `t` (weight `w_t`), the free milli on devices too small for `t` when `t`
//! fits the node, or all free milli when it does not; `F = Σ w_t · F_t`. A pod scores a
//! node by how much placing it there *decreases* `F` (`F_before − F_after`, the
//! negative of the paper's fragmentation gradient), normalised to 0..100 across the
//! candidates. Unlike the paper's replay (see `sim::openb` for the exact baseline) the
//! measure ignores CPU, so it can be memoised on the sorted free-milli vector alone.

mod distribution;
mod hasher;

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Mutex;

pub use distribution::{Distribution, Shape};
use hasher::FoldHasher;

use super::super::cycle_state::CycleState;
use super::super::framework::{Plugin, ReservePlugin, ScorePlugin};
use super::super::model::{NodeInfo, PodInfo};
use super::super::snapshot::ClusterSnapshot;
use super::super::status::Status;
use super::gpu::plan;

const MEMO_GPUS: usize = 16;

type Fast = BuildHasherDefault<FoldHasher>;
type Key = (u8, [u16; MEMO_GPUS]);

#[derive(Debug)]
struct Inner {
    dist: Distribution,
    /// Fragmentation by sorted free-milli vector.
    memo: HashMap<Key, f64, Fast>,
    /// Raw score by (node version, shape): a node unchanged since the last pod of the
    /// same shape is not re-scored.
    scores: HashMap<(u64, Shape), i64, Fast>,
    memo_version: u64,
}

/// The fragmentation-gradient Score plugin; records placed shapes at Reserve.
#[derive(Debug)]
pub struct Fragmentation {
    inner: Mutex<Inner>,
}

impl Default for Fragmentation {
    fn default() -> Self {
        Self::new(4096)
    }
}

/// Fragmentation (milli) of free-milli vector `free` against the shapes in `types`.
pub fn fragmentation(types: &[(Shape, f64)], free: &[u16]) -> f64 {
    let total: f64 = free.iter().map(|&f| f64::from(f)).sum();
    let mut out = 0.0;
    for (shape, w) in types {
        let fitting = free.iter().filter(|&&f| f >= shape.milli).count();
        let frag = if fitting >= usize::from(shape.gpus) {
            free.iter()
                .filter(|&&f| f < shape.milli)
                .map(|&f| f64::from(f))
                .sum()
        } else {
            total
        };
        out += w * frag;
    }
    out
}

/// The pod's shape (whole GPUs, or one share).
fn shape_of(pod: &PodInfo) -> Shape {
    if pod.gpus > 0 {
        Shape {
            gpus: pod.gpus,
            milli: 1000,
        }
    } else {
        Shape {
            gpus: 1,
            milli: pod.gpu_milli,
        }
    }
}

/// Free milli of `node`'s devices after placing `pod` as [`plan`] would, or `None`
/// when it does not fit. Without a model constraint only the multiset of free values
/// matters, so the devices are not picked one by one.
fn free_after(pod: &PodInfo, node: &NodeInfo, free: &[u16]) -> Option<Vec<u16>> {
    let mut after = free.to_vec();
    if !pod.gpu_models.is_empty() {
        let p = plan(pod, node)?;
        for &i in &p.devices {
            after[i] -= p.milli;
        }
        return Some(after);
    }
    if pod.gpus > 0 {
        let mut left = usize::from(pod.gpus);
        for (f, d) in after.iter_mut().zip(&node.gpus) {
            if left > 0 && d.is_idle() {
                *f = 0;
                left -= 1;
            }
        }
        return (left == 0).then_some(after);
    }
    let m = pod.gpu_milli;
    let i = (0..after.len())
        .filter(|&i| after[i] >= m)
        .min_by_key(|&i| (node.gpus[i].is_idle(), after[i]))?;
    after[i] -= m;
    Some(after)
}

impl Fragmentation {
    /// A plugin that learns the distribution from the last `window` placed GPU pods.
    pub fn new(window: usize) -> Self {
        Fragmentation {
            inner: Mutex::new(Inner {
                dist: Distribution::new(window),
                memo: HashMap::default(),
                scores: HashMap::default(),
                memo_version: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn frag_of(inner: &mut Inner, free: &mut [u16]) -> f64 {
        if free.len() > MEMO_GPUS {
            return fragmentation(&inner.dist.types, free);
        }
        free.sort_unstable();
        let mut key: Key = (free.len() as u8, [0; MEMO_GPUS]);
        key.1[..free.len()].copy_from_slice(free);
        if let Some(v) = inner.memo.get(&key) {
            return *v;
        }
        let v = fragmentation(&inner.dist.types, free);
        inner.memo.insert(key, v);
        v
    }
}

impl Plugin for Fragmentation {
    fn name(&self) -> &'static str {
        "Fragmentation"
    }
}

impl ScorePlugin for Fragmentation {
    fn score(&self, _: &ClusterSnapshot, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        if pod.gpu_milli_total() == 0 || node.gpus.is_empty() {
            return 0;
        }
        let shape = shape_of(pod);
        let mut inner = self.lock();
        if inner.memo_version != inner.dist.version {
            inner.memo.clear();
            inner.scores.clear();
            inner.memo_version = inner.dist.version;
        }
        let cacheable = pod.gpu_models.is_empty();
        if cacheable && let Some(s) = inner.scores.get(&(node.version, shape)) {
            return *s;
        }
        let mut free: Vec<u16> = node.gpus.iter().map(|d| d.free_milli()).collect();
        let Some(mut after) = free_after(pod, node, &free) else {
            return 0;
        };
        let before = Self::frag_of(&mut inner, &mut free);
        let after = Self::frag_of(&mut inner, &mut after);
        let score = (before - after).round() as i64;
        if cacheable {
            inner.scores.insert((node.version, shape), score);
        }
        score
    }

    fn normalize(&self, _: &CycleState, _: &PodInfo, scores: &mut [i64]) {
        let (Some(&min), Some(&max)) = (scores.iter().min(), scores.iter().max()) else {
            return;
        };
        for s in scores.iter_mut() {
            *s = if max == min {
                100
            } else {
                (*s - min) * 100 / (max - min)
            };
        }
    }
}

impl ReservePlugin for Fragmentation {
    fn reserve(
        &self,
        _: &ClusterSnapshot,
        _: &mut CycleState,
        pod: &PodInfo,
        _: &NodeInfo,
    ) -> Status {
        if pod.gpu_milli_total() > 0 {
            self.lock().dist.record(shape_of(pod));
        }
        Status::success()
    }

    fn unreserve(&self, _: &ClusterSnapshot, _: &PodInfo, _: &str) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::model::{GpuDevice, Resources};

    fn node(used: &[u16]) -> NodeInfo {
        let gpus = used
            .iter()
            .enumerate()
            .map(|(i, &u)| {
                let mut d = GpuDevice::new(format!("GPU-{i}"), "H100", 0, 0);
                d.used_milli = u;
                d
            })
            .collect();
        NodeInfo::new("n", Resources::new(64_000, 1 << 40, 110), gpus)
    }

    #[test]
    fn measure_counts_unusable_free_capacity() {
        let types = [
            (
                Shape {
                    gpus: 1,
                    milli: 500,
                },
                0.5,
            ),
            (
                Shape {
                    gpus: 2,
                    milli: 1000,
                },
                0.5,
            ),
        ];
        // Free 300 and 1000: shape 1 fits (300 is a fragment), shape 2 does not (all 1300).
        let f = fragmentation(&types, &[300, 1000]);
        assert!((f - (0.5 * 300.0 + 0.5 * 1300.0)).abs() < 1e-9);
    }

    #[test]
    fn prefers_the_node_where_a_share_fills_a_gap() {
        let frag = Fragmentation::new(8);
        for _ in 0..8 {
            frag.reserve(
                &ClusterSnapshot::new(),
                &mut CycleState::new(),
                &PodInfo::new("ns/x", 0, 0, 1),
                &node(&[0]),
            );
        }
        let mut pod = PodInfo::new("ns/p", 0, 0, 0);
        pod.gpu_milli = 500;
        let (snap, state) = (ClusterSnapshot::new(), CycleState::new());
        // Node a: a half-used GPU the share completes. Node b: idle GPUs it would break.
        let a = frag.score(&snap, &state, &pod, &node(&[500, 1000]));
        let b = frag.score(&snap, &state, &pod, &node(&[0, 1000]));
        assert!(a > b, "{a} <= {b}");
        let mut scores = [a, b];
        frag.normalize(&state, &pod, &mut scores);
        assert_eq!(scores, [100, 0]);
    }
}
