//! Scheduler metrics recorded by the runner into the control plane's registry: attempts by
//! result, cycle and extension-point latencies, end-to-end pod latency, pending pods by
//! queue part and by Queue/reason, gang wait and preemptions — clean under `promtool`.

mod metrics_support;
mod scheduler_support;

use std::time::Duration;

use coxswain_api::coxswain::{PodGroup, PodGroupSpec};
use coxswain_control_plane::metrics::Metrics;
use coxswain_control_plane::scheduler::runner::RunnerConfig;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{Api, PostParams};
use metrics_support::{promtool_check, sample};
use scheduler_support::*;
use serde_json::json;

const PROFILE: (&str, &str) = ("profile", "default-scheduler");

/// Polls the scrape until `done` holds for it.
async fn wait_scrape(metrics: &Metrics, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let scrape = metrics.encode();
        if done(&scrape) {
            return scrape;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("metrics never showed {what}:\n{scrape}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_records_attempts_latencies_pending_gangs_and_preemptions() {
    let metrics = Metrics::new();
    let cluster = Cluster::start_with(RunnerConfig {
        metrics: Some(metrics.clone()),
        ..RunnerConfig::default()
    })
    .await;
    let classes: Api<PriorityClass> = Api::all(cluster.client.clone());
    for (name, value) in [("low", 1), ("mid", 50), ("high", 100)] {
        let class: PriorityClass =
            serde_json::from_value(json!({"metadata": {"name": name}, "value": value})).unwrap();
        classes
            .create(&PostParams::default(), &class)
            .await
            .unwrap();
    }
    cluster.add_node("node-a", 8, false).await;

    // Grace 0: no agent runs here to finish a graceful deletion of a bound victim.
    let pod = |name: &str, class: &str, gpus: u32| {
        json!({"metadata": {"name": name, "labels": {}}, "spec": {
            "priorityClassName": class,
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": "busybox", "resources": {
                "requests": {"cpu": "1", "nvidia.com/gpu": gpus.to_string()},
                "limits": {"nvidia.com/gpu": gpus.to_string()}}}]}})
    };

    // A gang of two 2-GPU members.
    let groups: Api<PodGroup> = Api::namespaced(cluster.client.clone(), "default");
    let group = PodGroup::new(
        "pair",
        PodGroupSpec {
            min_member: 2,
            ..PodGroupSpec::default()
        },
    );
    groups.create(&PostParams::default(), &group).await.unwrap();
    for name in ["g0", "g1"] {
        let mut member = pod(name, "mid", 2);
        member["metadata"]["labels"][PodGroup::POD_LABEL] = json!("pair");
        cluster.create(member).await;
    }
    cluster.wait_bound("g0").await;
    cluster.wait_bound("g1").await;

    // A low-priority 4-GPU pod fills the node; a high-priority one preempts it (the gang,
    // of higher priority than it, is reprieved).
    cluster.create(pod("low", "low", 4)).await;
    cluster.wait_bound("low").await;
    cluster.create(pod("high", "high", 4)).await;
    cluster.wait_bound("high").await;
    // One that fits nowhere and cannot preempt (equal priority never preempts).
    cluster.create(pod("stuck", "high", 8)).await;
    cluster
        .wait_unschedulable("stuck", "Insufficient nvidia.com/gpu")
        .await;

    let scrape = wait_scrape(&metrics, "the stuck pod pending", |s| {
        sample(
            s,
            "coxswain_scheduler_pending_pods",
            &[("queue", ""), ("reason", "GpuAllocation")],
        ) == Some(1.0)
            && sample(s, "scheduler_pending_pods", &[("queue", "unschedulable")]) == Some(1.0)
    })
    .await;
    promtool_check(&scrape);
    let value = |name: &str, labels: &[(&str, &str)]| sample(&scrape, name, labels).unwrap_or(0.0);
    // g0 waited at Permit, g1 bound both; low; high after preempting.
    assert!(
        value(
            "scheduler_schedule_attempts_total",
            &[("result", "waiting"), PROFILE]
        ) >= 1.0
    );
    assert!(
        value(
            "scheduler_schedule_attempts_total",
            &[("result", "scheduled"), PROFILE]
        ) >= 3.0
    );
    assert!(
        value(
            "scheduler_schedule_attempts_total",
            &[("result", "unschedulable"), PROFILE]
        ) >= 2.0
    );
    assert!(
        value(
            "scheduler_scheduling_attempt_duration_seconds_count",
            &[("result", "scheduled"), PROFILE]
        ) >= 3.0
    );
    for point in [
        "PreFilter",
        "Filter",
        "Score",
        "Reserve",
        "Permit",
        "Bind",
        "PostFilter",
    ] {
        assert!(
            value(
                "scheduler_framework_extension_point_duration_seconds_count",
                &[("extension_point", point), PROFILE]
            ) >= 1.0,
            "{point} was never timed"
        );
    }
    // g0, g1, low, high: seen pending, then bound.
    assert_eq!(
        value("scheduler_pod_scheduling_duration_seconds_count", &[]),
        4.0
    );
    assert_eq!(
        value("coxswain_scheduler_gang_wait_seconds_count", &[]),
        1.0
    );
    assert_eq!(value("scheduler_preemption_attempts_total", &[]), 1.0);
    assert_eq!(value("scheduler_preemption_victims_sum", &[]), 1.0);
    cluster.stop().await;
}
