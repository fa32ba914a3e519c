//! The coxswain control plane.
//!
//! - [`apiserver`]: the Kubernetes-compatible REST API.
//! - [`store`]: the `Store` trait and its two backends (embedded redb, etcd).
//! - [`sim`]: the placement simulator behind `cox sim`.

pub mod apiserver;
pub mod sim;
pub mod store;
