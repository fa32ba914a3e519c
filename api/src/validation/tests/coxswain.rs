//! TrainingJob, PodGroup and Queue rules.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::*;
use crate::coxswain::{PodGroup, Queue, QueueQuota, SuccessPolicy, SuccessPolicyType};

#[test]
fn training_job_rules() {
    let mut job = training_job();
    job.spec.replica_groups.clear();
    job.spec.success_policy = None;
    job.spec.checkpoint_volume = None;
    assert_one(
        Object::TrainingJob(job),
        "spec.replicaGroups",
        "at least one replica group",
    );

    let mut job = training_job();
    job.spec.replica_groups[1].name = "master".into();
    assert_one(
        Object::TrainingJob(job),
        "spec.replicaGroups[1].name",
        "Duplicate value: \"master\"",
    );

    let mut job = training_job();
    job.spec.replica_groups[1].replicas = 0;
    assert_one(
        Object::TrainingJob(job),
        "spec.replicaGroups[1].replicas",
        "greater than or equal to 1",
    );

    let mut job = training_job();
    job.spec.replica_groups[1].gpus_per_replica = Some(4);
    assert_one(
        Object::TrainingJob(job),
        "spec.replicaGroups[1].gpusPerReplica",
        "must equal the nvidia.com/gpu limits",
    );

    let mut job = training_job();
    job.spec.replica_groups[1].gpus_per_replica = Some(-1);
    if let Some(spec) = &mut job.spec.replica_groups[1].template.spec {
        spec.containers[0].resources = None;
    }
    assert_one(
        Object::TrainingJob(job),
        "spec.replicaGroups[1].gpusPerReplica",
        "greater than or equal to 0",
    );

    let mut job = training_job();
    if let Some(spec) = &mut job.spec.replica_groups[1].template.spec {
        spec.containers[0].resources = Some(ResourceRequirements {
            limits: limits(&[("nvidia.com/gpu", "7.5")]),
            ..Default::default()
        });
    }
    job.spec.replica_groups[1].gpus_per_replica = None;
    assert_one(
        Object::TrainingJob(job),
        "spec.replicaGroups[1].template.spec.containers[0].resources.limits[nvidia.com/gpu]",
        "must be a whole number; use coxswain.dev/gpu-milli for a fraction of a GPU",
    );

    let mut job = training_job();
    if let Some(spec) = &mut job.spec.replica_groups[1].template.spec {
        spec.containers[0].resources = Some(ResourceRequirements {
            limits: limits(&[("gpu", "8")]),
            ..Default::default()
        });
    }
    job.spec.replica_groups[1].gpus_per_replica = None;
    assert_one(
        Object::TrainingJob(job),
        "spec.replicaGroups[1].template.spec.containers[0].resources.limits[gpu]",
        "no device plugin can serve it",
    );

    let mut job = training_job();
    job.metadata.name = Some("1resnet".into());
    assert_one(
        Object::TrainingJob(job),
        "metadata.name",
        "must start with a letter",
    );

    let mut job = training_job();
    job.metadata.name = Some("a".repeat(54));
    job.spec.replica_groups[1].replicas = 100;
    assert_one(
        Object::TrainingJob(job),
        "spec.replicaGroups[1].name",
        "would be 64 characters",
    );

    let mut job = training_job();
    job.spec.success_policy = Some(SuccessPolicy {
        type_: SuccessPolicyType::Group,
        group: Some("chief".into()),
    });
    assert_one(
        Object::TrainingJob(job.clone()),
        "spec.successPolicy.group",
        "\"chief\": no replica group",
    );
    job.spec.success_policy = Some(SuccessPolicy {
        type_: SuccessPolicyType::Group,
        group: None,
    });
    assert_one(
        Object::TrainingJob(job.clone()),
        "spec.successPolicy.group",
        "required",
    );
    job.spec.success_policy = Some(SuccessPolicy {
        type_: SuccessPolicyType::AllWorkers,
        group: Some("master".into()),
    });
    assert_one(
        Object::TrainingJob(job),
        "spec.successPolicy.group",
        "only be set for type Group",
    );

    let mut job = training_job();
    job.spec.checkpoint_volume = Some("ckpt".into());
    let found = errors(Object::TrainingJob(job));
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[1].starts_with("spec.checkpointVolume: \"ckpt\": replica group \"worker\""));

    let mut job = training_job();
    if let Some(policy) = &mut job.spec.run_policy {
        policy.backoff_limit = Some(-1);
        policy.scheduling_timeout_seconds = Some(0);
    }
    job.spec.queue = Some("Research".into());
    job.spec.replica_groups[0].template.spec = None;
    job.spec.checkpoint_volume = None;
    let paths: Vec<String> = validate(&Object::TrainingJob(job))
        .into_iter()
        .map(|e| e.path.to_string())
        .collect();
    assert_eq!(
        paths,
        vec![
            "spec.replicaGroups[0].template.spec",
            "spec.queue",
            "spec.runPolicy.backoffLimit",
            "spec.runPolicy.schedulingTimeoutSeconds",
        ]
    );
}

