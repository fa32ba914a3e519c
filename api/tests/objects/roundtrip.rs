//! Every kind survives decode → encode → decode, in JSON and in YAML.

use std::collections::BTreeSet;

use coxswain_api::registry::KINDS;
use coxswain_api::{Object, decode, decode_one};

const ALL_KINDS: &[u8] = include_bytes!("fixtures/all_kinds.yaml");

fn fixtures() -> Vec<Object> {
    decode(ALL_KINDS).unwrap_or_else(|e| panic!("fixtures must decode: {e}"))
}

#[test]
fn fixtures_cover_every_registered_kind() {
    let covered: BTreeSet<_> = fixtures()
        .iter()
        .map(|o| (o.api_version(), o.kind()))
        .collect();
    let registered: BTreeSet<_> = KINDS.iter().map(|k| (k.api_version, k.kind)).collect();
    assert_eq!(covered, registered);
    assert_eq!(KINDS.len(), 28);
}

#[test]
fn json_round_trip() {
    for object in fixtures() {
        let json = serde_json::to_vec(&object).expect("encodes to JSON");
        let again = decode_one(&json).unwrap_or_else(|e| panic!("{}: {e}", object.kind()));
        assert_eq!(again, object, "{}", object.kind());
        let pretty = serde_json::to_vec_pretty(&object).expect("encodes to JSON");
        assert_eq!(
            decode_one(&pretty).ok(),
            Some(object.clone()),
            "{}",
            object.kind()
        );
    }
}

#[test]
fn yaml_round_trip() {
    for object in fixtures() {
        let yaml = yaml_serde::to_string(&object).expect("encodes to YAML");
        let again = decode_one(yaml.as_bytes())
            .unwrap_or_else(|e| panic!("{}: {e}\n{yaml}", object.kind()));
        assert_eq!(again, object, "{}", object.kind());
    }
}

#[test]
fn multi_document_yaml_round_trip() {
    let objects = fixtures();
    let stream: Vec<String> = objects
        .iter()
        .map(|o| yaml_serde::to_string(o).expect("encodes to YAML"))
        .collect();
    let joined = format!("---\n{}\n---\n", stream.join("---\n"));
    assert_eq!(decode(joined.as_bytes()).ok(), Some(objects));
}

#[test]
fn encoding_skips_unset_fields() {
    let object = decode_one(
        br#"{"apiVersion":"coxswain.dev/v1alpha1","kind":"Queue","metadata":{"name":"q"}}"#,
    )
    .expect("decodes");
    let json = serde_json::to_string(&object).expect("encodes");
    assert_eq!(
        json,
        r#"{"apiVersion":"coxswain.dev/v1alpha1","kind":"Queue","metadata":{"name":"q"},"spec":{}}"#
    );
}

#[test]
fn store_keys_follow_the_registry() {
    let keys: Vec<String> = fixtures()
        .iter()
        .filter(|o| matches!(o.kind(), "Pod" | "Node" | "TrainingJob" | "Queue"))
        .map(|o| o.store_key().expect("key"))
        .collect();
    assert_eq!(
        keys,
        vec![
            "/registry/core/pods/ml/web-0",
            "/registry/core/nodes/node-1",
            "/registry/coxswain.dev/trainingjobs/ml/llm",
            "/registry/coxswain.dev/queues/research",
        ]
    );
}

#[test]
fn fixtures_are_valid() {
    for object in fixtures() {
        let errors = coxswain_api::validation::validate(&object);
        assert!(
            errors.is_empty(),
            "{} {}: {errors:#?}",
            object.kind(),
            object.name()
        );
    }
}

#[test]
fn lists_of_coxswain_kinds_encode_like_kubernetes_lists() {
    use coxswain_api::coxswain::TrainingJob;
    let jobs: Vec<TrainingJob> = fixtures()
        .into_iter()
        .filter_map(|o| match o {
            Object::TrainingJob(job) => Some(job),
            _ => None,
        })
        .collect();
    let list = k8s_openapi::List::<TrainingJob> {
        items: jobs,
        metadata: Default::default(),
    };
    let json = serde_json::to_value(&list).expect("encodes");
    assert_eq!(json["kind"], "TrainingJobList");
    assert_eq!(json["apiVersion"], "coxswain.dev/v1alpha1");
    let back: k8s_openapi::List<TrainingJob> = serde_json::from_value(json).expect("decodes");
    assert_eq!(back, list);
    let object: Object = back.items[0].clone().into();
    assert_eq!(object.kind(), "TrainingJob");
}
