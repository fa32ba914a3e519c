//! coxswain's object model.
//!
//! Kubernetes objects come from `k8s-openapi`; coxswain's own kinds live in
//! the API group `coxswain.dev/v1alpha1`. This crate does no I/O: it owns
//! types, validation, defaulting and resource quantities.
//!
//! - [`k8s`]: the Kubernetes kinds served, re-exported; [`coxswain`]: coxswain's kinds;
//!   [`kubeflow`]: Kubeflow's `PyTorchJob` and its conversion to a `TrainingJob`.
//! - [`registry`]: every kind's group, version, plural, scope and short names; store keys.
//! - [`Object`] and [`decode()`]: typed objects from JSON or (multi-document) YAML.
//! - [`quantity`] and [`resources`]: exact resource quantities and GPU resource rules;
//!   [`pod_resources`]: what a pod needs in total.
//! - [`names`]: DNS-1123 and label name rules.
//! - [`validation`]: every problem of an object, with its field path.
//! - [`defaulting`]: the defaults the API server applies before validation.
//! - [`conditions`]: `status.conditions` helpers.
//! - [`devices`]: the GPU inventory as `resource.k8s.io/v1` ResourceSlices (driver `gpu.coxswain.dev`).
//! - [`gpu_devices`]: the pod annotation naming the GPUs the scheduler picked.
//! - [`csi_names`]: the CSI annotation, parameter and volume names the control plane and agents share.
//! - [`prometheus_text`]: reading the Prometheus text the daemons write.

pub mod conditions;
pub mod coxswain;
pub mod csi_names;
pub mod decode;
pub mod defaulting;
pub mod devices;
pub mod gpu_devices;
pub mod k8s;
pub mod kubeflow;
pub mod names;
mod object;
pub mod pod_resources;
pub mod prometheus_text;
pub mod quantity;
pub mod registry;
pub mod resources;
mod unknown_fields;
pub mod validation;

pub use decode::{DecodeError, decode, decode_one, decode_value};
pub use k8s_openapi;
pub use object::Object;
pub use quantity::{ParsedQuantity, QuantityError};
pub use unknown_fields::unknown_fields;
pub use validation::{FieldError, FieldErrorType, FieldPath};
