//! What a GPU is to the plugin ([`GpuInfo`]), the health events and
//! telemetry ([`GpuTelemetry`]) backends report, and the [`GpuBackend`] seam
//! between the plugin and NVML (or the simulator).

use std::time::Duration;

use crate::Error;

/// One NVLink neighbour of a GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvlinkPeer {
    /// The peer's device ID (UUID).
    pub id: String,
    /// Active NVLinks between the two GPUs.
    pub links: u32,
}

/// A host path that must appear in the container, e.g. a driver library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMount {
    /// Path on the host.
    pub host_path: String,
    /// Path inside the container.
    pub container_path: String,
}

/// Everything the plugin knows about one GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuInfo {
    /// Device ID advertised in v1beta1: the NVML UUID (`GPU-…`).
    pub id: String,
    /// NVML index.
    pub index: u32,
    /// Minor number of `/dev/nvidiaN`.
    pub minor: u32,
    /// Product name.
    pub model: String,
    /// Total memory in bytes.
    pub memory_bytes: u64,
    /// Compute capability, `major.minor`.
    pub compute_capability: String,
    /// NUMA node, `None` when the platform does not say.
    pub numa_node: Option<i64>,
    /// PCI bus ID, `dddd:bb:dd.f`, lowercase.
    pub pci_bus_id: String,
    /// PCIe root complex, e.g. `pci0000:17`.
    pub pcie_root: String,
    /// NVLink neighbours with active links.
    pub nvlink_peers: Vec<NvlinkPeer>,
    /// MIG mode is enabled.
    pub mig_enabled: bool,
    /// No real GPU backs this device.
    pub simulated: bool,
    /// Host path of the GPU's own device node (`/dev/nvidiaN`).
    pub device_node: String,
}

impl GpuInfo {
    /// Active NVLinks from this GPU to `peer`, 0 when none.
    pub fn links_to(&self, peer: &str) -> u32 {
        self.nvlink_peers
            .iter()
            .find(|p| p.id == peer)
            .map_or(0, |p| p.links)
    }
}

/// What happened to a GPU, as the backend saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthEventKind {
    /// An XID error with its code.
    Xid(u64),
    /// A critical XID whose code NVML could not read.
    UnknownXid,
    /// A double-bit (uncorrectable) ECC error.
    DoubleBitEcc,
}

/// A health event on one GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthEvent {
    /// Device ID (UUID) of the GPU.
    pub device_id: String,
    /// What happened.
    pub kind: HealthEventKind,
}

/// One reading of a GPU's counters, the fields of DCGM's default set that
/// NVML answers directly. `None` where the GPU does not support a reading
/// (NVML's `NotSupported`, e.g. power on some boards): no sample is exported.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GpuTelemetry {
    /// Percent of the last sample period in which a kernel ran (0-100).
    pub utilization_percent: Option<u32>,
    /// Framebuffer memory in use, bytes.
    pub memory_used_bytes: Option<u64>,
    /// Framebuffer memory free, bytes.
    pub memory_free_bytes: Option<u64>,
    /// GPU die temperature, degrees Celsius.
    pub temperature_celsius: Option<u32>,
    /// Power draw, watts.
    pub power_watts: Option<f64>,
    /// SM clock, MHz.
    pub sm_clock_mhz: Option<u32>,
}

/// The seam between the plugin and the GPUs: NVML on real machines, a
/// simulator in tests and demos. Methods block; the plugin calls them from
/// blocking threads.
pub trait GpuBackend: Send + Sync + 'static {
    /// Short name for logs: `nvml` or `simulated <topology>`.
    fn describe(&self) -> String;
    /// True when the GPUs are simulated.
    fn simulated(&self) -> bool;
    /// All GPUs on this machine.
    fn discover(&self) -> Result<Vec<GpuInfo>, Error>;
    /// Control device nodes every GPU container needs (`/dev/nvidiactl`, …).
    fn control_nodes(&self) -> Vec<String>;
    /// Driver libraries and tools to mount into GPU containers.
    fn driver_mounts(&self) -> Vec<HostMount>;
    /// Waits up to `timeout` for the next health event.
    fn next_event(&self, timeout: Duration) -> Result<Option<HealthEvent>, Error>;
    /// Re-checks a GPU marked unhealthy: true when it answers normally again.
    fn recheck(&self, device_id: &str) -> Result<bool, Error>;
    /// Reads the GPU's utilization, memory, temperature, power and clock
    /// now (for `/metrics`). An error means the GPU did not answer at all.
    fn telemetry(&self, gpu: &GpuInfo) -> Result<GpuTelemetry, Error>;
    /// Raises an XID on a simulated GPU (real GPUs refuse).
    fn inject_xid(&self, device_id: &str, xid: u64) -> Result<(), Error> {
        let _ = xid;
        Err(Error::NotSimulated(device_id.to_string()))
    }
    /// Clears a simulated GPU's fault so that its next re-check passes.
    fn recover(&self, device_id: &str) -> Result<(), Error> {
        Err(Error::NotSimulated(device_id.to_string()))
    }
}
