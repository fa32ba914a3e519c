//! PodGroup defaults, and the pod group a training job runs as.

use std::collections::BTreeMap;

use k8s_openapi::Resource;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::coxswain::{DEFAULT_QUEUE, PodGroup, PodGroupSpec, TrainingJob};
use crate::quantity::ParsedQuantity;
use crate::resources::NVIDIA_GPU;

/// Fills a pod group's defaults: queue `default`.
pub fn default_pod_group(group: &mut PodGroup) {
    group
        .spec
        .queue
        .get_or_insert_with(|| DEFAULT_QUEUE.to_string());
}

/// The pod group that gangs a training job's pods: same name and namespace, owned by the
/// job, `minMember` the sum of the groups' replicas, `minResources` their GPUs, and the
/// job's queue, priority, topology and scheduling timeout.
pub fn pod_group_for(job: &TrainingJob) -> PodGroup {
    let spec = &job.spec;
    let min_member = i32::try_from(job.total_replicas()).unwrap_or(i32::MAX);
    let gpus: i64 = spec
        .replica_groups
        .iter()
        .map(|g| i64::from(g.replicas.max(0)) * i64::from(g.gpus_per_replica.unwrap_or(0).max(0)))
        .fold(0, i64::saturating_add);
    let min_resources = (gpus > 0).then(|| {
        BTreeMap::from([(
            NVIDIA_GPU.to_string(),
            ParsedQuantity::from_units(gpus).to_quantity(),
        )])
    });
    let owner = job.metadata.uid.as_ref().map(|uid| {
        vec![OwnerReference {
            api_version: TrainingJob::API_VERSION.to_string(),
            kind: TrainingJob::KIND.to_string(),
            name: job.metadata.name.clone().unwrap_or_default(),
            uid: uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]
    });
    let mut group = PodGroup::new(
        job.metadata.name.as_deref().unwrap_or_default(),
        PodGroupSpec {
            min_member,
            min_resources,
            queue: spec.queue.clone(),
            priority_class_name: spec.priority_class_name.clone(),
            schedule_timeout_seconds: spec
                .run_policy
                .as_ref()
                .and_then(|p| p.scheduling_timeout_seconds),
            topology: spec.topology.clone(),
        },
    );
    group.metadata = ObjectMeta {
        namespace: job.metadata.namespace.clone(),
        owner_references: owner,
        ..group.metadata
    };
    default_pod_group(&mut group);
    group
}
