//! The coxswain control plane.
//!
//! - [`apiserver`]: the Kubernetes-compatible REST API.
//! - [`controllers`]: level-triggered controllers (training jobs, garbage collector) over a
//!   `kube::Client`.
//! - [`events`]: the core/v1 Event recorder components report through.
//! - [`store`]: the `Store` trait and its two backends (embedded redb, etcd).
//! - [`scheduler`]: the scheduler framework, plugins (GPU devices, gangs, topology,
//!   preemption) and its hollow-node benchmark.
//! - [`sim`]: the placement simulator behind `cox sim`.
//! - [`nodeservice`]: the gRPC service node agents call, and the node lifecycle loop.
//! - [`serve`]: the one listener serving the API and the node service.
//! - [`workloads`]: the Job, CronJob, ReplicaSet, Deployment and DaemonSet controllers.

pub mod apiserver;
pub mod client;
pub mod controllers;
pub mod events;
pub mod metrics;
pub mod nodeservice;
pub mod scheduler;
pub mod serve;
pub mod serve_tls;
pub mod sim;
pub mod store;
pub mod workloads;
