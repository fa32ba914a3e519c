//! Real GPUs through NVML, end to end over the plugin socket: discovery,
//! registration, ListAndWatch and Allocate; and the `/metrics` text read
//! through NVML. Runs where an NVIDIA driver is installed
//! (`scripts/gpu-check` runs it); elsewhere it says why it skipped.

mod common;

use std::sync::Arc;

use common::{FakeKubelet, WAIT, channel};
use coxswain_nvidia_plugin::NvidiaPlugin;
use coxswain_nvidia_plugin::backend::NvmlBackend;
use coxswain_nvidia_plugin::gpu::GpuBackend;
use coxswain_nvidia_plugin::metrics::GpuMetrics;
use coxswain_proto::deviceplugin::v1beta1::device_plugin_client::DevicePluginClient;
use coxswain_proto::deviceplugin::v1beta1::{AllocateRequest, ContainerAllocateRequest, Empty};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn real_gpus_are_discovered_and_allocated() {
    let backend = match NvmlBackend::init() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("skipping real_gpus_are_discovered_and_allocated: {e}");
            return;
        }
    };
    let gpus = backend.discover().unwrap();
    assert!(!gpus.is_empty(), "NVML loaded but reports no GPU");
    for g in &gpus {
        eprintln!("{g:?}");
        assert!(g.id.starts_with("GPU-") && !g.simulated);
        assert!(
            std::path::Path::new(&g.device_node).exists(),
            "{}",
            g.device_node
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let plugin_dir = dir.path().join("device-plugins");
    let mut kubelet = FakeKubelet::start(&plugin_dir);
    let server = NvidiaPlugin::new(common::config(&plugin_dir), Arc::new(backend)).unwrap();
    let socket = server.socket_path();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(server.run(cancel.clone()));
    assert_eq!(
        kubelet.next_registration().await.resource_name,
        "nvidia.com/gpu"
    );

    let mut dp = DevicePluginClient::new(channel(&socket).await);
    let mut stream = dp.list_and_watch(Empty {}).await.unwrap().into_inner();
    let list = tokio::time::timeout(WAIT, stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(list.devices.len(), gpus.len());
    let resp = dp
        .allocate(AllocateRequest {
            container_requests: vec![ContainerAllocateRequest {
                devices_ids: vec![gpus[0].id.clone()],
            }],
        })
        .await
        .unwrap()
        .into_inner();
    let c = &resp.container_responses[0];
    eprintln!("Allocate({}) = {c:?}", gpus[0].id);
    assert_eq!(c.envs["NVIDIA_VISIBLE_DEVICES"], gpus[0].id);
    if c.cdi_devices.is_empty() {
        let hosts: Vec<&str> = c.devices.iter().map(|d| d.host_path.as_str()).collect();
        assert!(
            hosts.contains(&gpus[0].device_node.as_str()) && hosts.contains(&"/dev/nvidiactl"),
            "{hosts:?}"
        );
        assert!(
            !hosts
                .iter()
                .any(|h| gpus[1..].iter().any(|g| g.device_node == *h)),
            "{hosts:?}"
        );
    }
    cancel.cancel();
    task.await.unwrap().unwrap();
}

/// The value of the one sample of `name` whose line contains `part`.
fn value(scrape: &str, name: &str, part: &str) -> Option<f64> {
    scrape
        .lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(part))
        .and_then(|l| l.rsplit_once(' ')?.1.parse().ok())
}

#[test]
fn real_gpus_report_dcgm_metrics_through_nvml() {
    let backend = match NvmlBackend::init() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("skipping real_gpus_report_dcgm_metrics_through_nvml: {e}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let server = NvidiaPlugin::new(
        common::config(&dir.path().join("device-plugins")),
        Arc::new(backend),
    )
    .unwrap();
    let state = server.state().clone();
    let text = GpuMetrics::new(state.clone(), "gpu-check", None).scrape(&Default::default());
    assert!(
        !text.contains("simulated="),
        "real GPUs are not marked simulated"
    );
    for g in &state.gpus {
        let uuid = format!("UUID=\"{}\"", g.id);
        let read = |name: &str| value(&text, name, &uuid);
        eprintln!(
            "GPU {} {}: util {:?} %, fb used/free/total {:?}/{:?}/{:?} MiB, {:?} C, {:?} W, SM {:?} MHz, last XID {:?}",
            g.index,
            g.id,
            read("DCGM_FI_DEV_GPU_UTIL"),
            read("DCGM_FI_DEV_FB_USED"),
            read("DCGM_FI_DEV_FB_FREE"),
            read("DCGM_FI_DEV_FB_TOTAL"),
            read("DCGM_FI_DEV_GPU_TEMP"),
            read("DCGM_FI_DEV_POWER_USAGE"),
            read("DCGM_FI_DEV_SM_CLOCK"),
            read("DCGM_FI_DEV_XID_ERRORS"),
        );
        let util = read("DCGM_FI_DEV_GPU_UTIL").expect("utilization");
        assert!((0.0..=100.0).contains(&util), "{util}");
        let total = read("DCGM_FI_DEV_FB_TOTAL").expect("framebuffer total");
        let used = read("DCGM_FI_DEV_FB_USED").expect("framebuffer used");
        let free = read("DCGM_FI_DEV_FB_FREE").expect("framebuffer free");
        assert!(
            used + free <= total + 1.0 && used + free > 0.9 * total,
            "{used} + {free} of {total}"
        );
        assert!(read("DCGM_FI_DEV_GPU_TEMP").is_some_and(|t| t > 0.0 && t < 120.0));
        assert!(read("DCGM_FI_DEV_SM_CLOCK").is_some_and(|c| c > 0.0));
        assert_eq!(read("coxswain_gpu_healthy"), Some(1.0));
    }
}
