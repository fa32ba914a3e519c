//! FGD's node fragmentation measure against the typical pods
//! (`pkg/utils/frag.go`, PROTOCOL.md §5.6), memoised by node state.
//!
//! Fragmentation depends only on (model, free CPU, multiset of device free
//! milli) for a fixed typical-pod distribution, so values are cached under
//! that key with the devices sorted.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::super::trace::{MAX_GPUS, spec_accepts_model};
use super::super::typical::TypicalPod;

/// Category indices of `FragRatioDataMap`; `SATISFIED` is left out of the sum.
const LACK_BOTH: usize = 0;
const LACK_GPU: usize = 1;
const SATISFIED: usize = 2;
const LACK_CPU: usize = 3;
const CPU_TYPE_FITS: usize = 4;
const CPU_TYPE_LACKS: usize = 5;
const NO_ACCESS: usize = 6;

/// One typical pod, with its model access precomputed per model index.
#[derive(Clone, Debug)]
struct TypicalType {
    cpu_milli: i64,
    gpu_milli: i64,
    num_gpu: usize,
    weight: f64,
    access: Vec<bool>,
}

/// Key of the memo: model, free CPU and sorted device free milli.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct StateKey {
    model: u8,
    gpus: u8,
    cpu_free: i64,
    devices: [u16; MAX_GPUS],
}

/// A small multiplicative hasher; the std SipHash is needlessly slow here.
#[derive(Default)]
struct FoldHasher(u64);

impl Hasher for FoldHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    fn write_u16(&mut self, i: u16) {
        self.write_u64(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_i64(&mut self, i: i64) {
        self.write_u64(i as u64);
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
}

/// The fragmentation measure of one trace's typical-pod distribution.
pub struct FragMeasure {
    types: Vec<TypicalType>,
    memo: HashMap<StateKey, f64, BuildHasherDefault<FoldHasher>>,
}

impl FragMeasure {
    /// A measure for `typical` pods on a cluster whose model names are `models`.
    pub fn new(typical: &[TypicalPod], models: &[String]) -> Self {
        let types = typical
            .iter()
            .map(|t| TypicalType {
                cpu_milli: t.key.cpu_milli,
                gpu_milli: t.key.gpu_milli,
                num_gpu: t.key.num_gpu as usize,
                weight: t.weight,
                access: models
                    .iter()
                    .map(|m| spec_accepts_model(&t.key.gpu_spec, m))
                    .collect(),
            })
            .collect();
        FragMeasure {
            types,
            memo: HashMap::default(),
        }
    }

    /// Expected fragmented GPU milli of a node (all categories but
    /// "satisfied"), memoised.
    pub fn frag(&mut self, model: u8, cpu_free: i64, devices: &[u16]) -> f64 {
        let mut sorted = [0u16; MAX_GPUS];
        sorted[..devices.len()].copy_from_slice(devices);
        sorted[..devices.len()].sort_unstable();
        let key = StateKey {
            model,
            gpus: devices.len() as u8,
            cpu_free,
            devices: sorted,
        };
        if let Some(&v) = self.memo.get(&key) {
            return v;
        }
        let v = self.compute(model, cpu_free, devices);
        self.memo.insert(key, v);
        v
    }

    /// `NodeGpuShareFragAmountScore`, with the same summation order.
    fn compute(&self, model: u8, cpu_free: i64, devices: &[u16]) -> f64 {
        let total: i64 = devices.iter().map(|&d| i64::from(d)).sum();
        let mut cat = [0.0f64; 7];
        for t in &self.types {
            let w = t.weight;
            if t.gpu_milli == 0 {
                let c = if cpu_free >= t.cpu_milli {
                    CPU_TYPE_FITS
                } else {
                    CPU_TYPE_LACKS
                };
                cat[c] += w * total as f64;
                continue;
            }
            if !t.access[model as usize] {
                cat[NO_ACCESS] += w * total as f64;
                continue;
            }
            let fitting = devices
                .iter()
                .filter(|&&d| i64::from(d) >= t.gpu_milli)
                .count();
            let cpu_fits = cpu_free >= t.cpu_milli;
            if fitting >= t.num_gpu {
                if cpu_fits {
                    let small: i64 = devices
                        .iter()
                        .map(|&d| i64::from(d))
                        .filter(|&d| d < t.gpu_milli)
                        .sum();
                    cat[LACK_GPU] += w * small as f64;
                    cat[SATISFIED] += w * (total - small) as f64;
                } else {
                    cat[LACK_CPU] += w * total as f64;
                }
            } else if cpu_fits {
                cat[LACK_GPU] += w * total as f64;
            } else {
                cat[LACK_BOTH] += w * total as f64;
            }
        }
        let mut out = 0.0;
        for (i, v) in cat.iter().enumerate() {
            if i != SATISFIED {
                out += v;
            }
        }
        out
    }
}

/// Takes `gpu_milli` from each of the first `num_gpu` devices, in ascending order of free milli
/// (stable by index), that still have `gpu_milli` free: FGD's hypothetical placement of a
/// whole-GPU pod (PROTOCOL.md §5.6).
pub(super) fn take_fitting(devices: &mut [u16], num_gpu: u32, gpu_milli: i64) {
    let mut order: Vec<usize> = (0..devices.len()).collect();
    order.sort_by_key(|&i| devices[i]);
    let picked: Vec<usize> = order
        .into_iter()
        .filter(|&i| i64::from(devices[i]) >= gpu_milli)
        .take(num_gpu as usize)
        .collect();
    for i in picked {
        devices[i] -= gpu_milli as u16;
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::typical::{PodKey, TypicalPod};
    use super::*;

    fn typical(cpu: i64, num_gpu: u32, gpu_milli: i64, spec: &str, weight: f64) -> TypicalPod {
        let key = PodKey {
            cpu_milli: cpu,
            gpu_milli,
            num_gpu,
            gpu_spec: spec.into(),
        };
        TypicalPod {
            key,
            count: 1,
            weight,
        }
    }

    #[test]
    fn categories_follow_the_protocol() {
        let models = vec!["T4".to_string(), "G2".to_string()];
        let t = vec![
            typical(1000, 1, 500, "", 0.5),     // sharing half a GPU
            typical(4000, 0, 0, "", 0.25),      // CPU-only: all free GPU is fragment
            typical(1000, 2, 1000, "G2", 0.25), // no access on T4
        ];
        let mut f = FragMeasure::new(&t, &models);
        // T4 node, devices 300 and 1000, CPU 8000: sharing fits, the 300 is
        // fragment (0.5·300); CPU-only 0.25·1300; no access 0.25·1300.
        assert_eq!(f.frag(0, 8000, &[300, 1000]), 150.0 + 325.0 + 325.0);
        // Same on G2 with 2 free GPUs and CPU lacking for the sharing pod.
        assert_eq!(
            f.frag(1, 500, &[1000, 1000]),
            0.5 * 2000.0 + 0.25 * 2000.0 + 0.25 * 2000.0
        );
        // Device order does not matter.
        assert_eq!(f.frag(0, 8000, &[1000, 300]), f.frag(0, 8000, &[300, 1000]));
    }
}
