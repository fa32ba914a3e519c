//! Unit tests of the GPU metrics over simulated GPUs (no root: the device
//! nodes are only recorded).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::*;
use crate::backend::SimulatedBackend;
use crate::device_nodes::RecordingNodeMaker;
use crate::topology::Topology;
use crate::{NvidiaPlugin, PluginConfig};

fn simulated(topology: Topology) -> Arc<PluginState> {
    let backend =
        SimulatedBackend::create(topology, Path::new("/sim"), &RecordingNodeMaker::default())
            .unwrap();
    let mut config = PluginConfig::new("/plugins", "nvidia.com/gpu");
    config.cdi_dirs = Vec::new();
    NvidiaPlugin::new(config, Arc::new(backend))
        .unwrap()
        .state()
        .clone()
}

/// The value of the one sample of `name` whose line contains every `part`.
fn value(scrape: &str, name: &str, parts: &[&str]) -> Option<f64> {
    let mut found = scrape
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && parts.iter().all(|p| l.contains(p)));
    let line = found.next()?;
    assert!(found.next().is_none(), "{name} {parts:?} is ambiguous");
    line.rsplit_once(' ')?.1.parse().ok()
}

#[test]
fn every_gpu_has_dcgm_series_with_dcgm_labels_marked_simulated() {
    let state = simulated(Topology::DgxH100);
    let text = GpuMetrics::new(state.clone(), "node-a", None).scrape(&GpuOwners::new());
    for gpu in &state.gpus {
        let uuid = format!("UUID=\"{}\"", gpu.id);
        let labels = [
            uuid.as_str(),
            &format!("gpu=\"{}\"", gpu.index),
            &format!("device=\"nvidia{}\"", gpu.minor),
            "model_name=\"NVIDIA H100 80GB HBM3\"",
            "Hostname=\"node-a\"",
            "simulated=\"true\"",
        ];
        for name in [
            "DCGM_FI_DEV_GPU_UTIL",
            "DCGM_FI_DEV_FB_USED",
            "DCGM_FI_DEV_FB_FREE",
            "DCGM_FI_DEV_GPU_TEMP",
            "DCGM_FI_DEV_POWER_USAGE",
            "DCGM_FI_DEV_SM_CLOCK",
        ] {
            assert!(
                value(&text, name, &labels).is_some(),
                "{name} of {}:\n{text}",
                gpu.id
            );
        }
        assert_eq!(value(&text, "DCGM_FI_DEV_FB_TOTAL", &labels), Some(81920.0));
        assert_eq!(value(&text, "DCGM_FI_DEV_XID_ERRORS", &labels), Some(0.0));
        assert_eq!(
            value(&text, "coxswain_gpu_healthy", &[uuid.as_str()]),
            Some(1.0)
        );
        let used = value(&text, "DCGM_FI_DEV_FB_USED", &labels).unwrap();
        let free = value(&text, "DCGM_FI_DEV_FB_FREE", &labels).unwrap();
        assert!(
            (81918.0..=81920.0).contains(&(used + free)),
            "{used} + {free}"
        );
    }
    assert!(text.contains("# TYPE DCGM_FI_DEV_GPU_UTIL gauge"));
    assert!(
        !text.contains("coxswain_gpu_xid_errors_total{"),
        "no XID yet"
    );
}

#[test]
fn xids_and_health_follow_the_plugin_state() {
    let state = simulated(Topology::Pcie4x);
    let metrics = GpuMetrics::new(state.clone(), "n", None);
    let id = state.gpus[2].id.clone();
    let uuid = format!("UUID=\"{id}\"");
    state.xids.record(&id, 13);
    state.xids.record(&id, 79);
    state.xids.record(&id, 79);
    state.health.mark_unhealthy(&id, Instant::now());
    let text = metrics.scrape(&GpuOwners::new());
    assert_eq!(value(&text, "DCGM_FI_DEV_XID_ERRORS", &[&uuid]), Some(79.0));
    assert_eq!(value(&text, "coxswain_gpu_healthy", &[&uuid]), Some(0.0));
    let count = |text: &str, xid: &str| {
        value(
            text,
            "coxswain_gpu_xid_errors_total",
            &[&uuid, &format!("xid=\"{xid}\"")],
        )
    };
    assert_eq!(count(&text, "79"), Some(2.0));
    assert_eq!(count(&text, "13"), Some(1.0));
    // Other GPUs are untouched.
    let other = format!("UUID=\"{}\"", state.gpus[0].id);
    assert_eq!(value(&text, "coxswain_gpu_healthy", &[&other]), Some(1.0));
    assert_eq!(value(&text, "DCGM_FI_DEV_XID_ERRORS", &[&other]), Some(0.0));

    // A second scrape counts only what happened since.
    state.xids.record(&id, 79);
    state.health.mark_healthy(&id);
    let text = metrics.scrape(&GpuOwners::new());
    assert_eq!(count(&text, "79"), Some(3.0));
    assert_eq!(value(&text, "coxswain_gpu_healthy", &[&uuid]), Some(1.0));
}
