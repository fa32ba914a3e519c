//! coxswain's own placement policy for the openb replay: FGD's
//! fragmentation gradient, with CPU-only pods steered away from free GPUs.
//!
//! The primary score is FGD's, bit for bit (`trunc(100 · σ(ΔFrag / 1000))`
//! against the trace's typical pods, PROTOCOL.md §5.6, and FGD's device
//! choice for sharing pods). That integer is coarse: every placement that
//! does not change fragmentation scores exactly 50, and the node rank (a
//! random permutation per seed) decides among them. coxswain breaks those
//! ties for CPU-only pods only: the node left with the least free GPU, then
//! the least free CPU, so that CPU-only pods fill nodes whose GPUs are
//! already taken instead of eating the CPU that free GPUs will need. GPU
//! pods keep the rank: every deterministic tie-break measured for them was
//! worse (docs/scheduler-openb.md, "coxswain's own policy", has the grid).
//!
//! It uses exactly the information FGD uses: the node states and the
//! typical-pod distribution of the original trace (fixed for the run).
//! [`Config`] holds the ablation knobs; [`Config::default`] is the policy.

use super::super::cluster::{Cluster, is_sharing};
use super::super::go_rand::GoRand;
use super::super::trace::spec_accepts_model;
use super::super::typical::TypicalPod;
use super::frag::{FragMeasure, take_fitting};
use super::{PodReq, Policy};

/// How the fragmentation change becomes the primary score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Primary {
    /// FGD's integer `trunc(100 · σ(Δ / 1000))`.
    Fgd,
    /// `floor(Δ / band)`, Δ in milli-GPU.
    Band(f64),
}

/// The tie-break among nodes of equal primary score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Secondary {
    /// None: the smallest node rank decides, as in FGD.
    None,
    /// BestFit's packing term (least free CPU and GPU after, half and half).
    BestFit,
    /// The untruncated fragmentation change.
    Frag,
    /// Least free GPU milli after placement, then least free CPU.
    GpuThenCpu,
    /// Least free GPU milli after placement, then most free CPU.
    GpuThenMostCpu,
    /// Most free GPU milli after placement, then most free CPU.
    Spread,
    /// Most free CPU after placement.
    MostCpu,
    /// Least free CPU after placement.
    LeastCpu,
    /// Most free CPU per free GPU after placement.
    Ratio,
    /// Least free CPU per free GPU after placement.
    LowRatio,
    /// The node's model is usable by the smallest share of the typical GPU
    /// pods (keep versatile models for the constrained pods).
    Access,
}

/// The knobs of the policy; [`Config::default`] is coxswain's choice.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Config {
    /// Primary score.
    pub primary: Primary,
    /// Scale Δ to an 8-GPU node (`Δ · 8 / G`).
    pub relative: bool,
    /// Tie-break for whole-GPU pods.
    pub secondary: Secondary,
    /// Tie-break for GPU-sharing pods.
    pub sharing_secondary: Secondary,
    /// Tie-break for CPU-only pods.
    pub cpu_secondary: Secondary,
    /// Sharing pods: among devices of equal primary score, the tightest
    /// (instead of the lowest index).
    pub tight_device: bool,
    /// Re-weight the GPU typical pods by their GPU request (count × milli)
    /// instead of their count; CPU-only types keep their share.
    pub gpu_weighted: bool,
    /// CPU-only pods: least free GPU first, FGD's score second.
    pub cpu_first: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            primary: Primary::Fgd,
            relative: false,
            secondary: Secondary::None,
            sharing_secondary: Secondary::None,
            cpu_secondary: Secondary::GpuThenCpu,
            tight_device: false,
            gpu_weighted: false,
            cpu_first: false,
        }
    }
}

impl Config {
    /// Parses `key=value` pairs separated by commas over the default, e.g.
    /// `p=band:10,s=bf,cpu=gpu,rel=1,dev=index`; `None` on an unknown item.
    pub fn parse(text: &str) -> Option<Self> {
        let mut c = Config::default();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (k, v) = item.split_once('=')?;
            match k {
                "p" => {
                    c.primary = match v {
                        "fgd" => Primary::Fgd,
                        _ => Primary::Band(v.strip_prefix("band:")?.parse().ok()?),
                    }
                }
                "rel" => c.relative = v == "1",
                "s" => {
                    c.secondary = parse_secondary(v)?;
                    c.sharing_secondary = c.secondary;
                }
                "ss" => c.sharing_secondary = parse_secondary(v)?,
                "cpu" => c.cpu_secondary = parse_secondary(v)?,
                "dev" => c.tight_device = v == "tight",
                "w" => c.gpu_weighted = v == "gpu",
                "cf" => c.cpu_first = v == "1",
                _ => return None,
            }
        }
        Some(c)
    }
}

