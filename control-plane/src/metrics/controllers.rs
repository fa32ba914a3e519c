//! Controller metrics, named as controller-runtime names them:
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `controller_runtime_reconcile_total` | counter | `controller`, `result` (`success`, `error`) |
//! | `controller_runtime_reconcile_errors_total` | counter | `controller` |
//! | `controller_runtime_reconcile_time_seconds` | histogram | `controller` |
//! | `controller_runtime_active_workers` | gauge | `controller` (reconciles in progress) |
//! | `workqueue_depth` | gauge | `name` (objects waiting for a reconcile) |
//! | `workqueue_adds_total` | counter | `name` |
//! | `workqueue_queue_duration_seconds` | histogram | `name` (wait from add to reconcile) |
//!
//! `controller` and `name` are the controller's name: `trainingjob`, `pytorchjob`, `job`,
//! `cronjob`, `replicaset`, `deployment`, `daemonset`, `persistentvolumeclaim`,
//! `persistentvolume`. The `workqueue_*` series (client-go's names) come from
//! [`WorkQueue`](crate::controllers::work_queue::WorkQueue), which watches kube-runtime's
//! queue from both ends.

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
    /// `workqueue_depth{name}`.
    pub queue_depth: IntGaugeVec,
    /// `workqueue_adds_total{name}`.
    pub queue_adds: IntCounterVec,
    /// `workqueue_queue_duration_seconds{name}`.
    pub queue_duration: HistogramVec,
}

impl std::fmt::Debug for ControllerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerMetrics").finish_non_exhaustive()
    }
}

impl ControllerMetrics {
    pub(crate) fn register(registry: &Registry) -> ControllerMetrics {
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
            queue_depth: register(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "workqueue_depth",
                        "Objects waiting for a reconcile, per controller.",
                    ),
                    &["name"],
                )
                .expect("valid metric"),
            ),
            queue_adds: counter(
                "workqueue_adds_total",
                "Objects added to the work queue, per controller.",
                &["name"],
            ),
            queue_duration: register(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "workqueue_queue_duration_seconds",
                        "How long an object waited in the work queue before its reconcile started.",
                    )
                    .buckets(
                        prometheus::exponential_buckets(0.000_1, 2.0, 18).expect("valid buckets"),
                    ),
                    &["name"],
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
