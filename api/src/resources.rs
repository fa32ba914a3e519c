//! Resource names coxswain knows and the rules for GPU resources.
//!
//! `nvidia.com/gpu` counts whole GPUs (the name the NVIDIA device plugin registers);
//! `coxswain.dev/gpu-milli` asks for a share of one GPU in thousandths, 1 to 1000.

use crate::quantity::ParsedQuantity;

/// CPU, in cores (`500m` is half a core).
pub const CPU: &str = "cpu";
/// Memory, in bytes.
pub const MEMORY: &str = "memory";
/// Local ephemeral storage, in bytes.
pub const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
/// Number of pods a node can run.
pub const PODS: &str = "pods";
/// Whole NVIDIA GPUs.
pub const NVIDIA_GPU: &str = "nvidia.com/gpu";
/// A fraction of one GPU, in thousandths (1..=1000).
pub const GPU_MILLI: &str = "coxswain.dev/gpu-milli";
/// Thousandths in one whole GPU.
pub const GPU_MILLI_PER_GPU: i64 = 1000;

/// Whether `name` is one of the GPU resources, which cannot be overcommitted.
pub fn is_gpu_resource(name: &str) -> bool {
    name == NVIDIA_GPU || name == GPU_MILLI
}

/// The GPU-specific problem with a value of resource `name` in a container, if any.
///
/// `nvidia.com/gpu` must be a whole number; `coxswain.dev/gpu-milli` must be a whole
/// number from 1 to 1000. Negative values are reported by the caller for every resource.
pub fn container_gpu_violation(name: &str, value: &ParsedQuantity) -> Option<String> {
    match name {
        NVIDIA_GPU if !value.is_whole() => Some(format!(
            "must be a whole number; use {GPU_MILLI} for a fraction of a GPU"
        )),
        GPU_MILLI if !value.is_whole() => Some(format!(
            "must be a whole number of thousandths of a GPU (1 to {GPU_MILLI_PER_GPU})"
        )),
        GPU_MILLI
            if value.millis() < 1000 || value.millis() > i128::from(GPU_MILLI_PER_GPU) * 1000 =>
        {
            Some(format!(
                "must be between 1 and {GPU_MILLI_PER_GPU} thousandths of a GPU; \
                 use {NVIDIA_GPU} for whole GPUs"
            ))
        }
        _ => None,
    }
}

/// The GPU-specific problem with a total (a quota or a gang's minimum), if any.
///
/// Totals may exceed one GPU, but both GPU resources still count whole units.
pub fn total_gpu_violation(name: &str, value: &ParsedQuantity) -> Option<String> {
    match name {
        NVIDIA_GPU if !value.is_whole() => Some(format!(
            "must be a whole number; use {GPU_MILLI} for a fraction of a GPU"
        )),
        GPU_MILLI if !value.is_whole() => {
            Some("must be a whole number of thousandths of a GPU".to_string())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str) -> ParsedQuantity {
        ParsedQuantity::parse(text).expect("valid quantity")
    }

    #[test]
    fn whole_gpus_only() {
        assert_eq!(container_gpu_violation(NVIDIA_GPU, &q("2")), None);
        assert_eq!(container_gpu_violation(NVIDIA_GPU, &q("0")), None);
        let err = container_gpu_violation(NVIDIA_GPU, &q("500m"));
        assert!(err.is_some_and(|e| e.contains(GPU_MILLI)));
    }

    #[test]
    fn gpu_milli_between_1_and_1000() {
        assert_eq!(container_gpu_violation(GPU_MILLI, &q("1")), None);
        assert_eq!(container_gpu_violation(GPU_MILLI, &q("1000")), None);
        assert!(container_gpu_violation(GPU_MILLI, &q("0")).is_some());
        assert!(container_gpu_violation(GPU_MILLI, &q("1001")).is_some());
        assert!(container_gpu_violation(GPU_MILLI, &q("1.5")).is_some());
        assert_eq!(total_gpu_violation(GPU_MILLI, &q("4500")), None);
        assert!(total_gpu_violation(NVIDIA_GPU, &q("1.5")).is_some());
        assert_eq!(container_gpu_violation(CPU, &q("1.5")), None);
    }
}
