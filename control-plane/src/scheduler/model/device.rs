//! GPUs as the scheduler sees them: one entry per physical device, with its topology.

/// Thousandths of a GPU in one whole GPU.
pub const MILLI_PER_GPU: u16 = 1000;

/// One GPU of a node, as published in the node's device inventory (ResourceSlice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuDevice {
    /// The device ID the device plugin allocates by (`GPU-<uuid>`).
    pub id: String,
    /// Product name, e.g. `NVIDIA H100 80GB HBM3`.
    pub model: String,
    /// Device memory in MiB.
    pub memory_mib: u64,
    /// NUMA node the GPU's PCIe root hangs off.
    pub numa: u8,
    /// NVLink island: GPUs with the same island number talk over NVLink/NVSwitch.
    pub island: u16,
    /// Whether the device is healthy; unhealthy devices are never allocated.
    pub healthy: bool,
    /// Thousandths of this GPU allocated to pods (whole-GPU pods take all 1000).
    pub used_milli: u16,
}

impl GpuDevice {
    /// A healthy, idle device.
    pub fn new(id: impl Into<String>, model: impl Into<String>, numa: u8, island: u16) -> Self {
        GpuDevice {
            id: id.into(),
            model: model.into(),
            memory_mib: 81_559,
            numa,
            island,
            healthy: true,
            used_milli: 0,
        }
    }

    /// Thousandths of this GPU still free (0 when unhealthy).
    pub fn free_milli(&self) -> u16 {
        if self.healthy {
            MILLI_PER_GPU.saturating_sub(self.used_milli)
        } else {
            0
        }
    }

    /// Whether a whole-GPU pod may take this device.
    pub fn is_idle(&self) -> bool {
        self.healthy && self.used_milli == 0
    }

    /// Whether the model matches one of `models` (substring match; empty means any).
    pub fn model_matches(&self, models: &[String]) -> bool {
        models.is_empty() || models.iter().any(|m| self.model.contains(m.as_str()))
    }
}

/// A share of one device given to a pod: `milli` = 1000 for a whole GPU.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceAlloc {
    /// The device ID.
    pub id: String,
    /// Thousandths of the device (1000 for a whole GPU).
    pub milli: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_and_model() {
        let mut d = GpuDevice::new("GPU-0", "NVIDIA H100 80GB HBM3", 0, 0);
        assert!(d.is_idle());
        d.used_milli = 300;
        assert_eq!(d.free_milli(), 700);
        assert!(!d.is_idle());
        d.healthy = false;
        assert_eq!(d.free_milli(), 0);
        assert!(d.model_matches(&["A100".into(), "H100".into()]));
        assert!(!d.model_matches(&["A100".into()]));
        assert!(d.model_matches(&[]));
    }
}
