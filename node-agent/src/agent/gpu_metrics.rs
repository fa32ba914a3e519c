//! `GET /metrics/gpus` on the agent's logs port: each GPU's utilization and health as the
//! GPU plugin measures them (`cox agent --gpu-metrics-url`, the plugin's `/metrics`:
//! `DCGM_FI_DEV_GPU_UTIL` and `coxswain_gpu_healthy`, labelled with the GPU's `UUID`),
//! relabelled to the devices this node advertises in its ResourceSlices: `device_id` (the
//! device plugin's ID, which the gpu-devices annotation names), `gpu` (the index the node
//! publishes) and `resource`. A GPU the node does not advertise is left out. `cox top gpus`
//! reads it through the node proxy.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::http::{StatusCode, header};
use coxswain_api::devices::{GpuDevice, gpus_from_slice};
use coxswain_api::prometheus_text::{self, Sample};
use tokio::sync::watch;

use crate::devices::DeviceInventory;

/// The plugin's utilization series (dcgm-exporter's name).
const PLUGIN_UTIL: &str = "DCGM_FI_DEV_GPU_UTIL";
/// The plugin's health series.
const PLUGIN_HEALTHY: &str = "coxswain_gpu_healthy";
/// The utilization this endpoint serves, in percent.
pub const UTILIZATION: &str = "coxswain_node_gpu_utilization_percent";
/// The health this endpoint serves: 1 healthy, 0 unhealthy.
pub const HEALTHY: &str = "coxswain_node_gpu_healthy";

/// How long the plugin may take to answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The devices `inventory` advertises.
pub fn advertised(inventory: &DeviceInventory) -> Vec<GpuDevice> {
    let mut gpus: Vec<GpuDevice> = inventory
        .resource_slices
        .iter()
        .filter_map(|slice| gpus_from_slice(slice).ok())
        .flatten()
        .collect();
    gpus.sort_by(|a, b| (&a.resource_name, a.index).cmp(&(&b.resource_name, b.index)));
    gpus
}

/// The plugin's `samples` for the `gpus` the node advertises, as `/metrics/gpus` text.
pub fn relabel(samples: &[Sample], gpus: &[GpuDevice]) -> String {
    let mut out = String::new();
    for (name, source, help) in [
        (
            UTILIZATION,
            PLUGIN_UTIL,
            "GPU utilization in percent as the GPU plugin reports it (DCGM_FI_DEV_GPU_UTIL), by the device ID this node advertises.",
        ),
        (
            HEALTHY,
            PLUGIN_HEALTHY,
            "1 when the GPU plugin reports the GPU healthy, 0 when unhealthy, by the device ID this node advertises.",
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for gpu in gpus {
            let reading = samples
                .iter()
                .find(|s| s.name == source && s.label("UUID") == Some(gpu.uuid.as_str()));
            if let Some(reading) = reading {
                let _ = writeln!(
                    out,
                    "{name}{{device_id=\"{}\",gpu=\"{}\",resource=\"{}\"}} {}",
                    escape(&gpu.uuid),
                    gpu.index,
                    escape(&gpu.resource_name),
                    reading.value
                );
            }
        }
    }
    out
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The node's device inventory, once its device manager has started.
pub type InventorySource = Arc<OnceLock<watch::Receiver<DeviceInventory>>>;

/// The `/metrics/gpus` route: the plugin at `url` (none: 404 saying so), relabelled to what
/// `inventory` advertises (not set: no GPUs).
pub fn router(url: Option<String>, inventory: InventorySource) -> axum::Router {
    let http = reqwest::Client::builder().timeout(TIMEOUT).build().ok();
    let state = Arc::new((url, inventory, http));
    let handler = move || {
        let state = state.clone();
        async move {
            let (url, inventory, http) = &*state;
            let text = |status, body: String| {
                (
                    status,
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    body,
                )
            };
            let (Some(url), Some(http)) = (url, http) else {
                return text(
                    StatusCode::NOT_FOUND,
                    "this agent has no GPU figures (start it with --gpu-metrics-url)\n".into(),
                );
            };
            let fetched = async {
                let response = http.get(url).send().await?.error_for_status()?;
                response.text().await
            };
            let body = match fetched.await {
                Ok(body) => body,
                Err(e) => {
                    return text(
                        StatusCode::BAD_GATEWAY,
                        format!("the GPU plugin's metrics at {url}: {e} (is it running?)\n"),
                    );
                }
            };
            let samples = match prometheus_text::parse(&body) {
                Ok(samples) => samples,
                Err(e) => {
                    return text(
                        StatusCode::BAD_GATEWAY,
                        format!("the GPU plugin's metrics at {url}: {e}\n"),
                    );
                }
            };
            let gpus = inventory
                .get()
                .map(|i| advertised(&i.borrow()))
                .unwrap_or_default();
            text(StatusCode::OK, relabel(&samples, &gpus))
        }
    };
    axum::Router::new().route("/metrics/gpus", axum::routing::get(handler))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(uuid: &str, index: u32) -> GpuDevice {
        GpuDevice {
            uuid: uuid.into(),
            index,
            resource_name: "nvidia.com/gpu".into(),
            ..GpuDevice::default()
        }
    }

    #[test]
    fn the_plugins_readings_under_the_advertised_ids() {
        let plugin = "\
# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{gpu=\"0\",UUID=\"GPU-a\",device=\"nvidia0\",model_name=\"H100\",Hostname=\"n1\"} 37
DCGM_FI_DEV_GPU_UTIL{gpu=\"1\",UUID=\"GPU-b\",device=\"nvidia1\",model_name=\"H100\",Hostname=\"n1\"} 80
DCGM_FI_DEV_GPU_UTIL{gpu=\"2\",UUID=\"GPU-gone\",device=\"nvidia2\",model_name=\"H100\",Hostname=\"n1\"} 5
coxswain_gpu_healthy{gpu=\"0\",UUID=\"GPU-a\",device=\"nvidia0\",Hostname=\"n1\"} 1
coxswain_gpu_healthy{gpu=\"1\",UUID=\"GPU-b\",device=\"nvidia1\",Hostname=\"n1\"} 0
";
        let samples = prometheus_text::parse(plugin).unwrap();
        let text = relabel(&samples, &[gpu("GPU-a", 0), gpu("GPU-b", 1)]);
        for line in [
            "coxswain_node_gpu_utilization_percent{device_id=\"GPU-a\",gpu=\"0\",resource=\"nvidia.com/gpu\"} 37\n",
            "coxswain_node_gpu_utilization_percent{device_id=\"GPU-b\",gpu=\"1\",resource=\"nvidia.com/gpu\"} 80\n",
            "coxswain_node_gpu_healthy{device_id=\"GPU-b\",gpu=\"1\",resource=\"nvidia.com/gpu\"} 0\n",
            "# TYPE coxswain_node_gpu_healthy gauge\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("GPU-gone"), "{text}");
        assert!(!relabel(&samples, &[]).contains("device_id"));
    }
}
