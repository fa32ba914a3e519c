//! What a `PyTorchJob` owns besides its `TrainingJob`: one headless Service per replica,
//! named like the pod (`<job>-master-0`, `<job>-worker-<i>`), as Kubeflow's operator makes
//! them. They are what makes Kubeflow's short `MASTER_ADDR` (`<job>-master-0`) resolve:
//! the pod's resolv.conf searches `<namespace>.svc.cluster.local`, and the node-local DNS
//! answers a headless service with the IPs of the pods it selects.

use std::collections::BTreeMap;

use coxswain_api::coxswain::TrainingJob;
use coxswain_api::kubeflow::{
    API_VERSION, DEFAULT_PORT, DEFAULT_PORT_NAME, JOB_NAME_LABEL, PyTorchJob, REPLICA_TYPE_LABEL,
};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// The label Kubeflow puts on a replica's pod and service with the replica's index.
pub const REPLICA_INDEX_LABEL: &str = "training.kubeflow.org/replica-index";

/// The ownerReference that makes `job` the controller of what it owns.
pub fn owner_reference(job: &PyTorchJob) -> OwnerReference {
    OwnerReference {
        api_version: API_VERSION.to_string(),
        kind: "PyTorchJob".to_string(),
        name: job.metadata.name.clone().unwrap_or_default(),
        uid: job.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// One headless service per pod of `training` (the job `to_training_job` made of `job`),
/// selecting exactly that pod, in rank order.
pub fn replica_services(job: &PyTorchJob, training: &TrainingJob) -> Vec<Service> {
    let job_name = job.metadata.name.clone().unwrap_or_default();
    let port = training.spec.master_port.unwrap_or(DEFAULT_PORT);
    let mut services = Vec::new();
    for group in training.groups_in_rank_order() {
        for index in 0..group.replicas.max(0) {
            let labels = BTreeMap::from([
                (JOB_NAME_LABEL.to_string(), job_name.clone()),
                (REPLICA_TYPE_LABEL.to_string(), group.name.clone()),
                (REPLICA_INDEX_LABEL.to_string(), index.to_string()),
            ]);
            let selector = BTreeMap::from([
                (TrainingJob::JOB_NAME_LABEL.to_string(), job_name.clone()),
                (
                    TrainingJob::REPLICA_GROUP_LABEL.to_string(),
                    group.name.clone(),
                ),
                (
                    TrainingJob::REPLICA_INDEX_LABEL.to_string(),
                    index.to_string(),
                ),
            ]);
            services.push(Service {
                metadata: ObjectMeta {
                    name: Some(training.pod_name(&group.name, index)),
                    namespace: job.metadata.namespace.clone(),
                    labels: Some(labels),
                    owner_references: Some(vec![owner_reference(job)]),
                    ..Default::default()
                },
                spec: Some(ServiceSpec {
                    cluster_ip: Some("None".to_string()),
                    selector: Some(selector),
                    // The rendezvous starts before readiness is known.
                    publish_not_ready_addresses: Some(true),
                    ports: Some(vec![ServicePort {
                        name: Some(DEFAULT_PORT_NAME.to_string()),
                        port,
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                status: None,
            });
        }
    }
    services
}
