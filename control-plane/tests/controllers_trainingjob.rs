//! The TrainingJob controller over the in-process API: gang creation (pod group, headless
//! service, hostfile, pods with rendezvous env), success, gang restarts and the back-off
//! limit, suspend/resume, TTL, and removal of the children when the job is deleted. The
//! test plays the agents: it binds pods and writes their status through the API.

mod controllers_support;

use std::collections::BTreeMap;
use std::time::Duration;

use controllers_support::{Cluster, fast_config, report, start, wait_for};
use coxswain_api::coxswain::{PodGroup, TrainingJob};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};

const JOB: &str = r#"
apiVersion: coxswain.dev/v1alpha1
kind: TrainingJob
metadata:
  name: ddp
  namespace: default
spec:
  queue: research
  priorityClassName: training
  runPolicy:
    backoffLimit: 2
  replicaGroups:
    - name: worker
      replicas: 2
      gpusPerReplica: 1
      template:
        spec:
          containers:
            - name: trainer
              image: busybox
              command: ["python", "/app/train.py"]
"#;

fn job_from(yaml: &str) -> TrainingJob {
    yaml_serde::from_str(yaml).unwrap()
}

struct Fixture {
    cluster: Cluster,
    jobs: Api<TrainingJob>,
    pods: Api<Pod>,
}

async fn submit(job: TrainingJob) -> Fixture {
    let cluster = start(fast_config()).await;
    let jobs: Api<TrainingJob> = Api::namespaced(cluster.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    jobs.create(&PostParams::default(), &job).await.unwrap();
    Fixture {
        cluster,
        jobs,
        pods,
    }
}

impl Fixture {
    /// The job's pods by name once there are `count` of them, none terminating.
    async fn pods_when(&self, count: usize) -> BTreeMap<String, Pod> {
        wait_for(&format!("{count} live pods"), || async {
            let list = self
                .pods
                .list(&ListParams::default().labels("coxswain.dev/job-name=ddp"))
                .await
                .unwrap();
            let live: BTreeMap<String, Pod> = list
                .items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .map(|p| (p.metadata.name.clone().unwrap(), p))
                .collect();
            (live.len() == count).then_some(live)
        })
        .await
    }

    /// The job once its condition `type_` has status `value` (and `extra` holds).
    async fn job_when(
        &self,
        type_: &str,
        value: &str,
        extra: impl Fn(&TrainingJob) -> bool,
    ) -> TrainingJob {
        let last = std::sync::Mutex::new(None);
        let waited = tokio::time::timeout(
            Duration::from_secs(25),
            wait_for(&format!("condition {type_}={value}"), || async {
                let job = self.jobs.get("ddp").await.unwrap();
                *last.lock().unwrap() = job.status.clone();
                let status = job.status.as_ref()?;
                let found = status
                    .conditions
                    .iter()
                    .any(|c| c.type_ == type_ && c.status == value);
                (found && extra(&job)).then_some(job)
            }),
        )
        .await;
        match waited {
            Ok(job) => job,
            Err(_) => panic!(
                "timed out waiting for condition {type_}={value}; last status: {:#?}",
                last.lock().unwrap()
            ),
        }
    }

    async fn report_all(&self, phase: &str) {
        for name in ["ddp-worker-0", "ddp-worker-1"] {
            report(&self.pods, name, phase, 0).await;
        }
    }
}

fn env(pod: &Pod) -> BTreeMap<String, String> {
    pod.spec.as_ref().unwrap().containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect()
}

fn uids(pods: &BTreeMap<String, Pod>) -> Vec<String> {
    pods.values()
        .map(|p| p.metadata.uid.clone().unwrap())
        .collect()
}

#[tokio::test]
async fn a_job_runs_as_a_gang_and_succeeds() {
    let f = submit(job_from(JOB)).await;
    let pods = f.pods_when(2).await;
    let job = f.jobs.get("ddp").await.unwrap();
    let uid = job.metadata.uid.clone().unwrap();

    let groups: Api<PodGroup> = Api::namespaced(f.cluster.client.clone(), "default");
    let group = groups.get("ddp").await.unwrap();
    assert_eq!(group.spec.min_member, 2);
    assert_eq!(group.spec.queue.as_deref(), Some("research"));
    assert_eq!(group.spec.priority_class_name.as_deref(), Some("training"));

    let services: Api<Service> = Api::namespaced(f.cluster.client.clone(), "default");
    let spec = services.get("ddp").await.unwrap().spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
    assert_eq!(spec.publish_not_ready_addresses, Some(true));
    assert_eq!(spec.selector.unwrap()["coxswain.dev/job-name"], "ddp");

    let maps: Api<ConfigMap> = Api::namespaced(f.cluster.client.clone(), "default");
    let hostfile = maps.get("ddp-hostfile").await.unwrap().data.unwrap();
    assert_eq!(
        hostfile["hostfile"],
        "ddp-worker-0.ddp.default.svc.cluster.local slots=1\n\
         ddp-worker-1.ddp.default.svc.cluster.local slots=1\n"
    );

    for (rank, name) in ["ddp-worker-0", "ddp-worker-1"].iter().enumerate() {
        let pod = &pods[*name];
        let env = env(pod);
        assert_eq!(env["RANK"], rank.to_string());
        assert_eq!(env["NODE_RANK"], rank.to_string());
        assert_eq!(env["PET_NODE_RANK"], rank.to_string());
        assert_eq!(env["WORLD_SIZE"], "2");
        assert_eq!(env["PET_NNODES"], "2");
        assert_eq!(
            env["MASTER_ADDR"],
            "ddp-worker-0.ddp.default.svc.cluster.local"
        );
        assert_eq!(env["MASTER_PORT"], "29500");
        assert_eq!(env["PET_NPROC_PER_NODE"], "1");
        assert_eq!(env["LOCAL_RANK"], "0");
        assert_eq!(env["JOB_NAME"], "ddp");
        assert_eq!(env["OMPI_MCA_orte_default_hostfile"], "/etc/mpi/hostfile");
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some(*name));
        assert_eq!(spec.subdomain.as_deref(), Some("ddp"));
        assert_eq!(spec.scheduler_name.as_deref(), Some("coxswain"));
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["scheduling.coxswain.dev/pod-group"], "ddp");
        assert_eq!(labels["coxswain.dev/replica-index"], rank.to_string());
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.uid.as_str(), owner.controller),
            (uid.as_str(), Some(true))
        );
        let gpu = &spec.containers[0]
            .resources
            .as_ref()
            .unwrap()
            .limits
            .as_ref()
            .unwrap()["nvidia.com/gpu"];
        assert_eq!(gpu.0, "1");
    }

    f.report_all("Running").await;
    let job = f.job_when("Running", "True", |_| true).await;
    let status = job.status.unwrap();
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Scheduled" && c.status == "True")
    );
    assert!(status.start_time.is_some());
    assert_eq!(status.replica_groups[0].active, 2);

    f.report_all("Succeeded").await;
    let job = f.job_when("Succeeded", "True", |_| true).await;
    let status = job.status.unwrap();
    assert!(status.completion_time.is_some());
    assert_eq!(status.replica_groups[0].succeeded, 2);
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Running" && c.status == "False")
    );
}

