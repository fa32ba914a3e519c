//! Real GPUs through NVML (`nvml-wrapper`, which loads `libnvidia-ml.so.1`
//! at run time): discovery with topology, health events, re-checks, and the
//! driver files a GPU container needs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::Duration;

use nvml_wrapper::Nvml;
use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor, TopologyLevel};
use nvml_wrapper::error::NvmlError;

use super::{nvml_events, pci};
use crate::Error;
use crate::gpu::{GpuBackend, GpuInfo, GpuTelemetry, HealthEvent, HostMount, NvlinkPeer};

/// NVLinks per GPU NVML may report (NVML_NVLINK_MAX_LINKS).
const MAX_NVLINKS: u32 = 18;
/// Control nodes a CUDA program opens besides `/dev/nvidiaN`.
const CONTROL_NODES: &[&str] = &["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"];
/// Driver user-space files mounted into GPU containers where present.
const DRIVER_FILES: &[&str] = &[
    "libnvidia-ml.so.1",
    "libcuda.so.1",
    "libnvidia-ptxjitcompiler.so.1",
    "libnvidia-nvvm.so.4",
    "libcudadebugger.so.1",
];
const LIB_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
];
const TOOLS: &[&str] = &["/usr/bin/nvidia-smi"];

/// GPUs reported by the NVIDIA driver.
pub struct NvmlBackend {
    nvml: Nvml,
    sysfs_pci: PathBuf,
    events: Mutex<Receiver<HealthEvent>>,
}

fn nvml_err(what: impl Into<String>) -> impl FnOnce(NvmlError) -> Error {
    let what = what.into();
    move |e| Error::Nvml {
        what,
        message: e.to_string(),
    }
}

impl NvmlBackend {
    /// Loads NVML and starts watching health events. Fails with
    /// [`Error::NvmlUnavailable`] where there is no driver.
    pub fn init() -> Result<Self, Error> {
        let nvml = Nvml::init().map_err(|e| Error::NvmlUnavailable(e.to_string()))?;
        let (tx, rx) = channel();
        nvml_events::spawn(tx);
        Ok(Self {
            nvml,
            sysfs_pci: PathBuf::from("/sys/bus/pci/devices"),
            events: Mutex::new(rx),
        })
    }

    /// The driver version, for logs.
    pub fn driver_version(&self) -> String {
        self.nvml
            .sys_driver_version()
            .unwrap_or_else(|e| format!("unknown ({e})"))
    }

    fn gpu(&self, index: u32) -> Result<GpuInfo, Error> {
        let d = self
            .nvml
            .device_by_index(index)
            .map_err(nvml_err(format!("GPU {index}")))?;
        let id = d.uuid().map_err(nvml_err(format!("uuid of GPU {index}")))?;
        let ctx = |what: &str| format!("{what} of {id}");
        let minor = d.minor_number().map_err(nvml_err(ctx("minor number")))?;
        let cc = d
            .cuda_compute_capability()
            .map_err(nvml_err(ctx("compute capability")))?;
        let bus = pci::normalize_bus_id(&d.pci_info().map_err(nvml_err(ctx("PCI info")))?.bus_id);
        Ok(GpuInfo {
            index,
            minor,
            model: d.name().map_err(nvml_err(ctx("name")))?,
            memory_bytes: d.memory_info().map_err(nvml_err(ctx("memory")))?.total,
            compute_capability: format!("{}.{}", cc.major, cc.minor),
            numa_node: pci::numa_node(&self.sysfs_pci, &bus),
            pcie_root: pci::pcie_root(&self.sysfs_pci, &bus),
            pci_bus_id: bus,
            nvlink_peers: Vec::new(),
            // NotSupported on GPUs without MIG: not enabled.
            mig_enabled: d.mig_mode().map(|m| m.current == 1).unwrap_or(false),
            simulated: false,
            device_node: format!("/dev/nvidia{minor}"),
            id,
        })
    }

    /// Active NVLinks of GPU `index`: remote PCI bus ID → link count.
    fn nvlinks(&self, index: u32) -> BTreeMap<String, u32> {
        let mut remote = BTreeMap::new();
        let Ok(d) = self.nvml.device_by_index(index) else {
            return remote;
        };
        for link in 0..MAX_NVLINKS {
            let l = d.link_wrapper_for(link);
            if l.is_active().unwrap_or(false)
                && let Ok(info) = l.remote_pci_info()
            {
                *remote
                    .entry(pci::normalize_bus_id(&info.bus_id))
                    .or_insert(0) += 1;
            }
        }
        remote
    }

