//! The Job controller over the in-process API; the test plays the kubelet.

mod workloads_support;

use std::collections::BTreeSet;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, Patch, PatchParams, PostParams};
use workloads_support::{
    event_reasons, fast_config, live_pods, obj, phase, set_phase, start, wait_for,
};

fn job(name: &str, spec: serde_json::Value) -> Job {
    let mut spec = spec;
    spec["template"] = serde_json::json!({
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}
    });
    obj(serde_json::json!({"metadata": {"name": name}, "spec": spec}))
}

fn condition(job: &Job, type_: &str) -> Option<String> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| c.reason.clone().unwrap_or_default())
}

async fn get(jobs: &Api<Job>, name: &str) -> Job {
    jobs.get(name).await.unwrap()
}

fn active(pods: &[k8s_openapi::api::core::v1::Pod]) -> Vec<k8s_openapi::api::core::v1::Pod> {
    pods.iter()
        .filter(|p| !matches!(phase(p), "Succeeded" | "Failed"))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_completes_with_completions_3_parallelism_2() {
    let cluster = start(fast_config()).await;
    let client = &cluster.client;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job(
            "work",
            serde_json::json!({"completions": 3, "parallelism": 2}),
        ),
    )
    .await
    .unwrap();
    let mut finished = 0;
    while finished < 3 {
        let want = (3 - finished).min(2);
        let running = wait_for("the job's pods", || async {
            let pods = active(&live_pods(client, "job-name=work").await);
            assert!(
                pods.len() <= 2,
                "more pods than parallelism: {}",
                pods.len()
            );
            (pods.len() == want).then_some(pods)
        })
        .await;
        set_phase(client, &running[0], "Succeeded", 0).await;
        finished += 1;
    }
    let done = wait_for("the job to complete", || async {
        let j = get(&jobs, "work").await;
        condition(&j, "Complete").map(|_| j)
    })
    .await;
    let status = done.status.clone().unwrap();
    assert_eq!(
        (status.succeeded, status.active, status.failed),
        (Some(3), Some(0), Some(0))
    );
    assert!(status.completion_time.is_some() && status.start_time.is_some());
    let uid = done.metadata.uid.clone().unwrap();
    let selector = done.spec.as_ref().unwrap().selector.clone().unwrap();
    assert_eq!(
        selector.match_labels.unwrap()["batch.kubernetes.io/controller-uid"],
        uid,
        "the selector is generated from the job's uid"
    );
    let pods = live_pods(client, "job-name=work").await;
    assert_eq!(pods.len(), 3);
    for pod in &pods {
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["batch.kubernetes.io/controller-uid"], uid);
        assert_eq!(labels["controller-uid"], uid);
        assert_eq!(labels["batch.kubernetes.io/job-name"], "work");
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Job", uid.as_str())
        );
        assert_eq!(
            (owner.controller, owner.block_owner_deletion),
            (Some(true), Some(true))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_job_gives_each_pod_its_index() {
    let cluster = start(fast_config()).await;
    let client = &cluster.client;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let mut indexed = job(
        "idx",
        serde_json::json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed"}),
    );
    indexed
        .spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .subdomain = Some("workers".into());
    jobs.create(&PostParams::default(), &indexed).await.unwrap();
    let pods = wait_for("three indexed pods", || async {
        let pods = live_pods(client, "job-name=idx").await;
        (pods.len() == 3).then_some(pods)
    })
    .await;
    let mut indexes = BTreeSet::new();
    for pod in &pods {
        let index =
            pod.metadata.annotations.as_ref().unwrap()["batch.kubernetes.io/job-completion-index"]
                .clone();
        assert_eq!(
            pod.metadata.labels.as_ref().unwrap()["batch.kubernetes.io/job-completion-index"],
            index
        );
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(
            spec.hostname.as_deref(),
            Some(format!("idx-{index}").as_str())
        );
        assert_eq!(spec.subdomain.as_deref(), Some("workers"));
        let env = spec.containers[0].env.as_ref().unwrap();
        assert!(env.iter().any(|e| e.name == "JOB_COMPLETION_INDEX"));
        assert!(
            pod.metadata
                .name
                .as_ref()
                .unwrap()
                .starts_with(&format!("idx-{index}-"))
        );
        indexes.insert(index);
    }
    assert_eq!(
        indexes,
        BTreeSet::from(["0".into(), "1".into(), "2".into()])
    );
    // Index 1 fails: a new pod takes index 1.
    let index_of = |p: &k8s_openapi::api::core::v1::Pod| {
        p.metadata.annotations.as_ref().unwrap()["batch.kubernetes.io/job-completion-index"].clone()
    };
    let one = pods.iter().find(|p| index_of(p) == "1").unwrap();
    set_phase(client, one, "Failed", 1).await;
    for pod in pods.iter().filter(|p| index_of(p) != "1") {
        set_phase(client, pod, "Succeeded", 0).await;
    }
    let retry = wait_for("a new pod for index 1", || async {
        live_pods(client, "job-name=idx")
            .await
            .into_iter()
            .find(|p| index_of(p) == "1" && phase(p) == "Pending")
    })
    .await;
    let j = wait_for("completedIndexes 0,2", || async {
        let j = get(&jobs, "idx").await;
        (j.status.as_ref()?.completed_indexes.as_deref() == Some("0,2")).then_some(j)
    })
    .await;
    assert_eq!(j.status.as_ref().unwrap().failed, Some(1));
    set_phase(client, &retry, "Succeeded", 0).await;
    let j = wait_for("the indexed job to complete", || async {
        let j = get(&jobs, "idx").await;
        condition(&j, "Complete").map(|_| j)
    })
    .await;
    assert_eq!(j.status.unwrap().completed_indexes.as_deref(), Some("0-2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_limit_fails_the_job() {
    let cluster = start(fast_config()).await;
    let client = &cluster.client;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job("flaky", serde_json::json!({"backoffLimit": 1})),
    )
    .await
    .unwrap();
    for attempt in 1..=2 {
        let pod = wait_for("a pending pod", || async {
            let pods = active(&live_pods(client, "job-name=flaky").await);
            pods.into_iter().next()
        })
        .await;
        set_phase(client, &pod, "Failed", 1).await;
        let all = live_pods(client, "job-name=flaky").await;
        assert!(all.len() <= attempt + 1, "at most one new pod per failure");
    }
    let j = wait_for("the job to fail", || async {
        let j = get(&jobs, "flaky").await;
        condition(&j, "Failed").map(|r| (j, r))
    })
    .await;
    assert_eq!(j.1, "BackoffLimitExceeded");
    assert_eq!(j.0.status.as_ref().unwrap().failed, Some(2));
    let all = live_pods(client, "job-name=flaky").await;
    assert_eq!(all.len(), 2, "no pod after the backoff limit");
    assert!(active(&live_pods(client, "job-name=flaky").await).is_empty());
    let reasons = event_reasons(client, "Job", "flaky", "BackoffLimitExceeded").await;
    assert!(
        reasons.iter().any(|r| r == "SuccessfulCreate"),
        "{reasons:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_failure_policy_fail_job_and_ignore() {
    let cluster = start(fast_config()).await;
    let client = &cluster.client;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job(
            "policy",
            serde_json::json!({"backoffLimit": 0, "podFailurePolicy": {"rules": [
                {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}},
                {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [137]}}
            ]}}),
        ),
    )
    .await
    .unwrap();
    let first = wait_for("a pod", || async {
        active(&live_pods(client, "job-name=policy").await)
            .into_iter()
            .next()
    })
    .await;
    // 137 is ignored: not counted (backoffLimit 0 would fail the job), the pod is replaced.
    set_phase(client, &first, "Failed", 137).await;
    let second = wait_for("a replacement pod", || async {
        active(&live_pods(client, "job-name=policy").await)
            .into_iter()
            .next()
    })
    .await;
    assert_ne!(first.metadata.name, second.metadata.name);
    assert_eq!(condition(&get(&jobs, "policy").await, "Failed"), None);
    set_phase(client, &second, "Failed", 42).await;
    let reason = wait_for("the job to fail", || async {
        condition(&get(&jobs, "policy").await, "Failed")
    })
    .await;
    assert_eq!(reason, "PodFailurePolicy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_deadline_fails_the_job_and_deletes_its_pods() {
    let cluster = start(fast_config()).await;
    let client = &cluster.client;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job("slow", serde_json::json!({"activeDeadlineSeconds": 1})),
    )
    .await
    .unwrap();
    let pod = wait_for("a pod", || async {
        live_pods(client, "job-name=slow").await.into_iter().next()
    })
    .await;
    set_phase(client, &pod, "Running", 0).await;
    let reason = wait_for("the deadline", || async {
        condition(&get(&jobs, "slow").await, "Failed")
    })
    .await;
    assert_eq!(reason, "DeadlineExceeded");
    assert!(
        live_pods(client, "job-name=slow").await.is_empty(),
        "the running pod is deleted"
    );
    assert_eq!(get(&jobs, "slow").await.status.unwrap().active, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_deletes_pods_and_resume_recreates_them() {
    let cluster = start(fast_config()).await;
    let client = &cluster.client;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job(
            "pause",
            serde_json::json!({"parallelism": 2, "completions": 2}),
        ),
    )
    .await
    .unwrap();
    wait_for("two pods", || async {
        (live_pods(client, "job-name=pause").await.len() == 2).then_some(())
    })
    .await;
    let suspend = |on: bool| serde_json::json!({"spec": {"suspend": on}});
    jobs.patch(
        "pause",
        &PatchParams::default(),
        &Patch::Merge(&suspend(true)),
    )
    .await
    .unwrap();
    wait_for("suspension", || async {
        let j = get(&jobs, "pause").await;
        (condition(&j, "Suspended").as_deref() == Some("JobSuspended")
            && live_pods(client, "job-name=pause").await.is_empty())
        .then_some(())
    })
    .await;
    jobs.patch(
        "pause",
        &PatchParams::default(),
        &Patch::Merge(&suspend(false)),
    )
    .await
    .unwrap();
    wait_for("two new pods", || async {
        (live_pods(client, "job-name=pause").await.len() == 2).then_some(())
    })
    .await;
    // The pods are made before the status is written: wait for the condition to flip.
    wait_for("Suspended=False", || async {
        let j = get(&jobs, "pause").await;
        let flipped = j.status?.conditions?.iter().any(|c| {
            c.type_ == "Suspended"
                && c.status == "False"
                && c.reason.as_deref() == Some("JobResumed")
        });
        flipped.then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_after_finished_deletes_the_job() {
    let cluster = start(fast_config()).await;
    let client = &cluster.client;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job("brief", serde_json::json!({"ttlSecondsAfterFinished": 0})),
    )
    .await
    .unwrap();
    let pod = wait_for("a pod", || async {
        live_pods(client, "job-name=brief").await.into_iter().next()
    })
    .await;
    set_phase(client, &pod, "Succeeded", 0).await;
    wait_for("the job to be deleted", || async {
        jobs.get_opt("brief").await.unwrap().is_none().then_some(())
    })
    .await;
}
