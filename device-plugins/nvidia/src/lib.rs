//! The NVIDIA GPU device plugin.
//!
//! Not built yet: the devices issue fills it with NVML discovery, topology,
//! health and a simulated backend, served over the Kubernetes device-plugin
//! API `v1beta1`.
