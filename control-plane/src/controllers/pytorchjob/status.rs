//! A `PyTorchJob`'s status, mirrored from the `TrainingJob` that runs it, in Kubeflow's
//! shape: conditions of Kubeflow's types only (`Created`, `Running`, `Restarting`,
//! `Succeeded`, `Failed`, `Suspended`; coxswain's `Scheduled` is not one), replica statuses
//! per replica type (`Master`, `Worker`) with their label selector, `startTime` (when the
//! job was acknowledged, as Kubeflow means it) and `completionTime`. Pure, so it is tested
//! without an API.

use coxswain_api::coxswain::TrainingJobStatus;
use coxswain_api::kubeflow::{
    JOB_NAME_LABEL, JobCondition, PyTorchJob, PyTorchJobStatus, REPLICA_TYPE_LABEL,
    status_from_training_job,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// The condition types Kubeflow's training operator writes.
pub const KUBEFLOW_CONDITIONS: [&str; 6] = [
    "Created",
    "Running",
    "Restarting",
    "Succeeded",
    "Failed",
    "Suspended",
];

/// The status `job` should have when its training job's status is `training` (`None`
/// before the training job reported anything), at `now`.
///
/// A condition whose status did not change keeps its `lastTransitionTime`, and its
/// `lastUpdateTime` too while its reason and message stay the same, so writing the
/// mirror again is a no-op.
pub fn mirror(
    job: &PyTorchJob,
    training: Option<&TrainingJobStatus>,
    now: Timestamp,
) -> PyTorchJobStatus {
    let previous = job.status.clone().unwrap_or_default();
    let mut status = training.map(status_from_training_job).unwrap_or_default();
    status
        .conditions
        .retain(|c| KUBEFLOW_CONDITIONS.contains(&c.type_.as_str()));
    if !status.conditions.iter().any(|c| c.type_ == "Created") {
        let name = job.metadata.name.as_deref().unwrap_or_default();
        let namespace = job.metadata.namespace.as_deref().unwrap_or("default");
        status.conditions.insert(
            0,
            JobCondition {
                type_: "Created".to_string(),
                status: "True".to_string(),
                reason: Some("PyTorchJobCreated".to_string()),
                message: Some(format!("PyTorchJob {namespace}/{name} is created.")),
                last_update_time: Some(Time(now)),
                last_transition_time: Some(Time(now)),
            },
        );
    }
    for condition in &mut status.conditions {
        let Some(old) = previous
            .conditions
            .iter()
            .find(|o| o.type_ == condition.type_ && o.status == condition.status)
        else {
            continue;
        };
        condition.last_transition_time = old.last_transition_time.clone();
        if old.reason == condition.reason && old.message == condition.message {
            condition.last_update_time = old.last_update_time.clone();
        }
    }
    let job_name = job.metadata.name.as_deref().unwrap_or_default();
    for (replica_type, counters) in &mut status.replica_statuses {
        counters.selector = Some(format!(
            "{JOB_NAME_LABEL}={job_name},{REPLICA_TYPE_LABEL}={}",
            replica_type.to_ascii_lowercase()
        ));
    }
    let created = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Created")
        .and_then(|c| c.last_transition_time.clone());
    status.start_time = previous.start_time.or(created);
    status.last_reconcile_time = previous.last_reconcile_time;
    status
}

/// The conditions of `new` that became `True` since `old`: each is one event.
pub fn became_true<'a>(
    old: Option<&PyTorchJobStatus>,
    new: &'a PyTorchJobStatus,
) -> Vec<&'a JobCondition> {
    let was_true = |type_: &str| {
        old.is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == type_ && c.status == "True")
        })
    };
    new.conditions
        .iter()
        .filter(|c| c.status == "True" && !was_true(&c.type_))
        .collect()
}

#[cfg(test)]
mod tests {
    use coxswain_api::coxswain::ReplicaGroupStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn condition(type_: &str, status: &str, reason: &str, time: Timestamp) -> Condition {
        Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message: format!("{type_} {status}"),
            last_transition_time: Time(time),
            observed_generation: None,
        }
    }

    fn job() -> PyTorchJob {
        let mut job = PyTorchJob::new("ddp", Default::default());
        job.metadata.namespace = Some("default".to_string());
        job
    }

    #[test]
    fn before_the_training_job_reports_the_job_is_created() {
        let status = mirror(&job(), None, at(0));
        assert_eq!(status.conditions.len(), 1);
        let created = &status.conditions[0];
        assert_eq!(
            (created.type_.as_str(), created.status.as_str()),
            ("Created", "True")
        );
        assert_eq!(created.reason.as_deref(), Some("PyTorchJobCreated"));
        assert_eq!(status.start_time, Some(Time(at(0))));
    }

    #[test]
    fn kubeflow_conditions_and_replica_types_are_mirrored_and_stable() {
        let training = TrainingJobStatus {
            conditions: vec![
                condition("Created", "True", "PodGroupCreated", at(1)),
                condition("Scheduled", "True", "AllPodsBound", at(2)),
                condition("Running", "False", "GangFailed", at(5)),
                condition("Restarting", "True", "GangRecreated", at(6)),
            ],
            replica_groups: vec![
                ReplicaGroupStatus {
                    name: "master".to_string(),
                    active: 1,
                    ..Default::default()
                },
                ReplicaGroupStatus {
                    name: "worker".to_string(),
                    failed: 1,
                    ..Default::default()
                },
            ],
            start_time: Some(Time(at(2))),
            restarts: 1,
            ..Default::default()
        };
        let mut job = job();
        let first = mirror(&job, None, at(0));
        job.status = Some(first.clone());
        let status = mirror(&job, Some(&training), at(7));
        let types: Vec<(&str, &str)> = status
            .conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str()))
            .collect();
        assert_eq!(
            types,
            vec![
                ("Created", "True"),
                ("Running", "False"),
                ("Restarting", "True")
            ]
        );
        // Created stayed True: its transition time is the first acknowledgement's.
        assert_eq!(status.conditions[0].last_transition_time, Some(Time(at(0))));
        assert_eq!(status.start_time, Some(Time(at(0))));
        assert_eq!(status.replica_statuses["Master"].active, 1);
        assert_eq!(status.replica_statuses["Worker"].failed, 1);
        assert_eq!(
            status.replica_statuses["Worker"].selector.as_deref(),
            Some("training.kubeflow.org/job-name=ddp,training.kubeflow.org/replica-type=worker")
        );
        let became: Vec<&str> = became_true(Some(&first), &status)
            .iter()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(became, vec!["Restarting"]);

        job.status = Some(status.clone());
        assert_eq!(
            mirror(&job, Some(&training), at(60)),
            status,
            "mirroring an unchanged status again changes nothing"
        );
    }
}
