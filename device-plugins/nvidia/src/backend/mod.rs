//! Implementations of [`crate::gpu::GpuBackend`]: NVML for real GPUs and a
//! simulator for machines without them, with synthetic telemetry.

pub mod nvml;
mod nvml_events;
pub mod pci;
pub mod simulated;
pub mod synthetic;

pub use nvml::NvmlBackend;
pub use simulated::SimulatedBackend;