fn parse_secondary(v: &str) -> Option<Secondary> {
    Some(match v {
        "none" => Secondary::None,
        "bf" => Secondary::BestFit,
        "frag" => Secondary::Frag,
        "gpu" => Secondary::GpuThenCpu,
        "gpumost" => Secondary::GpuThenMostCpu,
        "spread" => Secondary::Spread,
        "mostcpu" => Secondary::MostCpu,
        "leastcpu" => Secondary::LeastCpu,
        "ratio" => Secondary::Ratio,
        "lowratio" => Secondary::LowRatio,
        "access" => Secondary::Access,
        _ => return None,
    })
}

/// Environment variable that overrides [`Config::default`] (ablations).
pub const CONFIG_ENV: &str = "COXSWAIN_OPENB_POLICY";

/// `typical` with the GPU types' total weight redistributed in proportion
/// to count × requested GPU milli.
fn gpu_weighted(typical: &[TypicalPod]) -> Vec<TypicalPod> {
    let gpu = |t: &TypicalPod| i64::from(t.key.num_gpu) * t.key.gpu_milli;
    let share: f64 = typical
        .iter()
        .filter(|t| gpu(t) > 0)
        .map(|t| t.weight)
        .sum();
    let mass: f64 = typical.iter().map(|t| t.weight * gpu(t) as f64).sum();
    typical
        .iter()
        .map(|t| {
            let mut t = t.clone();
            if gpu(&t) > 0 && mass > 0.0 {
                t.weight = share * t.weight * gpu(&t) as f64 / mass;
            }
            t
        })
        .collect()
}

/// A cached score: the node version it was computed at, score and device.
#[derive(Clone, Copy, Default)]
struct Cached {
    version: u32,
    score: i64,
    device: u8,
}

/// coxswain's policy with its caches.
pub struct Coxswain {
    config: Config,
    frag: FragMeasure,
    /// Per node: (version, fragmentation of the current state).
    before: Vec<(u32, f64)>,
    /// `[node * classes + class]`.
    scores: Vec<Cached>,
    classes: usize,
    /// Per model: the share of the typical GPU pods' weight that may use it.
    access: Vec<f64>,
}

