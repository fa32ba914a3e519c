//! TrainingJob defaults.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::pod::default_pod_spec;
use crate::coxswain::{
    DEFAULT_QUEUE, ReplicaRestartPolicy, SuccessPolicy, SuccessPolicyType, TrainingJob,
};
use crate::resources::NVIDIA_GPU;

/// Gang restarts a job gets before it fails, when `runPolicy.backoffLimit` is unset.
pub const DEFAULT_BACKOFF_LIMIT: i32 = 3;

/// Fills a training job's defaults: queue `default`, `runPolicy.backoffLimit: 3`,
/// `successPolicy: AllWorkers`, each group's `restartPolicy: OnFailure`, the
/// `nvidia.com/gpu` limit of the first container from `gpusPerReplica` when no container
/// sets one, and pod defaults on each template with the pod restart policy derived from
/// the group's (`Never` where the controller restarts the gang itself).
pub fn default_training_job(job: &mut TrainingJob) {
    let spec = &mut job.spec;
    spec.queue.get_or_insert_with(|| DEFAULT_QUEUE.to_string());
    spec.run_policy
        .get_or_insert_with(Default::default)
        .backoff_limit
        .get_or_insert(DEFAULT_BACKOFF_LIMIT);
    spec.success_policy.get_or_insert(SuccessPolicy {
        type_: SuccessPolicyType::AllWorkers,
        group: None,
    });
    for group in &mut spec.replica_groups {
        let policy = *group
            .restart_policy
            .get_or_insert(ReplicaRestartPolicy::OnFailure);
        let Some(pod) = &mut group.template.spec else {
            continue;
        };
        pod.restart_policy.get_or_insert_with(|| {
            match policy {
                ReplicaRestartPolicy::Always => "Always",
                ReplicaRestartPolicy::OnFailure => "OnFailure",
                ReplicaRestartPolicy::Never | ReplicaRestartPolicy::ExitCode => "Never",
            }
            .to_string()
        });
        if let Some(gpus) = group.gpus_per_replica.filter(|g| *g > 0) {
            let declares_gpus = pod.containers.iter().any(|c| {
                c.resources
                    .as_ref()
                    .and_then(|r| r.limits.as_ref())
                    .is_some_and(|l| l.contains_key(NVIDIA_GPU))
            });
            if let (false, Some(first)) = (declares_gpus, pod.containers.first_mut()) {
                first
                    .resources
                    .get_or_insert_with(ResourceRequirements::default)
                    .limits
                    .get_or_insert_with(Default::default)
                    .insert(NVIDIA_GPU.to_string(), Quantity(gpus.to_string()));
            }
        }
        default_pod_spec(pod);
    }
}
