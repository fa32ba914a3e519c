//! Decoding arbitrary input never panics, and neither do validation and defaulting of
//! whatever decodes.

use coxswain_api::Object;
use coxswain_api::defaulting::{apply_defaults, pod_group_for};
use coxswain_api::validation::validate;
use coxswain_api::{decode, unknown_fields};
use proptest::prelude::*;

const SEEDS: &str = include_str!("fixtures/all_kinds.yaml");

fn exercise(bytes: &[u8]) {
    if let Ok(objects) = decode(bytes) {
        for mut object in objects {
            let _ = validate(&object);
            apply_defaults(&mut object);
            let _ = validate(&object);
            if let Object::TrainingJob(job) = &object {
                let _ = validate(&Object::PodGroup(pod_group_for(job)));
            }
            if let (Ok(json), Ok(raw)) = (object.to_json_value(), serde_json::from_slice(bytes)) {
                let _ = unknown_fields(&raw, &json);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        exercise(&bytes);
    }

    #[test]
    fn training_jobs_with_any_numbers_never_panic(
        replicas in proptest::collection::vec(any::<i32>(), 0..4),
        gpus in any::<i32>(),
        name_len in 0usize..80,
    ) {
        let groups: Vec<String> = replicas
            .iter()
            .enumerate()
            .map(|(i, r)| format!(
                "{{\"name\":\"g{i}\",\"replicas\":{r},\"gpusPerReplica\":{gpus},\
                 \"template\":{{\"spec\":{{\"containers\":[{{\"name\":\"c\",\"image\":\"i\"}}]}}}}}}"
            ))
            .collect();
        let json = format!(
            "{{\"apiVersion\":\"coxswain.dev/v1alpha1\",\"kind\":\"TrainingJob\",\
             \"metadata\":{{\"name\":\"{}\"}},\"spec\":{{\"replicaGroups\":[{}]}}}}",
            "j".repeat(name_len),
            groups.join(",")
        );
        prop_assert!(decode(json.as_bytes()).is_ok(), "{}", json);
        exercise(json.as_bytes());
    }

    #[test]
    fn json_ish_strings_never_panic(text in r#"[{}\[\]":,. a-zA-Z0-9\-\n]{0,200}"#) {
        exercise(text.as_bytes());
        exercise(format!(r#"{{"apiVersion":"v1","kind":"Pod",{text}}}"#).as_bytes());
        exercise(format!("apiVersion: coxswain.dev/v1alpha1\nkind: TrainingJob\n{text}").as_bytes());
    }

    #[test]
    fn mutated_manifests_never_panic(
        cut in 0..SEEDS.len(),
        flips in proptest::collection::vec((0..SEEDS.len(), any::<u8>()), 0..8),
    ) {
        let mut bytes = SEEDS.as_bytes().to_vec();
        for (at, byte) in flips {
            bytes[at] = byte;
        }
        exercise(&bytes);
        exercise(&bytes[..cut]);
    }

    #[test]
    fn quantities_never_panic(text in r"[-+]?[0-9.]{0,30}[eEinumkKMGTP]{0,2}[-+]?[0-9]{0,25}") {
        if let Ok(q) = coxswain_api::ParsedQuantity::parse(&text) {
            let canonical = q.to_string();
            prop_assert_eq!(coxswain_api::ParsedQuantity::parse(&canonical), Ok(q));
        }
    }
}

#[test]
fn deeply_nested_input_is_an_error_not_a_crash() {
    let json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(decode(json.as_bytes()).is_err());
    let object = format!(
        "{{\"a\":{}1{}}}",
        "{\"a\":".repeat(10_000),
        "}".repeat(10_000)
    );
    assert!(decode(object.as_bytes()).is_err());
    let yaml = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(decode(yaml.as_bytes()).is_err());
}
