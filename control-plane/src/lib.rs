//! The coxswain control plane.
//!
//! - [`apiserver`]: the Kubernetes-compatible REST API.
//! - [`controllers`]: level-triggered controllers (training jobs, garbage collector) over a
//!   `kube::Client`.
//! - [`store`]: the `Store` trait and its two backends (embedded redb, etcd).
//! - [`scheduler`]: the scheduler framework, plugins (GPU devices, gangs, topology,
//!   preemption) and its hollow-node benchmark.
//! - [`sim`]: the placement simulator behind `cox sim`.

pub mod apiserver;
pub mod client;
pub mod controllers;
pub mod scheduler;
pub mod sim;
pub mod store;
