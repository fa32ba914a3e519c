//! coxswain's own kinds, in the API group `coxswain.dev/v1alpha1`.
//!
//! They are plain serde structs with Kubernetes conventions: camelCase fields,
//! `apiVersion`/`kind`/`metadata` at the top, `spec` and `status`, optional fields
//! left out when unset. Unknown fields are ignored when decoding; the API server finds
//! them with [`crate::unknown_fields`]. Each kind implements `k8s_openapi::Resource`, so
//! generic code treats it like a Kubernetes kind.

mod podgroup;
mod queue;
mod topology;
mod trainingjob;

pub use podgroup::{PodGroup, PodGroupPhase, PodGroupSpec, PodGroupStatus};
pub use queue::{Queue, QueueQuota, QueueSpec, QueueStatus};
pub use topology::{TOPOLOGY_LABEL_PREFIX, TopologyConstraint, TopologyLevel, TopologyMode};
pub use trainingjob::{
    ReplicaGroup, ReplicaGroupStatus, ReplicaRestartPolicy, RunPolicy, SuccessPolicy,
    SuccessPolicyType, TrainingJob, TrainingJobConditionType, TrainingJobSpec, TrainingJobStatus,
};

/// The API group of coxswain's kinds.
pub const GROUP: &str = "coxswain.dev";
/// The version of coxswain's kinds.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of coxswain's kinds.
pub const API_VERSION: &str = "coxswain.dev/v1alpha1";
/// The queue a job or gang joins when it names none.
pub const DEFAULT_QUEUE: &str = "default";

/// Implements `k8s_openapi::{Resource, ListableResource, Metadata}` for a coxswain kind.
macro_rules! coxswain_resource {
    ($ty:ident, $spec:ty, $plural:literal, $scope:ident) => {
        impl k8s_openapi::Resource for $ty {
            const API_VERSION: &'static str = $crate::coxswain::API_VERSION;
            const GROUP: &'static str = $crate::coxswain::GROUP;
            const KIND: &'static str = stringify!($ty);
            const VERSION: &'static str = $crate::coxswain::VERSION;
            const URL_PATH_SEGMENT: &'static str = $plural;
            type Scope = k8s_openapi::$scope;
        }

        impl k8s_openapi::ListableResource for $ty {
            const LIST_KIND: &'static str = concat!(stringify!($ty), "List");
        }

        impl k8s_openapi::Metadata for $ty {
            type Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

            fn metadata(&self) -> &Self::Ty {
                &self.metadata
            }

            fn metadata_mut(&mut self) -> &mut Self::Ty {
                &mut self.metadata
            }
        }

        impl $ty {
            /// A new object with this kind's `apiVersion` and `kind`, the given name and spec.
            pub fn new(name: &str, spec: $spec) -> Self {
                Self {
                    api_version: $crate::coxswain::API_VERSION.to_string(),
                    kind: stringify!($ty).to_string(),
                    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                        name: Some(name.to_string()),
                        ..Default::default()
                    },
                    spec,
                    status: None,
                }
            }
        }
    };
}
pub(crate) use coxswain_resource;

/// Serde helper: skip zero counters when encoding.
pub(crate) fn is_zero(value: &i32) -> bool {
    *value == 0
}
