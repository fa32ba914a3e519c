//! The six placement policies of the FGD paper (PROTOCOL.md §5), one file
//! each, behind the [`Policy`] score trait.
//!
//! Every policy returns an integer score per feasible node; the replay picks
//! the highest, ties by smallest node rank. Policies also choose the device
//! of a GPU-sharing pod at bind time (§3.5).

mod best_fit;
mod coxswain;
mod dot_product;
mod fgd;
mod frag;
mod gpu_clustering;
mod gpu_packing;
mod random;

pub use best_fit::BestFit;
pub use coxswain::{Config as CoxswainConfig, Coxswain, Primary, Secondary};
pub use dot_product::DotProduct;
pub use fgd::Fgd;
pub use frag::FragMeasure;
pub use gpu_clustering::GpuClustering;
pub use gpu_packing::GpuPacking;
pub use random::RandomPolicy;

use super::cluster::Cluster;
use super::go_rand::GoRand;
use super::trace::PodSpec;
use super::typical::TypicalPod;

/// A pod being scheduled: its resources and its interned resource-key id.
#[derive(Clone, Copy, Debug)]
pub struct PodReq<'a> {
    /// The pod's resources.
    pub spec: &'a PodSpec,
    /// Dense id of the pod's [`super::typical::PodKey`], for score caches.
    pub class: usize,
}

/// A score plugin plus its device choice for sharing pods.
pub trait Policy {
    /// Called once per pod with the feasible nodes (at least two), before
    /// any [`Policy::score`] call.
    fn pre_score(&mut self, _feasible: &[usize], _rng: &mut GoRand) {}

    /// The integer score (higher is better) of placing `pod` on `node`.
    fn score(&mut self, cluster: &Cluster, node: usize, pod: PodReq<'_>) -> i64;

    /// The device a GPU-sharing `pod` gets on the chosen `node`.
    fn sharing_device(
        &mut self,
        cluster: &Cluster,
        node: usize,
        pod: PodReq<'_>,
        _rng: &mut GoRand,
    ) -> usize {
        let milli = pod.spec.gpu_milli;
        cluster.nodes[node]
            .tightest_device(milli)
            .expect("a feasible node has a fitting device")
    }
}

/// The policies by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// `01-Random`.
    Random,
    /// `02-DotProd`.
    DotProd,
    /// `03-GpuClustering`.
    GpuClustering,
    /// `04-GpuPacking`.
    GpuPacking,
    /// `05-BestFit`.
    BestFit,
    /// `06-FGD`.
    Fgd,
    /// `07-Coxswain`: coxswain's own policy (not in the paper; [`Coxswain`]).
    Coxswain,
}

impl PolicyKind {
    /// All policies, in the CSV's order.
    pub const ALL: [PolicyKind; 6] = [
        PolicyKind::Random,
        PolicyKind::DotProd,
        PolicyKind::GpuClustering,
        PolicyKind::GpuPacking,
        PolicyKind::BestFit,
        PolicyKind::Fgd,
    ];

    /// The `sc_policy` column value, e.g. `06-FGD`.
    pub fn csv_name(self) -> &'static str {
        match self {
            PolicyKind::Random => "01-Random",
            PolicyKind::DotProd => "02-DotProd",
            PolicyKind::GpuClustering => "03-GpuClustering",
            PolicyKind::GpuPacking => "04-GpuPacking",
            PolicyKind::BestFit => "05-BestFit",
            PolicyKind::Fgd => "06-FGD",
            PolicyKind::Coxswain => "07-Coxswain",
        }
    }

    /// The short command-line name, e.g. `fgd`.
    pub fn short_name(self) -> &'static str {
        match self {
            PolicyKind::Random => "random",
            PolicyKind::DotProd => "dotprod",
            PolicyKind::GpuClustering => "clustering",
            PolicyKind::GpuPacking => "packing",
            PolicyKind::BestFit => "bestfit",
            PolicyKind::Fgd => "fgd",
            PolicyKind::Coxswain => "coxswain",
        }
    }

    /// Whether the policy measures fragmentation against the trace's
    /// typical pods (FGD and coxswain's own).
    pub fn uses_typical(self) -> bool {
        matches!(self, PolicyKind::Fgd | PolicyKind::Coxswain)
    }

    /// Parses a short name or a CSV name, case-insensitively.
    pub fn parse(name: &str) -> Option<Self> {
        let own = [PolicyKind::Coxswain];
        Self::ALL.into_iter().chain(own).find(|k| {
            k.short_name().eq_ignore_ascii_case(name) || k.csv_name().eq_ignore_ascii_case(name)
        })
    }

    /// Builds the policy for a cluster, the number of pod classes and the
    /// trace's typical pods (only FGD uses the last two).
    pub fn build(
        self,
        cluster: &Cluster,
        classes: usize,
        typical: &[TypicalPod],
    ) -> Box<dyn Policy> {
        match self {
            PolicyKind::Random => Box::new(RandomPolicy::default()),
            PolicyKind::DotProd => Box::new(DotProduct),
            PolicyKind::GpuClustering => Box::new(GpuClustering),
            PolicyKind::GpuPacking => Box::new(GpuPacking),
            PolicyKind::BestFit => Box::new(BestFit),
            PolicyKind::Fgd => Box::new(Fgd::new(
                FragMeasure::new(typical, &cluster.models),
                cluster,
                classes,
            )),
            PolicyKind::Coxswain => Box::new(Coxswain::new(
                typical,
                cluster,
                classes,
                Coxswain::env_config(),
            )),
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Small hand-made nodes for the per-policy score tests.

    use super::super::cluster::Cluster;
    use super::super::trace::{NodeSpec, PodSpec};

    /// A cluster of `(cpu_milli, gpus, model)` nodes with ample memory.
    pub fn cluster(nodes: &[(i64, usize, &str)]) -> Cluster {
        Cluster::new(
            nodes
                .iter()
                .enumerate()
                .map(|(i, &(cpu, gpus, model))| NodeSpec {
                    name: format!("n{i}"),
                    cpu_milli: cpu,
                    memory_mib: 1 << 20,
                    gpus,
                    model: model.into(),
                })
                .collect(),
        )
    }

    /// A pod of `cpu` milli-cores and `num_gpu × gpu_milli`.
    pub fn pod(cpu: i64, num_gpu: u32, gpu_milli: i64) -> PodSpec {
        PodSpec {
            name: "p".into(),
            cpu_milli: cpu,
            memory_mib: 0,
            num_gpu,
            gpu_milli,
            gpu_spec: String::new(),
        }
    }
}