#[tokio::test]
async fn a_failed_pod_restarts_the_whole_gang() {
    let f = submit(job_from(JOB)).await;
    let first = f.pods_when(2).await;
    f.report_all("Running").await;
    f.job_when("Running", "True", |_| true).await;

    report(&f.pods, "ddp-worker-1", "Failed", 1).await;
    let job = f
        .job_when("Restarting", "True", |j| {
            j.status.as_ref().is_some_and(|s| s.restarts == 1)
        })
        .await;
    let restarting = job
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Restarting")
        .unwrap();
    assert_eq!(restarting.reason, "GangRecreated");
    let second = wait_for("a new gang", || async {
        let pods = f.pods_when(2).await;
        let fresh = uids(&pods).iter().all(|u| !uids(&first).contains(u));
        fresh.then_some(pods)
    })
    .await;
    assert_eq!(env(&second["ddp-worker-1"])["RANK"], "1");

    f.report_all("Running").await;
    let job = f.job_when("Running", "True", |_| true).await;
    let status = job.status.unwrap();
    assert_eq!(status.restarts, 1);
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Restarting" && c.status == "False")
    );
    let events: Api<Event> = Api::namespaced(f.cluster.client.clone(), "default");
    let params = ListParams::default().fields("involvedObject.name=ddp");
    let restart = wait_for("a GangRestart event", || async {
        let list = events.list(&params).await.unwrap().items;
        list.into_iter()
            .find(|e| e.reason.as_deref() == Some("GangRestart"))
    })
    .await;
    assert_eq!(restart.type_.as_deref(), Some("Warning"));
    assert!(
        restart
            .message
            .as_deref()
            .is_some_and(|m| m.contains("pod ddp-worker-1 failed with exit code 1")),
        "{restart:?}"
    );
}