#[test]
fn training_job_gang_fields() {
    let mut job = training_job();
    job.spec.min_member = Some(0);
    assert_one(
        Object::TrainingJob(job),
        "spec.minMember",
        "greater than or equal to 1",
    );

    let mut job = training_job();
    job.spec.min_member = Some(i32::try_from(job.total_replicas()).unwrap() + 1);
    assert_one(
        Object::TrainingJob(job),
        "spec.minMember",
        "at most the job's total replicas",
    );

    let mut job = training_job();
    job.spec.master_port = Some(70000);
    assert_one(
        Object::TrainingJob(job),
        "spec.masterPort",
        "between 1 and 65535",
    );

    let mut job = training_job();
    job.spec.checkpoint_path = Some("relative/dir".into());
    let found = errors(Object::TrainingJob(job));
    assert!(
        found
            .iter()
            .any(|e| e
                .starts_with("spec.checkpointPath: \"relative/dir\": must be an absolute path")),
        "{found:#?}"
    );

    let mut job = training_job();
    job.spec.checkpoint_volume = None;
    job.spec.checkpoint_path = Some("/ckpt".into());
    assert_one(
        Object::TrainingJob(job),
        "spec.checkpointPath",
        "together with spec.checkpointVolume",
    );

    let mut job = training_job();
    job.spec.min_member = Some(1);
    job.spec.master_port = Some(23456);
    assert_eq!(validate(&Object::TrainingJob(job)), vec![]);
}

#[test]
fn pod_group_rules() {
    let mut group = PodGroup::new("gang", Default::default());
    assert_one(
        Object::PodGroup(group.clone()),
        "spec.minMember",
        "greater than or equal to 1",
    );
    group.spec.min_member = 2;
    group.spec.min_resources = limits(&[("nvidia.com/gpu", "1.5"), ("cpu", "x")]);
    group.spec.schedule_timeout_seconds = Some(-5);
    let found = errors(Object::PodGroup(group));
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(found[0].starts_with("spec.minResources[cpu]: quantity \"x\""));
    assert!(found[1].starts_with("spec.minResources[nvidia.com/gpu]: must be a whole number"));
    assert!(found[2].starts_with("spec.scheduleTimeoutSeconds: must be greater than 0"));
}

#[test]
fn queue_rules() {
    let mut queue = Queue::new("research", Default::default());
    let quota = |nominal: &str, limit: Option<&str>| QueueQuota {
        nominal: Quantity(nominal.into()),
        borrowing_limit: limit.map(|l| Quantity(l.into())),
    };
    queue.spec.quotas = BTreeMap::from([
        ("cpu".to_string(), quota("-1", None)),
        ("memory".to_string(), quota("1Gi", Some("lots"))),
        ("nvidia.com/gpu".to_string(), quota("2.5", None)),
        ("coxswain.dev/gpu-milli".to_string(), quota("2500", None)),
    ]);
    queue.spec.parent = Some("research".into());
    queue.spec.weight = Some(0);
    let found = errors(Object::Queue(queue));
    assert_eq!(
        found,
        vec![
            "spec.quotas[cpu].nominal: must be greater than or equal to 0",
            "spec.quotas[memory].borrowingLimit: quantity \"lots\" must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$' (e.g. 500m, 2, 1.5, 16Gi, 1e3)",
            "spec.quotas[nvidia.com/gpu].nominal: must be a whole number; use coxswain.dev/gpu-milli for a fraction of a GPU",
            "spec.weight: must be greater than or equal to 1",
            "spec.parent: a queue cannot be its own parent",
        ]
    );
}
