//! The plugin's Prometheus metrics, served at `/metrics` when
//! `--metrics-listen` is given ([`http`]).
//!
//! Per GPU, named and labelled like NVIDIA's dcgm-exporter so that its
//! dashboards and alerts work unchanged: `DCGM_FI_DEV_GPU_UTIL`,
//! `DCGM_FI_DEV_FB_USED`/`_FREE`/`_TOTAL` (MiB), `DCGM_FI_DEV_GPU_TEMP`,
//! `DCGM_FI_DEV_POWER_USAGE` (W), `DCGM_FI_DEV_SM_CLOCK` (MHz) and
//! `DCGM_FI_DEV_XID_ERRORS` (the last XID), labelled `gpu`, `UUID`,
//! `device`, `model_name` (dcgm-exporter's `modelName`, snake_case for promtool), `Hostname`, and `pod`, `namespace`, `container`
//! when a PodResources socket says who holds the GPU ([`pods`]); plus
//! coxswain's `coxswain_gpu_healthy` and `coxswain_gpu_xid_errors_total`.
//! Simulated GPUs carry `simulated="true"` on every series.
//!
//! Readings are taken on each scrape through [`GpuBackend::telemetry`]
//! (NVML or the simulator: one code path), as dcgm-exporter samples its
//! fields; health and XIDs come from the [`PluginState`] the health monitor
//! keeps.
//!
//! [`GpuBackend::telemetry`]: crate::gpu::GpuBackend::telemetry

pub mod http;
pub mod pods;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use prometheus::{Encoder, GaugeVec, IntCounterVec, Opts, Registry, TextEncoder};

use crate::gpu::{GpuInfo, GpuTelemetry};
use crate::service::PluginState;
use pods::{GpuOwner, GpuOwners, PodResourcesSource};

/// The media type of the Prometheus text exposition format.
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Labels of every per-GPU series.
const GPU_LABELS: &[&str] = &["gpu", "UUID", "device"];
/// dcgm-exporter's model label, on the `DCGM_FI_*` series only (promtool
/// lints camelCase; coxswain's own series stay clean and join on `UUID`).
const MODEL_LABEL: &str = "model_name";
/// The holder's labels, with a PodResources socket only; empty (absent to
/// Prometheus) for a GPU no container holds.
const HOLDER_LABELS: &[&str] = &["pod", "namespace", "container"];
/// The XID counter's extra label. The counter has no holder labels, so a
/// GPU changing hands does not restart its count.
const XID_LABEL: &str = "xid";

const MIB: f64 = (1u64 << 20) as f64;

/// The GPU metrics of one plugin and the registry they are exposed from.
pub struct GpuMetrics {
    registry: Registry,
    state: Arc<PluginState>,
    util: GaugeVec,
    fb_used: GaugeVec,
    fb_free: GaugeVec,
    fb_total: GaugeVec,
    temp: GaugeVec,
    power: GaugeVec,
    sm_clock: GaugeVec,
    last_xid: GaugeVec,
    healthy: GaugeVec,
    xids: IntCounterVec,
    pod_resources: Option<PodResourcesSource>,
    /// The last `List` failed (logged once until it answers again).
    pod_resources_failing: AtomicBool,
    /// One scrape refreshes the series at a time.
    scraping: Mutex<()>,
}

impl GpuMetrics {
    /// Metrics of `state`'s GPUs; `hostname` is the `Hostname` label
    /// (dcgm-exporter's: the node name). With `pod_resources`, each GPU's
    /// series name the pod, namespace and container holding it, as that
    /// socket lists them.
    pub fn new(
        state: Arc<PluginState>,
        hostname: &str,
        pod_resources: Option<PodResourcesSource>,
    ) -> Self {
        let registry = Registry::new();
        let holder: &[&str] = if pod_resources.is_some() {
            HOLDER_LABELS
        } else {
            &[]
        };
        let dcgm_labels = [GPU_LABELS, &[MODEL_LABEL], holder].concat();
        let health_labels = [GPU_LABELS, holder].concat();
        let simulated = state.backend.simulated();
        let opts = |name: &str, help: &str| {
            let opts = Opts::new(name, help).const_label("Hostname", hostname);
            if simulated {
                opts.const_label("simulated", "true")
            } else {
                opts
            }
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let vec =
                GaugeVec::new(opts(name, help), labels).expect("valid metric name and labels");
            registry
                .register(Box::new(vec.clone()))
                .expect("metric names are unique");
            vec
        };
        let dcgm = |name: &str, help: &str| gauge(name, help, &dcgm_labels);
        let xids = IntCounterVec::new(
            opts(
                "coxswain_gpu_xid_errors_total",
                "XID errors reported by the GPU since the plugin started, by XID.",
            ),
            &[GPU_LABELS, &[XID_LABEL]].concat(),
        )
        .expect("valid metric name and labels");
        registry
            .register(Box::new(xids.clone()))
            .expect("metric names are unique");
        Self {
            util: dcgm("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %)."),
            fb_used: dcgm("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB)."),
            fb_free: dcgm("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB)."),
            fb_total: dcgm("DCGM_FI_DEV_FB_TOTAL", "Framebuffer memory total (in MiB)."),
            temp: dcgm("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C)."),
            power: dcgm("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W)."),
            sm_clock: dcgm("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz)."),
            last_xid: dcgm(
                "DCGM_FI_DEV_XID_ERRORS",
                "Value of the last XID error encountered.",
            ),
            healthy: gauge(
                "coxswain_gpu_healthy",
                "1 when the device plugin advertises the GPU as Healthy, 0 when Unhealthy.",
                &health_labels,
            ),
            xids,
            registry,
            state,
            pod_resources,
            pod_resources_failing: AtomicBool::new(false),
            scraping: Mutex::new(()),
        }
    }

