//! The coxswain control plane.
//!
//! - [`apiserver`]: the Kubernetes-compatible REST API.
//! - [`store`]: the `Store` trait and its two backends (embedded redb, etcd).
//! - [`scheduler`]: the scheduler framework, plugins (GPU devices, gangs, topology,
//!   preemption) and its hollow-node benchmark.
//! - [`sim`]: the placement simulator behind `cox sim`.
//! - [`nodeservice`]: the gRPC service node agents call, and the node lifecycle loop.
//! - [`serve`]: the one listener serving the API and the node service.

pub mod apiserver;
pub mod client;
pub mod nodeservice;
pub mod scheduler;
pub mod serve;
pub mod sim;
pub mod store;
