//! `PyTorchJob` defaults, as Kubeflow's training operator applies them (`pytorch_defaults.go`).

use k8s_openapi::api::core::v1::ContainerPort;

use crate::kubeflow::{
    CleanPodPolicy, DEFAULT_CONTAINER_NAME, DEFAULT_NPROC_PER_NODE, DEFAULT_PORT,
    DEFAULT_PORT_NAME, PyTorchJob, REPLICA_TYPES, RestartPolicy, WORKER,
};

/// Fills a `PyTorchJob`'s defaults: `runPolicy.cleanPodPolicy: None`; replica type keys
/// in their proper case (`master` becomes `Master`); each replica type's `replicas: 1` and
/// `restartPolicy: OnFailure`; the `pytorchjob-port` (23456) on each `pytorch` container;
/// an elastic policy's missing bound from the other (or from the Worker replicas); and
/// `nprocPerNode: auto` unless the deprecated `elasticPolicy.nProcPerNode` is set.
pub fn default_pytorch_job(job: &mut PyTorchJob) {
    let spec = &mut job.spec;
    spec.run_policy
        .get_or_insert_with(Default::default)
        .clean_pod_policy
        .get_or_insert(CleanPodPolicy::None);
    for proper in REPLICA_TYPES {
        let other_case = spec
            .pytorch_replica_specs
            .keys()
            .find(|k| k.as_str() != proper && k.eq_ignore_ascii_case(proper))
            .cloned();
        if let Some(key) = other_case
            && !spec.pytorch_replica_specs.contains_key(proper)
            && let Some(replica) = spec.pytorch_replica_specs.remove(&key)
        {
            spec.pytorch_replica_specs
                .insert(proper.to_string(), replica);
        }
    }
    for replica in spec.pytorch_replica_specs.values_mut() {
        replica.replicas.get_or_insert(1);
        replica
            .restart_policy
            .get_or_insert(RestartPolicy::OnFailure);
        let container = replica.template.spec.as_mut().and_then(|s| {
            s.containers
                .iter_mut()
                .find(|c| c.name == DEFAULT_CONTAINER_NAME)
        });
        if let Some(container) = container {
            let ports = container.ports.get_or_insert_with(Vec::new);
            if !ports
                .iter()
                .any(|p| p.name.as_deref() == Some(DEFAULT_PORT_NAME))
            {
                ports.push(ContainerPort {
                    name: Some(DEFAULT_PORT_NAME.to_string()),
                    container_port: DEFAULT_PORT,
                    ..Default::default()
                });
            }
        }
    }
    let workers = spec
        .pytorch_replica_specs
        .get(WORKER)
        .and_then(|w| w.replicas);
    if let Some(elastic) = &mut spec.elastic_policy {
        match (elastic.min_replicas, elastic.max_replicas) {
            (Some(_), Some(_)) => {}
            (None, Some(max)) => elastic.min_replicas = Some(max),
            (Some(min), None) => elastic.max_replicas = Some(min),
            (None, None) => (elastic.min_replicas, elastic.max_replicas) = (workers, workers),
        }
    }
    let deprecated_nproc = spec
        .elastic_policy
        .as_ref()
        .is_some_and(|e| e.n_proc_per_node.is_some());
    if !deprecated_nproc {
        spec.nproc_per_node
            .get_or_insert_with(|| DEFAULT_NPROC_PER_NODE.to_string());
    }
}