    /// Who holds the GPUs now: empty without a PodResources socket or when
    /// it does not answer (the series then go out without holders).
    pub async fn owners(&self) -> GpuOwners {
        let Some(source) = &self.pod_resources else {
            return GpuOwners::new();
        };
        match source.owners().await {
            Ok(owners) => {
                if self.pod_resources_failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(socket = %source.socket().display(), "pod resources answer again");
                }
                owners
            }
            Err(error) => {
                if !self.pod_resources_failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(%error, "GPU metrics go without pod labels");
                }
                GpuOwners::new()
            }
        }
    }

    /// Reads every GPU now and returns all metrics in the text format;
    /// `owners` (from [`GpuMetrics::owners`]) label the GPUs held. Blocks on
    /// NVML: call it from a blocking thread.
    pub fn scrape(&self, owners: &GpuOwners) -> String {
        let _one_at_a_time = self.scraping.lock().unwrap_or_else(|e| e.into_inner());
        // Holders change between scrapes: start from no series, so a GPU's
        // previous holder does not linger beside the new one.
        for vec in self.gauges() {
            vec.reset();
        }
        let health = self.state.health.snapshot();
        let nobody = GpuOwner::default();
        for gpu in &self.state.gpus {
            let index = gpu.index.to_string();
            let device = format!("nvidia{}", gpu.minor);
            let owner = owners.get(&gpu.id).unwrap_or(&nobody);
            let holder: &[&str] = if self.pod_resources.is_some() {
                &[
                    owner.pod.as_str(),
                    owner.namespace.as_str(),
                    owner.container.as_str(),
                ]
            } else {
                &[]
            };
            let base = [index.as_str(), gpu.id.as_str(), device.as_str()];
            let dcgm = [&base[..], &[gpu.model.as_str()], holder].concat();
            let health_labels = [&base[..], holder].concat();
            let reading = match self.state.backend.telemetry(gpu) {
                Ok(reading) => reading,
                Err(error) => {
                    tracing::warn!(device = %gpu.id, %error, "reading GPU telemetry");
                    GpuTelemetry::default()
                }
            };
            self.set_readings(gpu, &dcgm, &reading);
            let xids = self.state.xids.get(&gpu.id);
            self.last_xid
                .with_label_values(&dcgm)
                .set(xids.last.unwrap_or(0) as f64);
            for (xid, count) in xids.counts {
                let xid = xid.to_string();
                let counter = self
                    .xids
                    .with_label_values(&[&base[..], &[xid.as_str()]].concat());
                counter.inc_by(count.saturating_sub(counter.get()));
            }
            let is_healthy = health.get(&gpu.id).is_some_and(|h| h.is_healthy());
            self.healthy
                .with_label_values(&health_labels)
                .set(if is_healthy { 1.0 } else { 0.0 });
        }
        let mut buffer = Vec::new();
        // Encoding into a Vec only fails on families that could not have been registered.
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::warn!(%error, "encoding metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }

    fn gauges(&self) -> [&GaugeVec; 9] {
        [
            &self.util,
            &self.fb_used,
            &self.fb_free,
            &self.fb_total,
            &self.temp,
            &self.power,
            &self.sm_clock,
            &self.last_xid,
            &self.healthy,
        ]
    }

    /// Sets the DCGM gauges from one reading; a reading the GPU did not give
    /// has no series (never a stale or made-up value).
    fn set_readings(&self, gpu: &GpuInfo, labels: &[&str], r: &GpuTelemetry) {
        let set = |vec: &GaugeVec, value: Option<f64>| {
            if let Some(v) = value {
                vec.with_label_values(labels).set(v);
            }
        };
        let mib = |bytes: u64| (bytes as f64 / MIB).floor();
        set(&self.util, r.utilization_percent.map(f64::from));
        set(&self.fb_used, r.memory_used_bytes.map(mib));
        set(&self.fb_free, r.memory_free_bytes.map(mib));
        set(&self.fb_total, Some(mib(gpu.memory_bytes)));
        set(&self.temp, r.temperature_celsius.map(f64::from));
        set(&self.power, r.power_watts);
        set(&self.sm_clock, r.sm_clock_mhz.map(f64::from));
    }
}

/// The `Hostname` label: `NODE_NAME` where set (as dcgm-exporter in a
/// Kubernetes pod), else the kernel's host name.
pub fn hostname() -> String {
    std::env::var("NODE_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests;
