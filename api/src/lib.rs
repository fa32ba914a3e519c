//! coxswain's object model.
//!
//! Kubernetes objects come from `k8s-openapi`; coxswain's own kinds live in
//! the API group `coxswain.dev/v1alpha1`. This crate does no I/O: it owns
//! types, validation, defaulting and resource quantities.