/// Width of the tie-break field of a composite score.
const SECONDARY_BITS: u32 = 32;

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl Coxswain {
    /// The policy over `cluster` for pods of `classes` distinct keys,
    /// measuring fragmentation against the `typical` pods.
    pub fn new(typical: &[TypicalPod], cluster: &Cluster, classes: usize, config: Config) -> Self {
        let nodes = cluster.nodes.len();
        let typical = if config.gpu_weighted {
            gpu_weighted(typical)
        } else {
            typical.to_vec()
        };
        let gpu_types = || typical.iter().filter(|t| t.key.num_gpu > 0);
        let gpu_weight: f64 = gpu_types().map(|t| t.weight).sum();
        let access = cluster
            .models
            .iter()
            .map(|m| {
                let w: f64 = gpu_types()
                    .filter(|t| spec_accepts_model(&t.key.gpu_spec, m))
                    .map(|t| t.weight)
                    .sum();
                if gpu_weight > 0.0 {
                    w / gpu_weight
                } else {
                    1.0
                }
            })
            .collect();
        Coxswain {
            config,
            access,
            frag: FragMeasure::new(&typical, &cluster.models),
            before: vec![(0, 0.0); nodes],
            scores: vec![Cached::default(); nodes * classes],
            classes,
        }
    }

    /// The configuration from [`CONFIG_ENV`] if set (ablations), else the
    /// default; a value [`Config::parse`] rejects is an error naming it.
    pub fn checked_env_config() -> Result<Config, String> {
        match std::env::var(CONFIG_ENV) {
            Ok(s) => Config::parse(&s)
                .ok_or_else(|| format!("{CONFIG_ENV}={s:?}: not a coxswain policy config")),
            Err(_) => Ok(Config::default()),
        }
    }

    /// Like [`Self::checked_env_config`], but a rejected value falls back to
    /// the default with a warning (callers that can report errors check first).
    pub fn env_config() -> Config {
        Self::checked_env_config().unwrap_or_else(|e| {
            tracing::warn!("{e}; using the default coxswain policy");
            Config::default()
        })
    }

    fn frag_before(&mut self, cluster: &Cluster, node: usize) -> f64 {
        let n = &cluster.nodes[node];
        if self.before[node].0 != n.version {
            let v = self.frag.frag(n.model, n.cpu_free, n.devices());
            self.before[node] = (n.version, v);
        }
        self.before[node].1
    }

    fn primary(&self, delta: f64, gpus: usize) -> i64 {
        let delta = if self.config.relative && gpus > 0 {
            delta * 8.0 / gpus as f64
        } else {
            delta
        };
        match self.config.primary {
            Primary::Fgd => (sigmoid(delta / 1000.0) * 100.0) as i64,
            Primary::Band(b) => (delta / b).floor() as i64,
        }
    }

    /// The tie-break value in `[0, 2^31)`, higher is better.
    fn secondary(
        &self,
        which: Secondary,
        model: u8,
        delta: f64,
        cpu_left: i64,
        gpu_left: i64,
    ) -> i64 {
        let v = match which {
            Secondary::Access => ((1.0 - self.access[model as usize]) * 1e9) as i64,
            Secondary::None => 0,
            Secondary::BestFit => {
                let raw =
                    1.0 - (0.5 * cpu_left as f64 / 128_000.0 + 0.5 * gpu_left as f64 / 8_000.0);
                ((raw + 1.0) * 5e8) as i64
            }
            Secondary::Frag => ((delta + 10_000.0) * 1e5) as i64,
            Secondary::GpuThenCpu => {
                (8_000 - gpu_left.min(8_000)) * 200_000 + (150_000 - cpu_left.min(150_000))
            }
            Secondary::GpuThenMostCpu => {
                (8_000 - gpu_left.min(8_000)) * 200_000 + cpu_left.min(150_000)
            }
            Secondary::Spread => gpu_left.min(8_000) * 200_000 + cpu_left.min(150_000),
            Secondary::MostCpu => cpu_left,
            Secondary::Ratio => cpu_left * 1000 / (gpu_left.max(0) + 100),
            Secondary::LowRatio => 1_500_000_000 - cpu_left * 1000 / (gpu_left.max(0) + 100),
            Secondary::LeastCpu => 150_000 - cpu_left.min(150_000),
        };
        v.clamp(0, (1 << 31) - 1)
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
        let gpu_after = n.gpu_free_total() - p.gpu_request();
        let mut devices = n.gpu_free;
        let g = n.gpus;
        let which = if p.num_gpu == 0 || p.gpu_milli <= 0 {
            self.config.cpu_secondary
        } else if is_sharing(p) {
            self.config.sharing_secondary
        } else {
            self.config.secondary
        };
        let result = if is_sharing(p) {
            // (primary, device tie-break, −index) maximised over devices.
            let mut best: Option<(i64, i64, usize, f64)> = None;
            for i in 0..g {
                if i64::from(devices[i]) < p.gpu_milli {
                    continue;
                }
                devices[i] -= p.gpu_milli as u16;
                let delta = before - self.frag.frag(n.model, cpu_after, &devices[..g]);
                let left = i64::from(devices[i]);
                devices[i] += p.gpu_milli as u16;
                let s = self.primary(delta, g);
                let tie = if self.config.tight_device { -left } else { 0 };
                if best.is_none_or(|(b, t, _, _)| s > b || (s == b && tie > t)) {
                    best = Some((s, tie, i, delta));
                }
            }
            let (primary, _, device, delta) = best.expect("a feasible node has a fitting device");
            Cached {
                version,
                score: (primary << SECONDARY_BITS)
                    + self.secondary(which, n.model, delta, cpu_after, gpu_after),
                device: device as u8,
            }
        } else {
            if p.num_gpu > 0 && p.gpu_milli > 0 {
                take_fitting(&mut devices[..g], p.num_gpu, p.gpu_milli);
            }
            let delta = before - self.frag.frag(n.model, cpu_after, &devices[..g]);
            let mut primary = self.primary(delta, g);
            if self.config.cpu_first && p.num_gpu == 0 {
                primary += (8_000 - gpu_after.min(8_000)) << 8;
            }
            Cached {
                version,
                score: (primary << SECONDARY_BITS)
                    + self.secondary(which, n.model, delta, cpu_after, gpu_after),
                device: 0,
            }
        };
        self.scores[slot] = result;
        result
    }
}

impl Policy for Coxswain {
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
    use super::super::super::typical::PodKey;
    use super::super::Fgd;
    use super::super::test_support::{cluster, pod};
    use super::*;

    fn typical(cpu: i64, num_gpu: u32, gpu_milli: i64, weight: f64) -> TypicalPod {
        let key = PodKey {
            cpu_milli: cpu,
            gpu_milli,
            num_gpu,
            gpu_spec: String::new(),
        };
        TypicalPod {
            key,
            count: 1,
            weight,
        }
    }

    fn policy(c: &Cluster, t: &[TypicalPod], config: Config) -> Coxswain {
        Coxswain::new(t, c, 1, config)
    }

