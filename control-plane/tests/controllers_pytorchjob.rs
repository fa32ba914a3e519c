//! The PyTorchJob controller over the in-process API, with the TrainingJob controller and
//! the garbage collector: `examples/pytorchjob.yaml` becomes a TrainingJob owned by it
//! whose pods carry Kubeflow's env and are reachable by Kubeflow's short names, its
//! status is mirrored back in Kubeflow's shape through a gang restart to success, suspend
//! is passed on, the TTL deletes the job, and deleting it removes everything it made. The
//! test plays the agents: it binds pods and writes their status through the API.

mod controllers_support;

use std::collections::BTreeMap;
use std::time::Duration;

use controllers_support::{Cluster, allow_host_pods, fast_config, report, start, wait_for};
use coxswain_api::coxswain::TrainingJob;
use coxswain_api::kubeflow::PyTorchJob;
use k8s_openapi::api::core::v1::{Event, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};

const EXAMPLE: &str = include_str!("../../examples/pytorchjob.yaml");
const JOB: &str = "pytorch-trainer";
const MASTER: &str = "pytorch-trainer-master-0";
const WORKER: &str = "pytorch-trainer-worker-0";

struct Fixture {
    cluster: Cluster,
    jobs: Api<PyTorchJob>,
    training: Api<TrainingJob>,
    pods: Api<Pod>,
}

async fn submit(edit: impl FnOnce(&mut PyTorchJob)) -> Fixture {
    let cluster = start(fast_config()).await;
    let client = cluster.client.clone();
    allow_host_pods(&client).await; // the example's checkpoints are a hostPath
    let jobs: Api<PyTorchJob> = Api::namespaced(client.clone(), "default");
    let mut job: PyTorchJob = yaml_serde::from_str(EXAMPLE).unwrap();
    edit(&mut job);
    jobs.create(&PostParams::default(), &job).await.unwrap();
    Fixture {
        jobs,
        training: Api::namespaced(client.clone(), "default"),
        pods: Api::namespaced(client, "default"),
        cluster,
    }
}

impl Fixture {
    /// The job's live pods by name once both exist, all with a uid not in `old`.
    async fn gang(&self, old: &[String]) -> BTreeMap<String, Pod> {
        wait_for("a gang of 2 pods", || async {
            let list = self
                .pods
                .list(&ListParams::default().labels(&format!("coxswain.dev/job-name={JOB}")))
                .await
                .unwrap();
            let live: BTreeMap<String, Pod> = list
                .items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter(|p| !old.contains(p.metadata.uid.as_ref().unwrap()))
                .map(|p| (p.metadata.name.clone().unwrap(), p))
                .collect();
            (live.len() == 2).then_some(live)
        })
        .await
    }

    /// The PyTorchJob once its condition `type_` has status `value` and `extra` holds.
    async fn job_when(
        &self,
        type_: &str,
        value: &str,
        extra: impl Fn(&PyTorchJob) -> bool,
    ) -> PyTorchJob {
        let last = std::sync::Mutex::new(None);
        let waited = tokio::time::timeout(
            Duration::from_secs(25),
            wait_for(&format!("condition {type_}={value}"), || async {
                let job = self.jobs.get(JOB).await.unwrap();
                *last.lock().unwrap() = job.status.clone();
                let found = job
                    .status
                    .as_ref()?
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

    async fn report_both(&self, phase: &str) {
        for name in [MASTER, WORKER] {
            report(&self.pods, name, phase, 0).await;
        }
    }

    /// The reasons of the events recorded about the PyTorchJob (not its training job,
    /// which has the same name).
    async fn event_reasons(&self) -> Vec<String> {
        let events: Api<Event> = Api::namespaced(self.cluster.client.clone(), "default");
        let params = ListParams::default().fields(&format!("involvedObject.name={JOB}"));
        events
            .list(&params)
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.involved_object.kind.as_deref() == Some("PyTorchJob"))
            .filter_map(|e| e.reason)
            .collect()
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
async fn the_example_runs_as_an_owned_training_job_and_reports_in_kubeflow_terms() {
    let f = submit(|_| {}).await;
    let job = f.jobs.get(JOB).await.unwrap();
    let uid = job.metadata.uid.clone().unwrap();

    // The TrainingJob is owned by the PyTorchJob, as its controller.
    let training = wait_for("the training job", || async {
        f.training.get_opt(JOB).await.unwrap()
    })
    .await;
    let owner = &training.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (
            owner.kind.as_str(),
            owner.uid.as_str(),
            owner.controller,
            owner.block_owner_deletion
        ),
        ("PyTorchJob", uid.as_str(), Some(true), Some(true))
    );

    // Kubeflow's env: the master is rank 0 at its pod's short name, the worker rank 1.
    let first = f.gang(&[]).await;
    for (name, rank) in [(MASTER, "0"), (WORKER, "1")] {
        let env = env(&first[name]);
        assert_eq!(env["RANK"], rank, "{name}");
        assert_eq!(env["PET_NODE_RANK"], rank, "{name}");
        assert_eq!(env["WORLD_SIZE"], "2");
        assert_eq!(env["MASTER_ADDR"], MASTER);
        assert_eq!(env["MASTER_PORT"], "23456");
        assert_eq!(env["EPOCHS"], "20", "the template's own env is kept");
        let labels = first[name].metadata.labels.as_ref().unwrap();
        assert_eq!(labels["training.kubeflow.org/job-name"], JOB);
    }

    // Each replica has a headless service of its pod's name that selects exactly that pod,
    // so `MASTER_ADDR` resolves through the search path `<ns>.svc.cluster.local`.
    let services: Api<Service> = Api::namespaced(f.cluster.client.clone(), "default");
    for name in [MASTER, WORKER] {
        let service = wait_for(&format!("service {name}"), || async {
            services.get_opt(name).await.unwrap()
        })
        .await;
        let spec = service.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.ports.unwrap()[0].port, 23456);
        let selector = spec.selector.unwrap();
        let selected: Vec<&String> = first
            .iter()
            .filter(|(_, pod)| {
                let labels = pod.metadata.labels.as_ref().unwrap();
                selector.iter().all(|(k, v)| labels.get(k) == Some(v))
            })
            .map(|(pod, _)| pod)
            .collect();
        assert_eq!(selected, vec![name], "service {name} selects its pod only");
        let owner = &service.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("PyTorchJob", uid.as_str())
        );
    }

    f.report_both("Running").await;
    let running = f.job_when("Running", "True", |_| true).await;
    let status = running.status.unwrap();
    assert_eq!(status.replica_statuses["Master"].active, 1);
    assert_eq!(status.replica_statuses["Worker"].active, 1);
    assert!(status.start_time.is_some());
    assert!(
        status.conditions.iter().all(|c| c.type_ != "Scheduled"),
        "only Kubeflow's condition types: {:?}",
        status.conditions
    );

    // A failed worker restarts the gang; the PyTorchJob shows it as Kubeflow would.
    report(&f.pods, WORKER, "Failed", 137).await;
    f.job_when("Restarting", "True", |_| true).await;
    let second = f.gang(&uids(&first)).await;
    f.report_both("Running").await;
    f.job_when("Running", "True", |j| {
        j.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Restarting" && c.status == "False")
        })
    })
    .await;
    assert_eq!(env(&second[WORKER])["RANK"], "1");

