//! Kubeflow's training kinds, in the API group `kubeflow.org/v1`.
//!
//! coxswain serves Kubeflow's `PyTorchJob` so that manifests written for the Kubeflow
//! training operator apply unchanged. The object is stored as written (plus Kubeflow's
//! defaults); [`to_training_job`] turns it into coxswain's own
//! [`crate::coxswain::TrainingJob`], which is what actually runs, and
//! [`status_from_training_job`] reports that job's progress back in Kubeflow's terms.

mod convert;
mod pytorchjob;

pub use convert::{JOB_NAME_LABEL, REPLICA_TYPE_LABEL, status_from_training_job, to_training_job};
pub use pytorchjob::{
    CleanPodPolicy, DEFAULT_CONTAINER_NAME, DEFAULT_NPROC_PER_NODE, DEFAULT_PORT,
    DEFAULT_PORT_NAME, ElasticPolicy, JobCondition, MASTER, PyTorchJob, PyTorchJobSpec,
    PyTorchJobStatus, REPLICA_TYPES, RdzvConf, ReplicaSpec, ReplicaStatus, RestartPolicy,
    RunPolicy, SchedulingPolicy, WORKER,
};

/// The API group of Kubeflow's training kinds.
pub const GROUP: &str = "kubeflow.org";
/// The version of Kubeflow's training kinds served.
pub const VERSION: &str = "v1";
/// `apiVersion` of Kubeflow's training kinds.
pub const API_VERSION: &str = "kubeflow.org/v1";

#[cfg(test)]
mod tests;