    #[test]
    fn config_parses_over_the_default() {
        assert_eq!(Config::parse(""), Some(Config::default()));
        let c = Config::parse("p=band:10,s=bf,ss=frag,cpu=none,rel=1,dev=tight,w=gpu,cf=1");
        let c = c.unwrap();
        assert_eq!(c.primary, Primary::Band(10.0));
        assert_eq!(c.secondary, Secondary::BestFit);
        assert_eq!(c.sharing_secondary, Secondary::Frag);
        assert_eq!(c.cpu_secondary, Secondary::None);
        assert!(c.relative && c.tight_device && c.gpu_weighted && c.cpu_first);
        assert_eq!(Config::parse("x=1"), None);
        assert_eq!(Config::parse("s=best"), None);
    }

    #[test]
    fn primary_is_fgds_score() {
        let mut c = cluster(&[(96_000, 8, "G2"), (16_000, 2, "P100"), (104_000, 2, "T4")]);
        c.bind(0, &pod(4000, 1, 300), &[3]);
        c.bind(0, &pod(8000, 2, 1000), &[0, 1]);
        c.bind(2, &pod(90_000, 0, 0), &[]);
        let t = vec![
            typical(4000, 1, 500, 0.4),
            typical(8000, 1, 1000, 0.3),
            typical(16_000, 0, 0, 0.2),
            typical(12_000, 2, 1000, 0.1),
        ];
        for p in [pod(2000, 1, 500), pod(6000, 1, 1000), pod(20_000, 0, 0)] {
            let req = PodReq { spec: &p, class: 0 };
            let mut fgd = Fgd::new(FragMeasure::new(&t, &c.models), &c, 1);
            let mut cox = policy(&c, &t, Config::default());
            for node in 0..3 {
                if !c.fits(node, &p, &c.model_mask(&p)) {
                    continue;
                }
                let s = cox.score(&c, node, req);
                assert_eq!(s >> SECONDARY_BITS, fgd.score(&c, node, req), "{node}");
                assert!((0..1 << 31).contains(&(s & ((1 << SECONDARY_BITS) - 1))));
            }
        }
    }

    #[test]
    fn gpu_pod_ties_stay_with_the_rank_by_default() {
        // Whole-GPU typical pods only: a whole-GPU placement never changes
        // the fragment, so both nodes score 50; by default coxswain leaves
        // that tie to the node rank (equal scores), while the packing
        // ablation would take the fuller node.
        let mut c = cluster(&[(96_000, 8, "G2"), (96_000, 8, "G2")]);
        c.bind(1, &pod(8000, 4, 1000), &[0, 1, 2, 3]);
        let t = vec![typical(8000, 1, 1000, 1.0)];
        let p = pod(8000, 1, 1000);
        let req = PodReq { spec: &p, class: 0 };
        let mut fgd = Fgd::new(FragMeasure::new(&t, &c.models), &c, 1);
        assert_eq!(fgd.score(&c, 0, req), fgd.score(&c, 1, req));
        let mut cox = policy(&c, &t, Config::default());
        assert_eq!(cox.score(&c, 1, req), cox.score(&c, 0, req));
        let mut packing = policy(&c, &t, Config::parse("s=gpu").unwrap());
        assert!(packing.score(&c, 1, req) > packing.score(&c, 0, req));
    }

    #[test]
    fn cpu_only_pods_go_where_no_gpu_is_left() {
        // Both placements leave the fragment unchanged (FGD: 50 and 50, the
        // rank decides); coxswain prefers node 1, whose GPUs are all taken.
        let mut c = cluster(&[(96_000, 2, "T4"), (96_000, 2, "T4")]);
        c.bind(1, &pod(8000, 2, 1000), &[0, 1]);
        let t = vec![typical(8000, 1, 1000, 0.5), typical(4000, 0, 0, 0.5)];
        let p = pod(4000, 0, 0);
        let req = PodReq { spec: &p, class: 0 };
        let mut cox = policy(&c, &t, Config::default());
        assert!(cox.score(&c, 1, req) > cox.score(&c, 0, req));
    }

    #[test]
    fn sharing_device_is_fgds_unless_tight() {
        // Only a CPU-only typical pod: all free GPU is fragment wherever the
        // half GPU goes, so every device scores the same; FGD's rule (the
        // default) takes index 0, the `dev=tight` ablation the tightest
        // device (index 2, 600 free).
        let mut c = cluster(&[(96_000, 4, "G2")]);
        c.bind(0, &pod(1000, 1, 400), &[2]);
        let t = vec![typical(1000, 0, 0, 1.0)];
        let p = pod(1000, 1, 500);
        let req = PodReq { spec: &p, class: 0 };
        let mut rng = GoRand::new(1);
        let mut cox = policy(&c, &t, Config::default());
        assert_eq!(cox.sharing_device(&c, 0, req, &mut rng), 0);
        let tight = Config::parse("dev=tight").unwrap();
        let mut cox = policy(&c, &t, tight);
        assert_eq!(cox.sharing_device(&c, 0, req, &mut rng), 2);
    }
}
