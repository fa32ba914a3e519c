//! The scheduler's own view of cluster objects: plain structs, no HTTP, no k8s types.
//!
//! The API-server watch (and the simulator) translate nodes, pods and device inventory
//! into these types; every plugin reads only these.

mod device;
mod node;
mod pod;
mod queue;
mod resources;

pub use device::{DeviceAlloc, GpuDevice};
pub use node::{GpuSummary, NodeInfo, Taint, TaintEffect};
pub use pod::{GangSpec, PodInfo, PodKey, Requirement, RequirementOp, Toleration, TolerationOp};
pub use queue::{QUEUE_LABEL, QueueInfo, Quota, demand};
pub use resources::Resources;
