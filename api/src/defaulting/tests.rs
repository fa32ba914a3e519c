//! Defaults are filled, never override what was written, and are idempotent.

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::*;
use crate::coxswain::{
    PodGroup, Queue, ReplicaGroup, ReplicaRestartPolicy, SuccessPolicyType, TrainingJob,
    TrainingJobSpec,
};
use crate::validation::validate;

fn container(image: &str) -> Container {
    Container {
        name: "main".into(),
        image: Some(image.into()),
        ..Default::default()
    }
}

fn job() -> TrainingJob {
    let group = |name: &str, replicas| ReplicaGroup {
        name: name.into(),
        replicas,
        gpus_per_replica: Some(4),
        template: k8s_openapi::api::core::v1::PodTemplateSpec {
            metadata: None,
            spec: Some(PodSpec {
                containers: vec![container("trainer:1")],
                ..Default::default()
            }),
        },
        restart_policy: None,
    };
    let mut job = TrainingJob::new(
        "llm",
        TrainingJobSpec {
            replica_groups: vec![group("master", 1), group("worker", 3)],
            ..Default::default()
        },
    );
    job.metadata.namespace = Some("ml".into());
    job.metadata.uid = Some("uid-1".into());
    job
}

#[test]
fn pod_defaults() {
    let mut pod = Pod {
        spec: Some(PodSpec {
            containers: vec![Container {
                resources: Some(ResourceRequirements {
                    limits: Some([("cpu".to_string(), Quantity("2".into()))].into()),
                    ..Default::default()
                }),
                ..container("busybox")
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut object = Object::Pod(pod.clone());
    apply_defaults(&mut object);
    default_pod(&mut pod);
    assert_eq!(object, Object::Pod(pod.clone()));
    let spec = pod.spec.as_ref().expect("spec kept");
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(spec.termination_grace_period_seconds, Some(30));
    assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirst"));
    let c = &spec.containers[0];
    assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
    assert_eq!(
        c.termination_message_path.as_deref(),
        Some("/dev/termination-log")
    );
    let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    assert_eq!(
        requests.and_then(|r| r.get("cpu")),
        Some(&Quantity("2".into()))
    );
    let again = pod.clone();
    default_pod(&mut pod);
    assert_eq!(pod, again, "defaulting is idempotent");
}

#[test]
fn pod_defaults_keep_user_values() {
    let mut spec = PodSpec {
        restart_policy: Some("Never".into()),
        termination_grace_period_seconds: Some(5),
        containers: vec![Container {
            image_pull_policy: Some("Never".into()),
            ..container("busybox")
        }],
        ..Default::default()
    };
    default_pod_spec(&mut spec);
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    assert_eq!(spec.termination_grace_period_seconds, Some(5));
    assert_eq!(
        spec.containers[0].image_pull_policy.as_deref(),
        Some("Never")
    );
}

#[test]
fn training_job_defaults() {
    let mut job = job();
    default_training_job(&mut job);
    let spec = &job.spec;
    assert_eq!(spec.queue.as_deref(), Some("default"));
    assert_eq!(
        spec.run_policy.as_ref().and_then(|p| p.backoff_limit),
        Some(3)
    );
    assert_eq!(
        spec.success_policy.as_ref().map(|p| p.type_),
        Some(SuccessPolicyType::AllWorkers)
    );
    for group in &spec.replica_groups {
        assert_eq!(group.restart_policy, Some(ReplicaRestartPolicy::OnFailure));
        let pod = group.template.spec.as_ref().expect("template spec");
        assert_eq!(pod.restart_policy.as_deref(), Some("OnFailure"));
        let resources = pod.containers[0].resources.as_ref();
        let gpus = resources
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get("nvidia.com/gpu"));
        assert_eq!(gpus, Some(&Quantity("4".into())));
        assert_eq!(
            pod.containers[0].image_pull_policy.as_deref(),
            Some("IfNotPresent")
        );
    }
    assert_eq!(validate(&Object::TrainingJob(job.clone())), vec![]);
    let again = job.clone();
    default_training_job(&mut job);
    assert_eq!(job, again, "defaulting is idempotent");
}

#[test]
fn exit_code_groups_get_never_pods() {
    let mut job = job();
    job.spec.replica_groups[0].restart_policy = Some(ReplicaRestartPolicy::ExitCode);
    default_training_job(&mut job);
    let pod = job.spec.replica_groups[0]
        .template
        .spec
        .as_ref()
        .expect("template spec");
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
}

#[test]
fn pod_group_for_a_training_job() {
    let mut job = job();
    default_training_job(&mut job);
    let group = pod_group_for(&job);
    assert_eq!(group.metadata.name.as_deref(), Some("llm"));
    assert_eq!(group.metadata.namespace.as_deref(), Some("ml"));
    assert_eq!(group.spec.min_member, 4);
    assert_eq!(group.spec.queue.as_deref(), Some("default"));
    let gpus = group
        .spec
        .min_resources
        .as_ref()
        .and_then(|r| r.get("nvidia.com/gpu"));
    assert_eq!(gpus, Some(&Quantity("16".into())));
    let owner = group
        .metadata
        .owner_references
        .as_ref()
        .map(|o| (o[0].kind.as_str(), o[0].uid.as_str()));
    assert_eq!(owner, Some(("TrainingJob", "uid-1")));
    assert_eq!(validate(&Object::PodGroup(group)), vec![]);
}

#[test]
fn queue_and_pod_group_defaults() {
    let mut queue = Queue::new("research", Default::default());
    default_queue(&mut queue);
    assert_eq!(
        (
            queue.spec.weight,
            queue.spec.priority,
            queue.spec.reclaimable
        ),
        (Some(1), Some(0), Some(true))
    );
    let mut group = PodGroup::new("gang", Default::default());
    default_pod_group(&mut group);
    assert_eq!(group.spec.queue.as_deref(), Some("default"));
}
