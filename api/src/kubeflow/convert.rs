//! From a `PyTorchJob` to the [`TrainingJob`] that runs it, and that job's status back.
//!
//! The mapping follows Kubeflow's semantics: the `Master` replica type becomes replica group
//! `master` and the `Worker` type group `worker`, so pod names stay Kubeflow's
//! (`<job>-master-0`, `<job>-worker-<i>`); the master is rank 0 and worker `i` is rank
//! `i + 1`; every container gets the rendezvous environment the Kubeflow operator sets
//! (`MASTER_ADDR` = the master pod's name, `MASTER_PORT`, `WORLD_SIZE`, `PET_*`).
//!
//! A `TrainingJob` group has one template for all its pods, so `RANK` and `PET_NODE_RANK`
//! are only written where a group has a single pod (the master, or a lone worker); for
//! several workers the TrainingJob controller must set them per pod, in group order.

use k8s_openapi::api::core::v1::{Container, EnvVar, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::{
    API_VERSION, DEFAULT_CONTAINER_NAME, DEFAULT_PORT, DEFAULT_PORT_NAME, JobCondition, MASTER,
    PyTorchJob, PyTorchJobStatus, ReplicaStatus, RestartPolicy, WORKER,
};
use crate::coxswain::{
    ReplicaGroup, ReplicaRestartPolicy, RunPolicy, SuccessPolicy, SuccessPolicyType, TrainingJob,
    TrainingJobSpec, TrainingJobStatus,
};
use crate::defaulting::default_pytorch_job;
use crate::validation::{FieldError, FieldPath, ValidationError, validate_pytorch_job};

/// The label Kubeflow puts on a job's pods with the job's name.
pub const JOB_NAME_LABEL: &str = "training.kubeflow.org/job-name";
/// The label Kubeflow puts on a job's pods with their replica type, lowercase.
pub const REPLICA_TYPE_LABEL: &str = "training.kubeflow.org/replica-type";
/// The label Kubeflow puts on the master's pod (`master`).
const JOB_ROLE_LABEL: &str = "training.kubeflow.org/job-role";

/// The [`TrainingJob`] that runs `job`: same name and namespace, owned by `job` when it
/// has a uid. Kubeflow's defaults are applied first; a job that fails validation, or asks
/// for what coxswain cannot do (a gang smaller than the job), is refused with every
/// problem and its field path. Not carried over: `runPolicy.ttlSecondsAfterFinished` (the
/// PyTorchJob controller deletes the PyTorchJob, which takes its training job with it),
/// `runPolicy.cleanPodPolicy`,
/// `runPolicy.managedBy`, `schedulingPolicy.minResources` (the gang's resources are
/// computed from the pods) and `elasticPolicy` (the job runs at its written size).
pub fn to_training_job(job: &PyTorchJob) -> Result<TrainingJob, ValidationError> {
    let mut job = job.clone();
    default_pytorch_job(&mut job);
    let mut errors = validate_pytorch_job(&job);
    let name = job.metadata.name.clone().unwrap_or_default();
    if name.is_empty() {
        errors.push(FieldError::required(
            &FieldPath::new("metadata").child("name"),
            "the job's pods are named after it",
        ));
    }
    let total = job.total_replicas();
    let run_policy = job.spec.run_policy.clone().unwrap_or_default();
    let scheduling = run_policy.scheduling_policy.clone().unwrap_or_default();
    if let Some(min) = scheduling.min_available
        && min >= 1
        && i64::from(min) < total
    {
        errors.push(FieldError::forbidden(
            &FieldPath::new("spec")
                .child("runPolicy")
                .child("schedulingPolicy")
                .child("minAvailable"),
            format!(
                "coxswain starts all {total} pods of a job as one gang: \
                 set it to {total} or leave it unset"
            ),
        ));
    }
    ValidationError::check(errors)?;

    let specs = &job.spec.pytorch_replica_specs;
    let has_master = specs.contains_key(MASTER);
    let nproc: i64 = job
        .spec
        .nproc_per_node
        .as_deref()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let master_addr = format!("{name}-master-0");
    let master_port = specs
        .get(MASTER)
        .and_then(|m| rendezvous_port(&m.template))
        .unwrap_or(DEFAULT_PORT);
    let mut replica_groups = Vec::new();
    let mut first_rank = 0;
    for replica_type in [MASTER, WORKER] {
        let Some(replica) = specs.get(replica_type) else {
            continue;
        };
        let replicas = replica.replicas.unwrap_or(1);
        if replicas < 1 {
            continue;
        }
        let group = replica_type.to_ascii_lowercase();
        let mut env = vec![
            ("PYTHONUNBUFFERED", "1".to_string()),
            ("PET_NNODES", total.to_string()),
        ];
        if let Some(nproc) = &job.spec.nproc_per_node {
            env.push(("PET_NPROC_PER_NODE", nproc.clone()));
        }
        if has_master {
            env.extend([
                ("MASTER_ADDR", master_addr.clone()),
                ("PET_MASTER_ADDR", master_addr.clone()),
                ("MASTER_PORT", master_port.to_string()),
                ("PET_MASTER_PORT", master_port.to_string()),
                ("WORLD_SIZE", (total * nproc).to_string()),
            ]);
            if replicas == 1 {
                env.push(("RANK", first_rank.to_string()));
                env.push(("PET_NODE_RANK", first_rank.to_string()));
            }
        }
        let mut template = replica.template.clone();
        let labels = template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(Default::default);
        labels.insert(JOB_NAME_LABEL.to_string(), name.clone());
        labels.insert(REPLICA_TYPE_LABEL.to_string(), group.clone());
        if replica_type == MASTER {
            labels.insert(JOB_ROLE_LABEL.to_string(), "master".to_string());
        }
        if let Some(pod) = &mut template.spec {
            // The replica's restart policy decides; the TrainingJob's defaulting derives
            // the pod's from it, as Kubeflow overrides the template's.
            pod.restart_policy = None;
            for container in &mut pod.containers {
                for (key, value) in &env {
                    set_env(container, key, value);
                }
            }
        }
        replica_groups.push(ReplicaGroup {
            name: group,
            replicas,
            gpus_per_replica: None,
            template,
            restart_policy: replica.restart_policy.map(restart_policy),
        });
        first_rank += replicas;
    }

    let owner = job.metadata.uid.clone().map(|uid| OwnerReference {
        api_version: API_VERSION.to_string(),
        kind: "PyTorchJob".to_string(),
        name: name.clone(),
        uid,
        controller: Some(true),
        block_owner_deletion: Some(true),
    });
    let mut training_job = TrainingJob::new(
        &name,
        TrainingJobSpec {
            replica_groups,
            topology: None,
            queue: scheduling.queue.filter(|q| !q.is_empty()),
            priority_class_name: scheduling.priority_class.filter(|p| !p.is_empty()),
            run_policy: Some(RunPolicy {
                backoff_limit: run_policy.backoff_limit,
                active_deadline_seconds: run_policy.active_deadline_seconds,
                // The PyTorchJob's controller deletes the PyTorchJob itself (and the
                // training job with it); a training job deleted first would be recreated.
                ttl_seconds_after_finished: None,
                suspend: run_policy.suspend,
                scheduling_timeout_seconds: scheduling.schedule_timeout_seconds.map(i64::from),
            }),
            success_policy: Some(if has_master {
                SuccessPolicy {
                    type_: SuccessPolicyType::Group,
                    group: Some("master".to_string()),
                }
            } else {
                SuccessPolicy {
                    type_: SuccessPolicyType::AllWorkers,
                    group: None,
                }
            }),
            checkpoint_volume: None,
            checkpoint_path: None,
            min_member: None,
            master_port: Some(master_port),
        },
    );
    training_job.metadata = ObjectMeta {
        name: Some(name),
        namespace: job.metadata.namespace.clone(),
        labels: job.metadata.labels.clone(),
        annotations: job.metadata.annotations.clone(),
        owner_references: owner.map(|o| vec![o]),
        ..Default::default()
    };
    Ok(training_job)
}

/// A `TrainingJob`'s status in Kubeflow's terms: the same conditions (Kubeflow's
/// `lastUpdateTime` is the transition time), and the counters of groups `master` and
/// `worker` as replica types `Master` and `Worker`.
pub fn status_from_training_job(status: &TrainingJobStatus) -> PyTorchJobStatus {
    let non_empty = |s: &String| (!s.is_empty()).then(|| s.clone());
    PyTorchJobStatus {
        conditions: status
            .conditions
            .iter()
            .map(|c| JobCondition {
                type_: c.type_.clone(),
                status: c.status.clone(),
                reason: non_empty(&c.reason),
                message: non_empty(&c.message),
                last_update_time: Some(c.last_transition_time.clone()),
                last_transition_time: Some(c.last_transition_time.clone()),
            })
            .collect(),
        replica_statuses: status
            .replica_groups
            .iter()
            .map(|g| {
                let replica_type = match g.name.as_str() {
                    "master" => MASTER.to_string(),
                    "worker" => WORKER.to_string(),
                    other => other.to_string(),
                };
                let counters = ReplicaStatus {
                    active: g.active,
                    succeeded: g.succeeded,
                    failed: g.failed,
                    ..Default::default()
                };
                (replica_type, counters)
            })
            .collect(),
        start_time: status.start_time.clone(),
        completion_time: status.completion_time.clone(),
        last_reconcile_time: None,
    }
}

fn restart_policy(policy: RestartPolicy) -> ReplicaRestartPolicy {
    match policy {
        RestartPolicy::Always => ReplicaRestartPolicy::Always,
        RestartPolicy::OnFailure => ReplicaRestartPolicy::OnFailure,
        RestartPolicy::Never => ReplicaRestartPolicy::Never,
        RestartPolicy::ExitCode => ReplicaRestartPolicy::ExitCode,
    }
}

/// The `pytorchjob-port` of the template's `pytorch` container.
fn rendezvous_port(template: &PodTemplateSpec) -> Option<i32> {
    template
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == DEFAULT_CONTAINER_NAME)?
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some(DEFAULT_PORT_NAME))
        .map(|p| p.container_port)
}

/// Sets `name` to `value` in the container's environment, replacing any value the
/// template gave (Kubeflow's operator appends its own, which wins).
fn set_env(container: &mut Container, name: &str, value: &str) {
    let env = container.env.get_or_insert_with(Vec::new);
    env.retain(|e| e.name != name);
    env.push(EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        value_from: None,
    });
}
