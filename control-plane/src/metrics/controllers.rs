//! Controller metrics, named as controller-runtime names them:
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `controller_runtime_reconcile_total` | counter | `controller`, `result` (`success`, `error`) |
//! | `controller_runtime_reconcile_errors_total` | counter | `controller` |
//! | `controller_runtime_reconcile_time_seconds` | histogram | `controller` |
//! | `controller_runtime_active_workers` | gauge | `controller` (reconciles in progress) |
//!
//! `controller` is the controller's name: `trainingjob`, `pytorchjob`, `job`, `cronjob`,
//! `replicaset`, `deployment`, `daemonset`. The work queue's depth is kube-runtime's and not
//! observable from outside it, so controller-runtime's `workqueue_*` series are not served.

use std::future::Future;
use std::time::Instant;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use super::register;

/// Controller metrics; cheap to clone (the series are shared).
#[derive(Clone)]
pub struct ControllerMetrics {
    /// `controller_runtime_reconcile_total{controller,result}`.
    pub reconciles: IntCounterVec,
    /// `controller_runtime_reconcile_errors_total{controller}`.
    pub errors: IntCounterVec,
    /// `controller_runtime_reconcile_time_seconds{controller}`.
    pub duration: HistogramVec,
    /// `controller_runtime_active_workers{controller}`.
    pub active: IntGaugeVec,
}

impl std::fmt::Debug for ControllerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerMetrics").finish_non_exhaustive()
    }
}

impl ControllerMetrics {
    pub(super) fn register(registry: &Registry) -> ControllerMetrics {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register(
                registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        ControllerMetrics {
            reconciles: counter(
                "controller_runtime_reconcile_total",
                "Reconciles per controller and result.",
                &["controller", "result"],
            ),
            errors: counter(
                "controller_runtime_reconcile_errors_total",
                "Reconciles that returned an error, per controller.",
                &["controller"],
            ),
            duration: register(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "controller_runtime_reconcile_time_seconds",
                        "Time per reconcile, per controller.",
                    )
                    .buckets(
                        prometheus::exponential_buckets(0.000_1, 2.0, 18).expect("valid buckets"),
                    ),
                    &["controller"],
                )
                .expect("valid metric"),
            ),
            active: register(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "controller_runtime_active_workers",
                        "Reconciles in progress, per controller.",
                    ),
                    &["controller"],
                )
                .expect("valid metric"),
            ),
        }
    }

    /// Runs one reconcile of `controller`, recording its time and result.
    pub async fn observe<T, E, F>(&self, controller: &str, reconcile: F) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
    {
        let active = self.active.with_label_values(&[controller]);
        active.inc();
        let started = Instant::now();
        let result = reconcile.await;
        active.dec();
        self.duration
            .with_label_values(&[controller])
            .observe(started.elapsed().as_secs_f64());
        let outcome = if result.is_ok() { "success" } else { "error" };
        self.reconciles
            .with_label_values(&[controller, outcome])
            .inc();
        if result.is_err() {
            self.errors.with_label_values(&[controller]).inc();
        }
        result
    }
}

/// Runs `reconcile` through `metrics` when there are metrics, else as it is.
pub async fn observe<T, E, F>(
    metrics: Option<&ControllerMetrics>,
    controller: &str,
    reconcile: F,
) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
{
    match metrics {
        Some(metrics) => metrics.observe(controller, reconcile).await,
        None => reconcile.await,
    }
}
