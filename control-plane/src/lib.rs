//! The coxswain control plane.
//!
//! - [`apiserver`]: the Kubernetes-compatible REST API.
//! - [`store`]: the `Store` trait and its two backends (embedded redb, etcd).
//! - [`scheduler`]: the scheduler framework, plugins (GPU devices, gangs, topology,
//!   preemption) and its hollow-node benchmark.
//! - [`sim`]: the placement simulator behind `cox sim`.
//! - [`workloads`]: the Job, CronJob, ReplicaSet, Deployment and DaemonSet controllers.

pub mod apiserver;
pub mod client;
pub mod scheduler;
pub mod sim;
pub mod store;
pub mod workloads;
