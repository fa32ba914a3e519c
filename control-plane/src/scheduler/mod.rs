//! The scheduler: a kube-scheduler-style framework that places pods on nodes and
//! allocates exact GPU devices, with gangs, network topology and preemption.
//!
//! - [`model`]: the scheduler's own plain structs for nodes, pods, GPUs and gangs.
//! - [`snapshot`]: the in-memory cluster view, updated from [`ClusterEvent`]s, with the
//!   assumed-pod cache.
//! - [`queue`]: active / back-off / unschedulable queues with event-driven requeueing.
//! - [`framework`]: one trait per extension point; [`CycleState`]; [`Status`].
//! - [`plugins`]: fit, GPU allocation, fragmentation (FGD), gang, preemption.
//! - [`binder`]: the Bind step and the GPU-devices annotation.
//! - [`convert`]: Kubernetes Pods, Nodes and PodGroups into the model (for the watch).
//! - [`Scheduler`]: the engine that runs cycles ([`Scheduler::schedule_one`]).
//! - [`runner`]: the engine run against the API (watches, [`runner::ApiBinder`], status).
//! - [`bench`]: hollow-node throughput benchmark behind `cox sim bench`.

pub mod bench;
pub mod binder;
pub mod clock;
pub mod convert;
mod cycle;
mod cycle_failure;
mod cycle_state;
mod engine;
pub mod framework;
pub mod model;
pub mod plugins;
pub mod queue;
pub mod runner;
pub mod snapshot;
mod status;

pub use binder::{Binder, Binding, GPU_DEVICES_ANNOTATION, InMemoryBinder};
pub use clock::{Clock, FakeClock, SystemClock, TokioClock};
pub use cycle_state::{CycleState, RELAX_ISLAND, RELAX_TOPOLOGY};
pub use engine::{CycleReport, CycleResult, Scheduler, SchedulerConfig};
pub use framework::Framework;
pub use plugins::default_framework;
pub use snapshot::{ClusterEvent, ClusterSnapshot};
pub use status::{Code, Status};
