//! Scheduler metrics, named as kube-scheduler names them where one exists:
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `scheduler_schedule_attempts_total` | counter | `result` (`scheduled`, `waiting` — reserved, held at Permit for its gang —, `unschedulable`, `error`), `profile` |
//! | `scheduler_scheduling_attempt_duration_seconds` | histogram | `result`, `profile` |
//! | `scheduler_framework_extension_point_duration_seconds` | histogram | `extension_point` (`PreFilter`, `Filter` — all nodes tried in the cycle —, `PostFilter`, `Score`, `Reserve`, `Permit`, `Bind`), `profile` |
//! | `scheduler_pod_scheduling_duration_seconds` | histogram | — (end to end: first seen pending → bound) |
//! | `scheduler_pending_pods` | gauge | `queue` (`active`, `backoff`, `unschedulable`: the scheduling queue's parts) |
//! | `coxswain_scheduler_pending_pods` | gauge | `queue` (the `Queue` object, `""` for none), `reason` (the plugin that last rejected the pod, `Queued` when never tried) |
//! | `coxswain_scheduler_gang_wait_seconds` | histogram | — (first member seen pending → `minMember` bound) |
//! | `scheduler_preemption_attempts_total` | counter | — |
//! | `scheduler_preemption_victims` | histogram | — (victims per preemption) |
//!
//! The scheduler runner records into these when its `RunnerConfig::metrics` is set.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

use super::register;

/// The scheduler profile label (one profile).
pub const PROFILE: &str = "default-scheduler";

/// Scheduler metrics.
pub struct SchedulerMetrics {
    /// `scheduler_schedule_attempts_total{result,profile}`.
    pub attempts: IntCounterVec,
    /// `scheduler_scheduling_attempt_duration_seconds{result,profile}`.
    pub attempt_duration: HistogramVec,
    /// `scheduler_framework_extension_point_duration_seconds{extension_point,profile}`.
    pub extension_point_duration: HistogramVec,
    /// `scheduler_pod_scheduling_duration_seconds`.
    pub pod_scheduling_duration: Histogram,
    /// `scheduler_pending_pods{queue}`.
    pub pending: IntGaugeVec,
    /// `coxswain_scheduler_pending_pods{queue,reason}`.
    pub pending_by_reason: IntGaugeVec,
    /// `coxswain_scheduler_gang_wait_seconds`.
    pub gang_wait: Histogram,
    /// `scheduler_preemption_attempts_total`.
    pub preemption_attempts: IntCounter,
    /// `scheduler_preemption_victims`.
    pub preemption_victims: Histogram,
}

/// 10 µs to ~42 s, doubling: decisions take tens of microseconds, waits seconds.
fn latency_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.000_01, 2.0, 23).expect("valid buckets")
}

impl SchedulerMetrics {
    pub(super) fn register(registry: &Registry) -> SchedulerMetrics {
        let histogram_vec = |name: &str, help: &str, labels: &[&str], buckets: Vec<f64>| {
            register(
                registry,
                HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
                    .expect("valid metric"),
            )
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            register(
                registry,
                Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                    .expect("valid metric"),
            )
        };
        SchedulerMetrics {
            attempts: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "scheduler_schedule_attempts_total",
                        "Scheduling cycles by result.",
                    ),
                    &["result", "profile"],
                )
                .expect("valid metric"),
            ),
            attempt_duration: histogram_vec(
                "scheduler_scheduling_attempt_duration_seconds",
                "Duration of one scheduling cycle in seconds, by result.",
                &["result", "profile"],
                latency_buckets(),
            ),
            extension_point_duration: histogram_vec(
                "scheduler_framework_extension_point_duration_seconds",
                "Time spent at one extension point in one scheduling cycle, in seconds.",
                &["extension_point", "profile"],
                latency_buckets(),
            ),
            pod_scheduling_duration: histogram(
                "scheduler_pod_scheduling_duration_seconds",
                "Time from a pod first seen pending to its binding, in seconds.",
                latency_buckets(),
            ),
            pending: register(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "scheduler_pending_pods",
                        "Pods in the scheduling queue, by part (active, backoff, unschedulable).",
                    ),
                    &["queue"],
                )
                .expect("valid metric"),
            ),
            pending_by_reason: register(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "coxswain_scheduler_pending_pods",
                        "Unbound pods by Queue and by the plugin that last rejected them.",
                    ),
                    &["queue", "reason"],
                )
                .expect("valid metric"),
            ),
            gang_wait: histogram(
                "coxswain_scheduler_gang_wait_seconds",
                "Time from a gang's first member seen pending to minMember members bound, in seconds.",
                latency_buckets(),
            ),
            preemption_attempts: register(
                registry,
                IntCounter::new(
                    "scheduler_preemption_attempts_total",
                    "Preemptions that evicted victims.",
                )
                .expect("valid metric"),
            ),
            preemption_victims: histogram(
                "scheduler_preemption_victims",
                "Victims evicted per preemption.",
                prometheus::exponential_buckets(1.0, 2.0, 10).expect("valid buckets"),
            ),
        }
    }
}
