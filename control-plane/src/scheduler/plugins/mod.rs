//! The plugins of the default profile, one file (or folder) each, and the profile
//! that wires them to their extension points.
//!
//! | plugin | extension points |
//! |---|---|
//! | [`PrioritySort`] | QueueSort |
//! | [`QueueQuota`] | PreFilter |
//! | [`NodeUnschedulable`], [`NodeAffinity`], [`TaintToleration`], [`NodeResourcesFit`] | Filter |
//! | [`GpuAllocation`] | PreFilter, Filter, Score, Reserve |
//! | [`Fragmentation`] | Score, Reserve (learns the workload) |
//! | [`Gang`] | PreFilter, Score, Permit, PostFilter |
//! | [`Preemption`] | PostFilter |
//! | [`VolumeBinding`] | PreFilter, Filter (claims; the binder writes `selected-node`) |

pub mod fragmentation;
pub mod gang;
pub mod gpu;
mod node_affinity;
mod node_resources_fit;
mod node_unschedulable;
pub mod preemption;
mod priority_sort;
mod queue_quota;
mod taint_toleration;
pub mod volume_binding;

use std::sync::Arc;

pub use fragmentation::Fragmentation;
pub use gang::Gang;
pub use gpu::GpuAllocation;
pub use node_affinity::{NodeAffinity, requirement_matches};
pub use node_resources_fit::NodeResourcesFit;
pub use node_unschedulable::{NodeUnschedulable, UNSCHEDULABLE_TAINT};
pub use preemption::Preemption;
pub use priority_sort::PrioritySort;
pub use queue_quota::QueueQuota;
pub use taint_toleration::{TaintToleration, tolerates};
pub use volume_binding::{VolumeBinding, VolumeView};

use super::framework::Framework;

/// The default profile: every plugin above, cheapest filters first, FGD weighted
/// above NUMA alignment and gang locality.
pub fn default_framework() -> Framework {
    profile(Arc::new(VolumeBinding::default()))
}

/// The default profile whose [`VolumeBinding`] reads `view` (the runner's).
pub fn default_framework_with_volumes(view: VolumeView) -> Framework {
    profile(Arc::new(VolumeBinding::new(view)))
}

fn profile(volumes: Arc<VolumeBinding>) -> Framework {
    let gpu = Arc::new(GpuAllocation);
    let gang = Arc::new(Gang::default());
    let frag = Arc::new(Fragmentation::default());
    Framework::new(Arc::new(PrioritySort))
        .with_pre_filter(volumes.clone())
        .with_pre_filter(Arc::new(QueueQuota))
        .with_pre_filter(gpu.clone())
        .with_pre_filter(gang.clone())
        .with_filter(Arc::new(NodeUnschedulable))
        .with_filter(Arc::new(NodeResourcesFit))
        .with_filter(gpu.clone())
        .with_filter(Arc::new(NodeAffinity))
        .with_filter(volumes)
        .with_filter(Arc::new(TaintToleration))
        .with_post_filter(Arc::new(Preemption::default()))
        .with_post_filter(gang.clone())
        .with_score(frag.clone(), 2)
        .with_score(gpu.clone(), 1)
        .with_score(gang.clone(), 1)
        .with_reserve(gpu)
        .with_reserve(frag)
        .with_permit(gang)
}
