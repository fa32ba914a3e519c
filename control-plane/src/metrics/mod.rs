//! Prometheus metrics of the control plane, served at `/metrics` on the API's listener.
//!
//! One [`Metrics`] owns one [`prometheus::Registry`] (never the crate's global default one) and
//! is passed explicitly to what records into it:
//!
//! - [`api`]: the request middleware ([`router_layer`]): `apiserver_request_total`,
//!   `apiserver_request_duration_seconds`, `apiserver_longrunning_requests`, and `/metrics`.
//! - [`store`]: [`MeteredStore`], a [`crate::store::Store`] wrapper timing every operation and
//!   counting objects and bytes per resource.
//! - [`cluster`]: [`run_cluster_collector`], gauges of nodes, GPUs, pods and training jobs
//!   computed from the API through a `kube::Client`.
//! - [`scheduler`]: scheduling attempts, latencies per extension point, pending pods,
//!   gang waits and preemptions, recorded by the scheduler runner.
//! - [`controllers`]: reconciles, errors and their time per controller, recorded by the
//!   training-job and workload controllers.
//!
//! `docs/metrics.md` lists every metric.

pub mod api;
pub mod cluster;
pub mod controllers;
pub mod scheduler;
pub mod store;

use std::sync::Arc;

use prometheus::{Encoder, Registry, TextEncoder};

pub use api::{MetricsLayer, router_layer};
pub use cluster::run_cluster_collector;
pub use store::MeteredStore;

/// The media type of the Prometheus text exposition format.
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The control plane's metrics and the registry they are exposed from.
pub struct Metrics {
    registry: Registry,
    /// API request metrics.
    pub api: api::ApiMetrics,
    /// Store operation and content metrics.
    pub store: store::StoreMetrics,
    /// Cluster state gauges.
    pub cluster: cluster::ClusterMetrics,
    /// Scheduler metrics.
    pub scheduler: scheduler::SchedulerMetrics,
    /// Controller metrics.
    pub controllers: controllers::ControllerMetrics,
}

impl Metrics {
    /// A fresh registry with every control-plane metric registered.
    pub fn new() -> Arc<Metrics> {
        let registry = Registry::new();
        let metrics = Metrics {
            api: api::ApiMetrics::register(&registry),
            store: store::StoreMetrics::register(&registry),
            cluster: cluster::ClusterMetrics::register(&registry),
            scheduler: scheduler::SchedulerMetrics::register(&registry),
            controllers: controllers::ControllerMetrics::register(&registry),
            registry,
        };
        Arc::new(metrics)
    }

    /// Every metric in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into a Vec only fails on metric families that could not have been registered.
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::warn!(%error, "encoding metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

/// Registers `collector` with `registry`; the names are fixed, so a failure is a programming
/// error caught by every test that builds a [`Metrics`].
fn register<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    collector: C,
) -> C {
    registry
        .register(Box::new(collector.clone()))
        .expect("metric names are unique and valid");
    collector
}
