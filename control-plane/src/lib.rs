//! The coxswain control plane.
//!
//! - [`store`]: the `Store` trait and its two backends (embedded redb, etcd).
//! - [`sim`]: the placement simulator behind `cox sim`.

pub mod sim;
pub mod store;
