//! Controller metrics over the in-process API: the TrainingJob controller counts and times
//! its reconciles, and a job whose pods the API refuses (an unknown PriorityClass) shows
//! as reconcile errors; its work queue's adds, waits and depth are served under client-go's
//! names; the exposition passes `promtool check metrics`.

mod controllers_support;
mod metrics_support;

use controllers_support::{fast_config, start, wait_for};
use coxswain_api::coxswain::TrainingJob;
use coxswain_control_plane::controllers::ControllersConfig;
use coxswain_control_plane::metrics::Metrics;
use kube::api::{Api, PostParams};
use metrics_support::{promtool_check, sample};

fn job(name: &str, priority_class: &str) -> TrainingJob {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "coxswain.dev/v1alpha1", "kind": "TrainingJob",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "priorityClassName": priority_class,
            "replicaGroups": [{"name": "worker", "replicas": 2, "template": {"spec": {
                "containers": [{"name": "trainer", "image": "busybox"}]}}}],
        }
    }))
    .unwrap()
}

#[tokio::test]
async fn reconciles_of_the_trainingjob_controller_are_counted_timed_and_errors_named() {
    let metrics = Metrics::new();
    let cluster = start(ControllersConfig {
        metrics: Some(metrics.controllers.clone()),
        ..fast_config()
    })
    .await;
    let jobs: Api<TrainingJob> = Api::namespaced(cluster.client.clone(), "default");
    let trainingjob = [("controller", "trainingjob")];
    let succeeded = |scrape: &str| {
        sample(
            scrape,
            "controller_runtime_reconcile_total",
            &[("controller", "trainingjob"), ("result", "success")],
        )
    };
    assert_eq!(succeeded(&metrics.encode()), None, "nothing reconciled yet");

    jobs.create(&PostParams::default(), &job("good", "training"))
        .await
        .unwrap();
    wait_for("a successful trainingjob reconcile", || async {
        succeeded(&metrics.encode()).filter(|n| *n >= 1.0)
    })
    .await;
    let scrape = metrics.encode();
    let timed = sample(
        &scrape,
        "controller_runtime_reconcile_time_seconds_count",
        &trainingjob,
    )
    .unwrap();
    assert!(timed >= 1.0, "{scrape}");

    // Pods of a class that does not exist are refused at admission: the reconcile fails.
    jobs.create(&PostParams::default(), &job("bad", "no-such-class"))
        .await
        .unwrap();
    wait_for("a failed trainingjob reconcile", || async {
        sample(
            &metrics.encode(),
            "controller_runtime_reconcile_errors_total",
            &trainingjob,
        )
        .filter(|n| *n >= 1.0)
    })
    .await;
    let scrape = metrics.encode();
    assert_eq!(
        sample(
            &scrape,
            "controller_runtime_reconcile_total",
            &[("controller", "trainingjob"), ("result", "error")],
        ),
        sample(
            &scrape,
            "controller_runtime_reconcile_errors_total",
            &trainingjob
        ),
    );
    // Both jobs (and their pods' changes) went through the work queue, each add waited
    // there until a reconcile took it, and nothing is left waiting once things settle.
    let queue = [("name", "trainingjob")];
    let adds = sample(&scrape, "workqueue_adds_total", &queue).unwrap_or(0.0);
    assert!(adds >= 2.0, "{scrape}");
    let waits = sample(&scrape, "workqueue_queue_duration_seconds_count", &queue).unwrap();
    assert!(waits >= 1.0 && waits <= adds, "{scrape}");
    wait_for("an empty trainingjob work queue", || async {
        sample(&metrics.encode(), "workqueue_depth", &queue).filter(|n| *n == 0.0)
    })
    .await;
    promtool_check(&scrape);
}
