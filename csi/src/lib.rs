//! coxswain's CSI v1 driver for node-local volumes, the CSI client the agent
//! uses, and a conformance suite that checks any CSI driver against the
//! spec's rules.
//!
//! - [`driver`]: Identity, Controller and Node services over a [`Driver`]
//!   that keeps its volumes as loop-mounted ext4 image files (a hard
//!   capacity limit) or plain directories, with state that survives restarts.
//! - [`mounter`]: the seam to the kernel (mounts, loop devices, mkfs).
//! - [`client`]: dialling a driver's Unix socket.
//! - [`metrics`]: RPC and volume metrics for `/metrics`.
//! - [`conformance`]: the spec's rules as runnable checks.

pub mod client;
pub mod conformance;
pub mod driver;
pub mod endpoint;
mod error;
pub mod metrics;
pub mod mounter;
pub mod server;

pub use client::CsiClient;
pub use driver::{DRIVER_NAME, Driver, DriverConfig, TOPOLOGY_KEY};
pub use error::Error;
