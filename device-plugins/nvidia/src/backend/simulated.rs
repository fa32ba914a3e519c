//! Simulated GPUs: a [`Topology`] served through the same code paths as real
//! GPUs, each backed by a real character device node (major 195) that the
//! backend creates. XIDs are injected through [`GpuBackend::inject_xid`]
//! (the `SimulatedGpuControl` gRPC service) and flow to the health monitor
//! exactly like NVML events. Telemetry is synthetic ([`super::synthetic`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::{Duration, Instant};

use crate::Error;
use crate::device_nodes::{DeviceNodeMaker, NVIDIA_MAJOR, NVIDIACTL_MINOR};
use crate::gpu::{GpuBackend, GpuInfo, GpuTelemetry, HealthEvent, HealthEventKind, HostMount};
use crate::topology::Topology;

/// Simulated GPUs of one topology.
pub struct SimulatedBackend {
    topology: Topology,
    dev_dir: PathBuf,
    gpus: Vec<GpuInfo>,
    faulted: Mutex<BTreeSet<String>>,
    started: Instant,
    events_tx: Mutex<Sender<HealthEvent>>,
    events_rx: Mutex<Receiver<HealthEvent>>,
}

impl SimulatedBackend {
    /// Creates the topology's device nodes under `dev_dir` (`nvidiaN` as
    /// 195:N, `nvidiactl` as 195:255) and returns the backend.
    pub fn create(
        topology: Topology,
        dev_dir: &Path,
        nodes: &dyn DeviceNodeMaker,
    ) -> Result<Self, Error> {
        let gpus = topology.gpus(dev_dir);
        let ctl = dev_dir.join("nvidiactl");
        let wanted = gpus
            .iter()
            .map(|g| (PathBuf::from(&g.device_node), g.minor))
            .chain([(ctl, NVIDIACTL_MINOR)]);
        for (path, minor) in wanted {
            nodes
                .ensure_char_device(&path, NVIDIA_MAJOR, minor)
                .map_err(|source| Error::DeviceNode { path, source })?;
        }
        let (tx, rx) = channel();
        Ok(Self {
            topology,
            dev_dir: dev_dir.to_path_buf(),
            gpus,
            faulted: Mutex::new(BTreeSet::new()),
            started: Instant::now(),
            events_tx: Mutex::new(tx),
            events_rx: Mutex::new(rx),
        })
    }

    fn known(&self, device_id: &str) -> Result<(), Error> {
        if self.gpus.iter().any(|g| g.id == device_id) {
            Ok(())
        } else {
            Err(Error::UnknownDevice(device_id.to_string()))
        }
    }

    fn faulted(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.faulted.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl GpuBackend for SimulatedBackend {
    fn describe(&self) -> String {
        format!(
            "simulated {} ({} simulated GPUs, device nodes in {})",
            self.topology.name(),
            self.gpus.len(),
            self.dev_dir.display()
        )
    }

    fn simulated(&self) -> bool {
        true
    }

    fn discover(&self) -> Result<Vec<GpuInfo>, Error> {
        Ok(self.gpus.clone())
    }

    fn control_nodes(&self) -> Vec<String> {
        vec![self.dev_dir.join("nvidiactl").display().to_string()]
    }

    fn driver_mounts(&self) -> Vec<HostMount> {
        Vec::new()
    }

    fn next_event(&self, timeout: Duration) -> Result<Option<HealthEvent>, Error> {
        let rx = self.events_rx.lock().unwrap_or_else(|e| e.into_inner());
        match rx.recv_timeout(timeout) {
            Ok(event) => Ok(Some(event)),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => Ok(None),
        }
    }

    fn recheck(&self, device_id: &str) -> Result<bool, Error> {
        self.known(device_id)?;
        Ok(!self.faulted().contains(device_id))
    }

    fn telemetry(&self, gpu: &GpuInfo) -> Result<GpuTelemetry, Error> {
        self.known(&gpu.id)?;
        let faulted = self.faulted().contains(&gpu.id);
        let secs = self.started.elapsed().as_secs_f64();
        Ok(super::synthetic::reading(gpu, secs, faulted))
    }

    fn inject_xid(&self, device_id: &str, xid: u64) -> Result<(), Error> {
        self.known(device_id)?;
        tracing::warn!(device = %device_id, xid, "injecting XID on simulated GPU");
        self.faulted().insert(device_id.to_string());
        let event = HealthEvent {
            device_id: device_id.to_string(),
            kind: HealthEventKind::Xid(xid),
        };
        // The receiver lives as long as self, so sending cannot fail.
        let _ = self
            .events_tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(event);
        Ok(())
    }

    fn recover(&self, device_id: &str) -> Result<(), Error> {
        self.known(device_id)?;
        tracing::info!(device = %device_id, "clearing simulated fault");
        self.faulted().remove(device_id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device_nodes::RecordingNodeMaker;

    #[test]
    fn creates_nvidia_numbered_nodes() {
        let maker = RecordingNodeMaker::default();
        let b = SimulatedBackend::create(Topology::Pcie4x, Path::new("/sim"), &maker).unwrap();
        let made = maker.made();
        assert_eq!(made.len(), 5);
        assert_eq!(made[2], (PathBuf::from("/sim/nvidia2"), 195, 2));
        assert_eq!(made[4], (PathBuf::from("/sim/nvidiactl"), 195, 255));
        assert!(b.simulated() && b.discover().unwrap().iter().all(|g| g.simulated));
    }

    #[test]
    fn injected_xid_is_an_event_and_a_fault_until_recovered() {
        let b = SimulatedBackend::create(
            Topology::Pcie4x,
            Path::new("/s"),
            &RecordingNodeMaker::default(),
        )
        .unwrap();
        let id = b.discover().unwrap()[1].id.clone();
        b.inject_xid(&id, 79).unwrap();
        let ev = b.next_event(Duration::from_millis(10)).unwrap().unwrap();
        assert_eq!(ev.kind, HealthEventKind::Xid(79));
        assert!(!b.recheck(&id).unwrap());
        b.recover(&id).unwrap();
        assert!(b.recheck(&id).unwrap());
        assert!(matches!(
            b.inject_xid("GPU-nope", 79),
            Err(Error::UnknownDevice(_))
        ));
    }
}