    // The master's success is the job's (Kubeflow's success policy).
    report(&f.pods, MASTER, "Succeeded", 0).await;
    let done = f.job_when("Succeeded", "True", |_| true).await;
    let status = done.status.unwrap();
    assert!(status.completion_time.is_some());
    assert_eq!(status.replica_statuses["Master"].succeeded, 1);
    let training = f.training.get(JOB).await.unwrap();
    assert_eq!(training.status.unwrap().restarts, 1);

    let reasons = wait_for("the job's events", || async {
        let reasons = f.event_reasons().await;
        reasons
            .iter()
            .any(|r| r == "PyTorchJobSucceeded")
            .then_some(reasons)
    })
    .await;
    for expected in [
        "SuccessfulCreate",
        "PyTorchJobCreated",
        "PyTorchJobRunning",
        "PyTorchJobRestarting",
    ] {
        assert!(
            reasons.iter().any(|r| r == expected),
            "{expected} in {reasons:?}"
        );
    }
}

#[tokio::test]
async fn suspend_is_passed_on_and_deleting_the_job_removes_what_it_made() {
    let f = submit(|_| {}).await;
    f.gang(&[]).await;
    let suspend =
        |value: bool| Patch::Merge(serde_json::json!({"spec": {"runPolicy": {"suspend": value}}}));
    f.jobs
        .patch(JOB, &PatchParams::default(), &suspend(true))
        .await
        .unwrap();
    f.job_when("Suspended", "True", |_| true).await;
    let training = f.training.get(JOB).await.unwrap();
    assert_eq!(training.spec.run_policy.unwrap().suspend, Some(true));
    wait_for("the pods to go", || async {
        let list = f.pods.list(&ListParams::default()).await.unwrap();
        list.items.is_empty().then_some(())
    })
    .await;
    f.jobs
        .patch(JOB, &PatchParams::default(), &suspend(false))
        .await
        .unwrap();
    f.gang(&[]).await;

    f.jobs.delete(JOB, &DeleteParams::default()).await.unwrap();
    let services: Api<Service> = Api::namespaced(f.cluster.client.clone(), "default");
    wait_for("the job's children to go", || async {
        let pods = f
            .pods
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len();
        let services = services
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len();
        let training = f.training.get_opt(JOB).await.unwrap();
        (pods == 0 && services == 0 && training.is_none()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_finished_job_is_deleted_after_its_ttl_and_never_rerun() {
    let f = submit(|job| {
        job.spec
            .run_policy
            .get_or_insert_with(Default::default)
            .ttl_seconds_after_finished = Some(1);
    })
    .await;
    f.gang(&[]).await;
    let training = f.training.get(JOB).await.unwrap();
    assert_eq!(
        training.spec.run_policy.unwrap().ttl_seconds_after_finished,
        None,
        "the PyTorchJob's controller keeps the TTL"
    );
    // The master's success is the job's; the worker is stopped.
    report(&f.pods, MASTER, "Succeeded", 0).await;
    f.job_when("Succeeded", "True", |_| true).await;
    wait_for("the job and its training job to go", || async {
        let gone = f.jobs.get_opt(JOB).await.unwrap().is_none()
            && f.training.get_opt(JOB).await.unwrap().is_none();
        gone.then_some(())
    })
    .await;
}