#[tokio::test]
async fn failing_past_the_backoff_limit_fails_the_job() {
    let f = submit(job_from(&JOB.replace("backoffLimit: 2", "backoffLimit: 1"))).await;
    let mut previous = f.pods_when(2).await;
    for attempt in 0..2 {
        f.report_all("Running").await;
        report(&f.pods, "ddp-worker-0", "Failed", 1).await;
        if attempt == 0 {
            previous = wait_for("the restarted gang", || async {
                let pods = f.pods_when(2).await;
                uids(&pods)
                    .iter()
                    .all(|u| !uids(&previous).contains(u))
                    .then_some(pods)
            })
            .await;
        }
    }
    let job = f.job_when("Failed", "True", |_| true).await;
    let status = job.status.unwrap();
    assert_eq!(status.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(status.restarts, 1);
    assert!(status.completion_time.is_some());
    // The running worker is stopped; the failed one is kept for its logs.
    let left = f.pods_when(1).await;
    assert!(left.contains_key("ddp-worker-0"));
}

#[tokio::test]
async fn suspend_stops_the_gang_and_resume_recreates_it() {
    let f = submit(job_from(JOB)).await;
    let first = f.pods_when(2).await;
    f.report_all("Running").await;
    f.job_when("Running", "True", |_| true).await;

    let suspend =
        |value: bool| Patch::Merge(serde_json::json!({"spec": {"runPolicy": {"suspend": value}}}));
    f.jobs
        .patch("ddp", &PatchParams::default(), &suspend(true))
        .await
        .unwrap();
    f.job_when("Suspended", "True", |_| true).await;
    wait_for("the pods to go", || async {
        let list = f.pods.list(&ListParams::default()).await.unwrap();
        list.items.is_empty().then_some(())
    })
    .await;

    f.jobs
        .patch("ddp", &PatchParams::default(), &suspend(false))
        .await
        .unwrap();
    f.job_when("Suspended", "False", |_| true).await;
    let second = f.pods_when(2).await;
    assert!(uids(&second).iter().all(|u| !uids(&first).contains(u)));
    let job = f.jobs.get("ddp").await.unwrap();
    assert_eq!(
        job.status.unwrap().restarts,
        0,
        "a suspension is not a restart"
    );
}

#[tokio::test]
async fn deleting_the_job_removes_its_children() {
    let f = submit(job_from(JOB)).await;
    f.pods_when(2).await;
    // A status write may race the delete; the API server retries it.
    f.jobs
        .delete("ddp", &DeleteParams::default())
        .await
        .unwrap();
    let client = f.cluster.client.clone();
    wait_for("the children to go", || async {
        let pods = f
            .pods
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len();
        let services = Api::<Service>::namespaced(client.clone(), "default");
        let maps = Api::<ConfigMap>::namespaced(client.clone(), "default");
        let groups = Api::<PodGroup>::namespaced(client.clone(), "default");
        let gone = pods == 0
            && services.get_opt("ddp").await.unwrap().is_none()
            && maps.get_opt("ddp-hostfile").await.unwrap().is_none()
            && groups.get_opt("ddp").await.unwrap().is_none();
        gone.then_some(())
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_finished_job_is_deleted_after_its_ttl() {
    let yaml = JOB.replace(
        "backoffLimit: 2",
        "backoffLimit: 2\n    ttlSecondsAfterFinished: 3600",
    );
    let f = submit(job_from(&yaml)).await;
    f.pods_when(2).await;
    f.report_all("Succeeded").await;
    f.job_when("Succeeded", "True", |_| true).await;
    tokio::time::sleep(Duration::from_secs(1800)).await;
    assert!(
        f.jobs.get_opt("ddp").await.unwrap().is_some(),
        "kept before its TTL"
    );
    tokio::time::sleep(Duration::from_secs(1801)).await;
    wait_for("the job to be deleted", || async {
        f.jobs.get_opt("ddp").await.unwrap().is_none().then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_example_job_ranks_its_master_first() {
    let example = include_str!("../../examples/trainingjob.yaml");
    let cluster = start(fast_config()).await;
    let jobs: Api<TrainingJob> = Api::namespaced(cluster.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    jobs.create(&PostParams::default(), &job_from(example))
        .await
        .unwrap();
    let all = wait_for("the example's 4 pods", || async {
        let list = pods
            .list(&ListParams::default().labels("coxswain.dev/job-name=resnet"))
            .await
            .unwrap();
        (list.items.len() == 4).then_some(list.items)
    })
    .await;
    let ranks: BTreeMap<String, (String, String, String)> = all
        .iter()
        .map(|p| {
            let env = env(p);
            (
                p.metadata.name.clone().unwrap(),
                (
                    env["RANK"].clone(),
                    env["PET_NPROC_PER_NODE"].clone(),
                    env["CHECKPOINT_DIR"].clone(),
                ),
            )
        })
        .collect();
    let expect = |rank: &str| {
        (
            rank.to_string(),
            "8".to_string(),
            "/checkpoints".to_string(),
        )
    };
    assert_eq!(ranks["resnet-master-0"], expect("0"));
    assert_eq!(ranks["resnet-worker-0"], expect("1"));
    assert_eq!(ranks["resnet-worker-2"], expect("3"));
    assert_eq!(
        env(&all[0])["MASTER_ADDR"],
        "resnet-master-0.resnet.default.svc.cluster.local"
    );
    let groups: Api<PodGroup> = Api::namespaced(cluster.client.clone(), "default");
    assert_eq!(groups.get("resnet").await.unwrap().spec.min_member, 4);
}