    /// Fills NVLink peers: links to another GPU count directly; links to an
    /// NVSwitch connect every GPU that has switch links (all-to-all).
    fn link_peers(&self, gpus: &mut [GpuInfo]) {
        let by_bus: BTreeMap<String, String> = gpus
            .iter()
            .map(|g| (g.pci_bus_id.clone(), g.id.clone()))
            .collect();
        let mut switch_links = BTreeMap::new();
        for gpu in gpus.iter_mut() {
            for (bus, links) in self.nvlinks(gpu.index) {
                match by_bus.get(&bus) {
                    Some(peer) => gpu.nvlink_peers.push(NvlinkPeer {
                        id: peer.clone(),
                        links,
                    }),
                    None => *switch_links.entry(gpu.id.clone()).or_insert(0) += links,
                }
            }
        }
        for gpu in gpus.iter_mut() {
            let Some(&mine) = switch_links.get(&gpu.id) else {
                continue;
            };
            for (peer, &theirs) in &switch_links {
                if *peer != gpu.id && gpu.links_to(peer) == 0 {
                    gpu.nvlink_peers.push(NvlinkPeer {
                        id: peer.clone(),
                        links: mine.min(theirs),
                    });
                }
            }
        }
    }

    /// How GPUs `a` and `b` reach each other over PCIe (for `gpu-check`).
    pub fn pcie_path(&self, a: u32, b: u32) -> Option<TopologyLevel> {
        let da = self.nvml.device_by_index(a).ok()?;
        let db = self.nvml.device_by_index(b).ok()?;
        da.topology_common_ancestor(db).ok()
    }
}

fn find_driver_files() -> Vec<HostMount> {
    let libs = DRIVER_FILES.iter().filter_map(|name| {
        LIB_DIRS
            .iter()
            .map(|dir| Path::new(dir).join(name))
            .find(|p| p.exists())
    });
    let tools = TOOLS.iter().map(PathBuf::from).filter(|p| p.exists());
    libs.chain(tools)
        .map(|p| HostMount {
            host_path: p.display().to_string(),
            container_path: p.display().to_string(),
        })
        .collect()
}

impl GpuBackend for NvmlBackend {
    fn describe(&self) -> String {
        format!("nvml (driver {})", self.driver_version())
    }

    fn simulated(&self) -> bool {
        false
    }

    fn discover(&self) -> Result<Vec<GpuInfo>, Error> {
        let count = self.nvml.device_count().map_err(nvml_err("device count"))?;
        let mut gpus = (0..count)
            .map(|i| self.gpu(i))
            .collect::<Result<Vec<_>, _>>()?;
        self.link_peers(&mut gpus);
        Ok(gpus)
    }

    fn control_nodes(&self) -> Vec<String> {
        CONTROL_NODES
            .iter()
            .filter(|p| Path::new(p).exists())
            .map(|p| p.to_string())
            .collect()
    }

    fn driver_mounts(&self) -> Vec<HostMount> {
        find_driver_files()
    }

    fn next_event(&self, timeout: Duration) -> Result<Option<HealthEvent>, Error> {
        let rx = self.events.lock().unwrap_or_else(|e| e.into_inner());
        match rx.recv_timeout(timeout) {
            Ok(event) => Ok(Some(event)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => {
                // The event thread ended (logged there); keep the loop's pace.
                std::thread::sleep(timeout);
                Ok(None)
            }
        }
    }

    fn recheck(&self, device_id: &str) -> Result<bool, Error> {
        // Healthy again when the GPU answers NVML normally and has no page
        // retirement waiting for a reset (after a double-bit ECC error); a
        // GPU that still faults raises a new critical event, which starts the
        // hold-down again.
        let device = match self.nvml.device_by_uuid(device_id) {
            Ok(d) => d,
            Err(_) => return Ok(false),
        };
        if device.memory_info().is_err() {
            return Ok(false);
        }
        // NotSupported on GPUs without page retirement: nothing pending.
        let pending = device.are_pages_pending_retired().unwrap_or(false);
        Ok(!pending)
    }

    fn telemetry(&self, gpu: &GpuInfo) -> Result<GpuTelemetry, Error> {
        let d = self
            .nvml
            .device_by_uuid(gpu.id.as_str())
            .map_err(nvml_err(format!("GPU {}", gpu.id)))?;
        // Each reading on its own: a board without a power sensor still
        // reports its utilization (dcgm-exporter leaves such fields blank too).
        let read = |what: &str, e: NvmlError| {
            tracing::debug!(device = %gpu.id, reading = what, error = %e, "NVML reading unavailable");
        };
        let memory = d.memory_info().map_err(|e| read("memory", e)).ok();
        Ok(GpuTelemetry {
            utilization_percent: d
                .utilization_rates()
                .map(|u| u.gpu)
                .map_err(|e| read("utilization", e))
                .ok(),
            memory_used_bytes: memory.as_ref().map(|m| m.used),
            memory_free_bytes: memory.as_ref().map(|m| m.free),
            temperature_celsius: d
                .temperature(TemperatureSensor::Gpu)
                .map_err(|e| read("temperature", e))
                .ok(),
            // NVML reports milliwatts.
            power_watts: d
                .power_usage()
                .map(|mw| f64::from(mw) / 1000.0)
                .map_err(|e| read("power", e))
                .ok(),
            sm_clock_mhz: d
                .clock_info(Clock::SM)
                .map_err(|e| read("SM clock", e))
                .ok(),
        })
    }
}
