//! [`Object`]: any object coxswain serves, and the list of kinds behind the registry.
//!
//! One list below names every kind with its Rust type, singular name, short names and
//! name rule; it generates both the [`Object`] enum and [`crate::registry::KINDS`], so
//! the two cannot drift apart.

use k8s_openapi::Resource;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};

use crate::coxswain::{PodGroup, Queue, TrainingJob};
use crate::k8s::*;
use crate::kubeflow::PyTorchJob;
use crate::names::NameRule;
use crate::registry::KindInfo;

/// Somewhere a typed object can be decoded from (a YAML document, JSON bytes, a value).
pub(crate) trait DocumentSource {
    /// The error decoding fails with.
    type Error;
    /// Decodes the whole document as `T`.
    fn decode<T: DeserializeOwned>(self) -> Result<T, Self::Error>;
}

macro_rules! objects {
    ($($variant:ident: $singular:literal [$($short:literal),*] $rule:ident;)*) => {
        /// Any object coxswain serves, decoded into its typed form.
        #[derive(Debug, Clone, PartialEq)]
        #[allow(clippy::large_enum_variant, reason = "objects are handled one at a time")]
        pub enum Object {
            $(
                #[doc = concat!("A `", stringify!($variant), "`.")]
                $variant($variant),
            )*
        }

        pub(crate) static ALL_KINDS: &[KindInfo] = &[
            $(KindInfo::of::<$variant>($singular, &[$($short),*], NameRule::$rule),)*
        ];

        impl Object {
            /// The registry entry of this object's kind.
            pub fn kind_info(&self) -> &'static KindInfo {
                match self {
                    $(Object::$variant(_) => {
                        const INFO: KindInfo =
                            KindInfo::of::<$variant>($singular, &[$($short),*], NameRule::$rule);
                        &INFO
                    })*
                }
            }

            /// The object's metadata.
            pub fn metadata(&self) -> &ObjectMeta {
                match self {
                    $(Object::$variant(o) => &o.metadata,)*
                }
            }

            /// The object's metadata, to change.
            pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
                match self {
                    $(Object::$variant(o) => &mut o.metadata,)*
                }
            }
        }

        $(
            impl From<$variant> for Object {
                fn from(object: $variant) -> Self {
                    Object::$variant(object)
                }
            }
        )*

        impl Serialize for Object {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                match self {
                    $(Object::$variant(o) => o.serialize(serializer),)*
                }
            }
        }

        /// Decodes `source` as the kind `info` names; `None` if no variant has that kind.
        pub(crate) fn decode_kind<S: DocumentSource>(
            info: &KindInfo,
            source: S,
        ) -> Option<Result<Object, S::Error>> {
            $(
                if info.api_version == <$variant as Resource>::API_VERSION
                    && info.kind == <$variant as Resource>::KIND
                {
                    return Some(source.decode::<$variant>().map(Object::$variant));
                }
            )*
            None
        }
    };
}

objects! {
    Namespace: "namespace" ["ns"] Dns1123Label;
    Pod: "pod" ["po"] Dns1123Subdomain;
    Node: "node" ["no"] Dns1123Subdomain;
    Service: "service" ["svc"] Dns1035Label;
    Secret: "secret" [] Dns1123Subdomain;
    ServiceAccount: "serviceaccount" ["sa"] Dns1123Subdomain;
    ConfigMap: "configmap" ["cm"] Dns1123Subdomain;
    Event: "event" ["ev"] Dns1123Subdomain;
    PersistentVolume: "persistentvolume" ["pv"] Dns1123Subdomain;
    PersistentVolumeClaim: "persistentvolumeclaim" ["pvc"] Dns1123Subdomain;
    Job: "job" [] Dns1123Subdomain;
    CronJob: "cronjob" ["cj"] Dns1123Subdomain;
    Deployment: "deployment" ["deploy"] Dns1123Subdomain;
    ReplicaSet: "replicaset" ["rs"] Dns1123Subdomain;
    DaemonSet: "daemonset" ["ds"] Dns1123Subdomain;
    Lease: "lease" [] Dns1123Subdomain;
    PriorityClass: "priorityclass" ["pc"] Dns1123Subdomain;
    StorageClass: "storageclass" ["sc"] Dns1123Subdomain;
    ResourceSlice: "resourceslice" [] Dns1123Subdomain;
    Role: "role" [] PathSegment;
    ClusterRole: "clusterrole" [] PathSegment;
    RoleBinding: "rolebinding" [] PathSegment;
    ClusterRoleBinding: "clusterrolebinding" [] PathSegment;
    CertificateSigningRequest: "certificatesigningrequest" ["csr"] PathSegment;
    TrainingJob: "trainingjob" ["tj"] Dns1123Label;
    PodGroup: "podgroup" ["pg"] Dns1123Subdomain;
    Queue: "queue" ["q"] Dns1123Label;
    PyTorchJob: "pytorchjob" [] Dns1035Label;
}

impl Object {
    /// `apiVersion` of the object's kind.
    pub fn api_version(&self) -> &'static str {
        self.kind_info().api_version
    }

    /// The object's kind.
    pub fn kind(&self) -> &'static str {
        self.kind_info().kind
    }

    /// The object's name (empty when unset).
    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or_default()
    }

    /// The object's namespace, if it has one.
    pub fn namespace(&self) -> Option<&str> {
        self.metadata().namespace.as_deref()
    }

    /// The object as a JSON value (the Kubernetes wire form).
    pub fn to_json_value(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::to_value(self)
    }

    /// The object's store key (see [`crate::registry`]).
    pub fn store_key(&self) -> Result<String, crate::registry::StoreKeyError> {
        self.kind_info().store_key(self.namespace(), self.name())
    }
}
