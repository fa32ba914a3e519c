//! FGD's "typical pods": the workload distribution its fragmentation
//! measure is taken against (PROTOCOL.md §2.4, §5.6).
//!
//! Built once from the original trace (before tuning, CPU-only pods
//! included), exactly as the simulator's `GetTypicalPods` with a popularity
//! threshold of 95 % and step 1, including its float arithmetic.

use std::collections::HashMap;

use super::trace::PodSpec;

/// Share of pods the kept keys must cover, in percent.
const POPULARITY_THRESHOLD: f64 = 95.0;

/// The resource key of a pod, as FGD groups them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodKey {
    /// CPU request in milli-cores.
    pub cpu_milli: i64,
    /// Per-GPU milli (0 for CPU-only).
    pub gpu_milli: i64,
    /// Number of GPUs (0 for CPU-only).
    pub num_gpu: u32,
    /// Raw GPU-model constraint string.
    pub gpu_spec: String,
}

impl PodKey {
    /// The key of `pod`.
    pub fn of(pod: &PodSpec) -> Self {
        PodKey {
            cpu_milli: pod.cpu_milli,
            gpu_milli: pod.gpu_milli,
            num_gpu: pod.num_gpu,
            gpu_spec: pod.gpu_spec.clone(),
        }
    }
}

/// One kept key with its weight.
#[derive(Clone, Debug, PartialEq)]
pub struct TypicalPod {
    /// The resource key.
    pub key: PodKey,
    /// Number of pods of the trace with this key.
    pub count: usize,
    /// Normalised weight; the weights of the kept keys sum to 1.
    pub weight: f64,
}

/// Computes the typical pods of a trace, most popular first.
pub fn typical_pods(pods: &[PodSpec]) -> Vec<TypicalPod> {
    let mut counts: HashMap<PodKey, usize> = HashMap::new();
    for pod in pods {
        *counts.entry(PodKey::of(pod)).or_default() += 1;
    }
    let mut keys: Vec<(PodKey, usize)> = counts.into_iter().collect();
    // Count descending, then key descending (cpu, gpu milli, gpu count, spec).
    keys.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));

    let total = pods.len() as f64;
    let expected = POPULARITY_THRESHOLD * total / 100.0;
    let mut kept = 0;
    let mut cumulative = 0.0f64;
    let mut percentages: Vec<f64> = keys.iter().map(|k| k.1 as f64).collect();
    while cumulative < expected && kept < keys.len() {
        cumulative += percentages[kept];
        percentages[kept] /= total;
        kept += 1;
    }
    if kept >= keys.len() {
        // Everything kept: Go returns the list without renormalising.
        return keys
            .into_iter()
            .zip(percentages)
            .map(|((key, count), weight)| TypicalPod { key, count, weight })
            .collect();
    }
    let share = cumulative / total;
    keys.into_iter()
        .zip(percentages)
        .take(kept)
        .map(|((key, count), p)| TypicalPod {
            key,
            count,
            weight: p / share,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(cpu: i64, num_gpu: u32, gpu_milli: i64) -> PodSpec {
        PodSpec {
            name: String::new(),
            cpu_milli: cpu,
            memory_mib: 0,
            num_gpu,
            gpu_milli,
            gpu_spec: String::new(),
        }
    }

    #[test]
    fn keeps_the_popular_prefix_and_renormalises() {
        let mut pods = vec![pod(1000, 1, 500); 60];
        pods.extend(vec![pod(2000, 1, 1000); 36]);
        pods.extend(vec![pod(4000, 0, 0); 4]);
        let t = typical_pods(&pods);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].count, 60);
        let sum: f64 = t.iter().map(|t| t.weight).sum();
        assert!((sum - 1.0).abs() < 1e-12);
    }

    #[test]
    fn ties_sort_by_key_descending() {
        let pods = vec![pod(1000, 1, 500), pod(2000, 1, 500), pod(2000, 1, 300)];
        let t = typical_pods(&pods);
        let cpus: Vec<(i64, i64)> = t
            .iter()
            .map(|t| (t.key.cpu_milli, t.key.gpu_milli))
            .collect();
        assert_eq!(cpus, [(2000, 500), (2000, 300), (1000, 500)]);
    }
}
