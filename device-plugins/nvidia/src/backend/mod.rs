//! Implementations of [`crate::gpu::GpuBackend`]: NVML for real GPUs and a
//! simulator for machines without them.

pub mod nvml;
mod nvml_events;
pub mod pci;
pub mod simulated;

pub use nvml::NvmlBackend;
pub use simulated::SimulatedBackend;
