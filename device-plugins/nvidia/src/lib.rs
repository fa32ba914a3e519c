//! The NVIDIA GPU device plugin, speaking the Kubernetes device-plugin API
//! `v1beta1` over a Unix socket.
//!
//! - [`gpu`]: what a GPU is to the plugin, and the [`gpu::GpuBackend`] seam
//!   with two implementations in [`backend`]: NVML (real GPUs) and simulated
//!   GPUs with real NVLink/NUMA layouts ([`topology`]).
//! - [`health`]: XID/ECC policy and the health monitor that marks GPUs
//!   unhealthy and re-checks them until they recover.
//! - [`allocation`]: preferred allocation (NVLink islands, NUMA locality) and
//!   the `Allocate` response (device nodes, env, driver mounts, CDI names).
//! - [`service`]: the gRPC services on the plugin socket.
//! - [`metrics`]: per-GPU Prometheus metrics named like dcgm-exporter's.
//! - [`registration`] and [`plugin`]: registering with `kubelet.sock` and the
//!   serve/register/re-register lifecycle.

pub mod allocation;
pub mod backend;
pub mod device_nodes;
pub mod error;
pub mod gpu;
pub mod health;
pub mod metrics;
pub mod plugin;
pub mod registration;
pub mod service;
pub mod topology;
pub mod unix;

pub use error::Error;
pub use plugin::{NvidiaPlugin, PluginConfig};
