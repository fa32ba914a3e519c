//! The Kubernetes kinds coxswain serves, re-exported from `k8s-openapi` (API 1.37), with
//! the parts of them other crates use most.
//!
//! Validation of these kinds covers their metadata only for now, except `Pod` (validated
//! in full) and the pod templates of workloads (see [`crate::validation`]).

pub use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, Deployment, DeploymentSpec, ReplicaSet, ReplicaSetSpec,
};
pub use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec};
pub use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition, CertificateSigningRequestSpec,
    CertificateSigningRequestStatus,
};
pub use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
pub use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerPort, ContainerState, ContainerStatus, EnvVar, Event, Namespace,
    Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus, ObjectReference, PersistentVolume,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeSpec, Pod, PodCondition,
    PodSpec, PodStatus, PodTemplateSpec, ResourceRequirements, Secret, Service, ServiceAccount,
    ServicePort, ServiceSpec, Taint, Toleration, Volume, VolumeMount,
};
pub use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
pub use k8s_openapi::api::resource::v1::{ResourceSlice, ResourceSliceSpec};
pub use k8s_openapi::api::scheduling::v1::PriorityClass;
pub use k8s_openapi::api::storage::v1::StorageClass;
pub use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    Condition, LabelSelector, ListMeta, ObjectMeta, OwnerReference, Time,
};
