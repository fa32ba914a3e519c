//! The driver's Prometheus metrics, served at `/metrics` when `cox-csi` is
//! given `--metrics-listen` ([`http`]).
//!
//! - RPCs, named as go-grpc-prometheus names them (the usual Go gRPC server
//!   metrics, so existing gRPC dashboards work): `grpc_server_handled_total`
//!   by service, method and gRPC code, and `grpc_server_handling_seconds`,
//!   recorded by [`GrpcMetricsLayer`] around the three CSI services.
//! - Volumes: `coxswain_csi_volumes` and `coxswain_csi_volume_provisioned_bytes`
//!   by backing, staged and published volumes, the bytes left to provision
//!   and the capacity, read from the [`Driver`] on each scrape.

mod grpc;
pub mod http;

use std::sync::Mutex;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::driver::Driver;
use crate::driver::usage::BackingUsage;

pub use grpc::{GrpcMetricsLayer, GrpcMetricsService};

/// The media type of the Prometheus text exposition format.
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Latency buckets, 1 ms to 60 s: Probe answers in microseconds, a
/// CreateVolume with `mkfs` of a large image takes seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The CSI driver's metrics and the registry they are exposed from.
pub struct CsiMetrics {
    registry: Registry,
    handled: IntCounterVec,
    handling: HistogramVec,
    volumes: GaugeVec,
    provisioned: GaugeVec,
    staged: IntGauge,
    published: IntGauge,
    available: IntGauge,
    capacity: IntGauge,
    /// One scrape refreshes the volume gauges at a time.
    scraping: Mutex<()>,
}

fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    registry
        .register(Box::new(c.clone()))
        .expect("metric names are unique and valid");
    c
}

impl Default for CsiMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl CsiMetrics {
    /// A fresh registry (never the crate's global one) with every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let rpc = &["grpc_type", "grpc_service", "grpc_method"];
        let handled = IntCounterVec::new(
            Opts::new(
                "grpc_server_handled_total",
                "RPCs completed on the server, regardless of success or failure.",
            ),
            &[&rpc[..], &["grpc_code"]].concat(),
        )
        .expect("valid counter");
        let handling = HistogramVec::new(
            HistogramOpts::new(
                "grpc_server_handling_seconds",
                "Response latency (seconds) of RPCs handled by the server.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            rpc,
        )
        .expect("valid histogram");
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("valid gauge");
        let by_backing = |name: &str, help: &str| {
            GaugeVec::new(Opts::new(name, help), &["backing"]).expect("valid gauge")
        };
        Self {
            handled: register(&registry, handled),
            handling: register(&registry, handling),
            volumes: register(
                &registry,
                by_backing(
                    "coxswain_csi_volumes",
                    "Volumes the driver holds, by backing.",
                ),
            ),
            provisioned: register(
                &registry,
                by_backing(
                    "coxswain_csi_volume_provisioned_bytes",
                    "Provisioned capacity of the driver's volumes, by backing.",
                ),
            ),
            staged: register(
                &registry,
                gauge(
                    "coxswain_csi_volumes_staged",
                    "Volumes staged on this node.",
                ),
            ),
            published: register(
                &registry,
                gauge(
                    "coxswain_csi_volumes_published",
                    "Volumes published at one target path or more.",
                ),
            ),
            available: register(
                &registry,
                gauge(
                    "coxswain_csi_available_bytes",
                    "Bytes that can still be provisioned (what GetCapacity reports).",
                ),
            ),
            capacity: register(
                &registry,
                gauge(
                    "coxswain_csi_capacity_bytes",
                    "Bytes this node may provision in all: --capacity, else provisioned plus available.",
                ),
            ),
            registry,
            scraping: Mutex::new(()),
        }
    }

    /// Records one finished RPC: `code` is the gRPC code's name (`OK`, `NotFound`, ...).
    fn observe(&self, service: &str, method: &str, code: &str, seconds: f64) {
        self.handled
            .with_label_values(&["unary", service, method, code])
            .inc();
        self.handling
            .with_label_values(&["unary", service, method])
            .observe(seconds);
    }

    /// Reads the driver's volumes and returns every metric in the text
    /// format. Takes the driver's lock: call it from a blocking thread.
    pub fn scrape(&self, driver: &Driver) -> String {
        let _one_at_a_time = self.scraping.lock().unwrap_or_else(|e| e.into_inner());
        match driver.usage() {
            Ok(usage) => {
                let set = |backing: &str, u: BackingUsage| {
                    self.volumes
                        .with_label_values(&[backing])
                        .set(u.volumes as f64);
                    self.provisioned
                        .with_label_values(&[backing])
                        .set(u.provisioned_bytes as f64);
                };
                set("image", usage.image);
                set("directory", usage.directory);
                self.staged.set(clamp(usage.staged));
                self.published.set(clamp(usage.published));
                self.available.set(clamp(usage.available_bytes));
                let provisioned = usage.image.provisioned_bytes + usage.directory.provisioned_bytes;
                self.capacity.set(clamp(
                    usage
                        .capacity_limit_bytes
                        .unwrap_or(provisioned + usage.available_bytes),
                ));
            }
            // Keep the last values; the error is the operator's to see.
            Err(error) => tracing::warn!(%error, "reading volume usage for /metrics"),
        }
        let mut buffer = Vec::new();
        // Encoding into a Vec only fails on families that could not have been registered.
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::warn!(%error, "encoding metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
