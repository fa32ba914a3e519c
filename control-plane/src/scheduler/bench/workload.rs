//! The synthetic workload of `cox sim bench`: CPU-only, fractional, 1/2/4/8-GPU pods
//! and 16–512-GPU gangs of 8-GPU members, with a few priority levels.

use std::time::Duration;

use super::super::model::{GangSpec, PodInfo, PodKey};

/// A small deterministic generator (SplitMix64), so a seed reproduces a workload.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform integer in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// A generated workload: gangs first (as PodGroups), then every pod.
#[derive(Debug, Clone, Default)]
pub struct Workload {
    /// The pod groups.
    pub gangs: Vec<GangSpec>,
    /// The pods, gang members included.
    pub pods: Vec<PodInfo>,
}

const GIB: i64 = 1 << 30;

fn pod(i: usize, gpus: u16, milli: u16, rng: &mut SplitMix64) -> PodInfo {
    let mut p = PodInfo::new(&format!("bench/pod-{i:06}"), 0, 0, gpus);
    p.gpu_milli = milli;
    p.seq = i as u64;
    p.requests.cpu_milli = match (gpus, milli) {
        (0, 0) => 1000 + 1000 * rng.below(8) as i64,
        (0, _) => 4000,
        (g, _) => 2000 + 12_000 * i64::from(g),
    };
    p.requests.memory = match (gpus, milli) {
        (0, 0) => 4 * GIB * (1 + rng.below(8) as i64),
        (0, _) => 16 * GIB,
        (g, _) => 8 * GIB + 64 * GIB * i64::from(g),
    };
    p.priority = match rng.below(100) {
        0..80 => 0,
        80..95 => 100,
        _ => 1000,
    };
    p
}

/// `pods` pods for a cluster; one gang per 2,000 pods (gang members count as pods).
pub fn generate(pods: usize, seed: u64) -> Workload {
    let mut rng = SplitMix64::new(seed);
    let mut w = Workload::default();
    let gangs = pods / 2000;
    let mut i = 0;
    for g in 0..gangs {
        let gpus = match rng.below(100) {
            0..40 => 16,
            40..65 => 32,
            65..80 => 64,
            80..90 => 128,
            90..96 => 256,
            _ => 512,
        };
        let members = gpus / 8;
        if i + members > pods {
            break;
        }
        let key: PodKey = format!("bench/gang-{g:04}").into();
        w.gangs.push(GangSpec {
            key: key.clone(),
            min_member: members as u32,
            timeout: Duration::from_secs(60),
            topology: None,
            seq: i as u64,
            queue: None,
        });
        for _ in 0..members {
            let mut p = pod(i, 8, 0, &mut rng);
            p.priority = 500;
            p.group = Some(key.clone());
            w.pods.push(p);
            i += 1;
        }
    }
    while i < pods {
        let (gpus, milli) = match rng.below(1000) {
            0..400 => (0, 0),
            400..700 => (0, [100, 250, 500, 750][rng.below(4) as usize]),
            700..900 => (1, 0),
            900..960 => (2, 0),
            960..985 => (4, 0),
            _ => (8, 0),
        };
        w.pods.push(pod(i, gpus, milli, &mut rng));
        i += 1;
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_mixed() {
        let a = generate(10_000, 7);
        let b = generate(10_000, 7);
        assert_eq!(a.pods.len(), 10_000);
        assert_eq!(a.pods, b.pods);
        assert_eq!(a.gangs.len(), 5);
        assert!(a.pods.iter().any(|p| p.is_gpu_share()));
        assert!(a.pods.iter().any(|p| p.gpus == 8 && p.group.is_none()));
        let members = a.pods.iter().filter(|p| p.group.is_some()).count();
        let wanted: u32 = a.gangs.iter().map(|g| g.min_member).sum();
        assert_eq!(members as u32, wanted);
    }
}
