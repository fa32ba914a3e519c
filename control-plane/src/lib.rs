//! The coxswain control plane.
//!
//! - [`apiserver`]: the Kubernetes-compatible REST API.
//! - [`store`]: the `Store` trait and its two backends (embedded redb, etcd).
//! - [`scheduler`]: the scheduler framework, plugins (GPU devices, gangs, topology,
//!   preemption) and its hollow-node benchmark.
//! - [`sim`]: the placement simulator behind `cox sim`.
//! - [`metrics`]: Prometheus metrics served at `/metrics`.

pub mod apiserver;
pub mod client;
pub mod metrics;
pub mod scheduler;
pub mod sim;
pub mod store;
