//! Each validation rule fails when broken, with its field path.

mod coxswain;
mod pod;
mod secret;
mod workloads;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::coxswain::{Queue, TrainingJob};
use crate::{Object, decode_one};

pub(super) fn training_job() -> TrainingJob {
    match decode_one(include_bytes!("../../../../examples/trainingjob.yaml")) {
        Ok(Object::TrainingJob(job)) => job,
        other => panic!("example must decode to a TrainingJob: {other:?}"),
    }
}

pub(super) fn pod() -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some("busybox".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(super) fn errors(object: Object) -> Vec<String> {
    validate(&object).iter().map(ToString::to_string).collect()
}

/// Asserts the object has exactly one error, at `path`, whose message contains `message`.
#[track_caller]
pub(super) fn assert_one(object: Object, path: &str, message: &str) {
    let found = validate(&object);
    assert_eq!(
        found.len(),
        1,
        "expected one error at {path}, got {found:#?}"
    );
    assert_eq!(found[0].path.as_str(), path, "{found:#?}");
    assert!(found[0].message.contains(message), "{found:#?}");
}

pub(super) fn limits(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, Quantity>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect(),
    )
}

pub(super) fn with_resources(requests: &[(&str, &str)], lim: &[(&str, &str)]) -> Object {
    let mut p = pod();
    if let Some(spec) = &mut p.spec {
        spec.containers[0].resources = Some(ResourceRequirements {
            requests: limits(requests),
            limits: limits(lim),
            ..Default::default()
        });
    }
    Object::Pod(p)
}

#[test]
fn examples_and_defaults_are_valid() {
    assert_eq!(
        errors(Object::TrainingJob(training_job())),
        Vec::<String>::new()
    );
    assert_eq!(errors(Object::Pod(pod())), Vec::<String>::new());
}

#[test]
fn metadata_rules() {
    let mut p = pod();
    p.metadata.name = None;
    assert_one(
        Object::Pod(p.clone()),
        "metadata.name",
        "name or generateName is required",
    );
    p.metadata.generate_name = Some("web-".into());
    assert_eq!(errors(Object::Pod(p.clone())), Vec::<String>::new());
    p.metadata.name = Some("Web_1".into());
    assert_one(
        Object::Pod(p.clone()),
        "metadata.name",
        "RFC 1123 subdomain",
    );
    p.metadata.name = Some("web".into());
    p.metadata.namespace = Some("Bad".into());
    assert_one(
        Object::Pod(p.clone()),
        "metadata.namespace",
        "RFC 1123 label",
    );
    p.metadata.namespace = None;
    p.metadata.labels = Some(BTreeMap::from([("app".into(), "-bad".into())]));
    assert_one(
        Object::Pod(p.clone()),
        "metadata.labels[app]",
        "a valid label",
    );
    p.metadata.labels = Some(BTreeMap::from([("bad key".into(), "ok".into())]));
    assert_one(Object::Pod(p), "metadata.labels", "name part");
    let mut q = Queue::new("gpu", Default::default());
    q.metadata.namespace = Some("default".into());
    assert_one(Object::Queue(q), "metadata.namespace", "cluster-scoped");
    let mut q = Queue::new("gpu", Default::default());
    q.kind = "Queues".into();
    assert_one(Object::Queue(q), "kind", "must be \"Queue\"");
}

#[test]
fn field_errors_carry_types() {
    let mut p = pod();
    p.metadata.name = None;
    let found = validate(&Object::Pod(p));
    assert_eq!(found[0].error_type, FieldErrorType::Required);
    assert_eq!(found[0].error_type.reason(), "FieldValueRequired");
    let joined = ValidationError::check(found).map_err(|e| e.to_string());
    assert_eq!(
        joined,
        Err("metadata.name: name or generateName is required".to_string())
    );
    assert_eq!(ValidationError::check(Vec::new()), Ok(()));
    let path = FieldPath::new("spec").child("a").index(1).key("k");
    assert_eq!(path.as_str(), "spec.a[1][k]");
}
