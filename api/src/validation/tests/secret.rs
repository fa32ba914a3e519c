//! Secret and ConfigMap keys, sizes and the keys each Secret type requires.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;

use super::*;
use crate::defaulting::fold_string_data;
use crate::k8s::{ConfigMap, Secret};

fn secret(data: &[(&str, &str)], strings: &[(&str, &str)]) -> Secret {
    let bytes = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect::<BTreeMap<_, _>>()
    };
    Secret {
        data: Some(bytes(data)),
        string_data: Some(
            strings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Secret::default()
    }
}

fn paths(errors: &[FieldError]) -> Vec<String> {
    errors.iter().map(|e| e.path.to_string()).collect()
}

#[test]
fn string_data_wins_over_data_and_is_not_kept() {
    let mut s = secret(&[("a", "1"), ("b", "2")], &[("b", "two"), ("c", "3")]);
    fold_string_data(&mut s);
    assert!(s.string_data.is_none());
    let data = s.data.unwrap();
    assert_eq!(data["b"].0, b"two");
    assert_eq!(data["c"].0, b"3");
    assert_eq!(data["a"].0, b"1");
}

#[test]
fn keys_are_config_keys() {
    let s = secret(
        &[("ok.key_1-A", ""), ("bad key", ""), ("..x", ""), (".", "")],
        &[],
    );
    assert_eq!(
        paths(&validate_secret(&s)),
        ["data[.]", "data[..x]", "data[bad key]"]
    );
    let long = "k".repeat(254);
    assert_eq!(validate_secret(&secret(&[(&long, "")], &[])).len(), 1);
    let big = "x".repeat(MAX_SECRET_BYTES + 1);
    let errors = validate_secret(&secret(&[("big", &big)], &[]));
    assert_eq!(errors[0].error_type, FieldErrorType::TooLong);
    let config_map = ConfigMap {
        data: Some([("k".to_string(), "v".to_string())].into()),
        binary_data: Some([("k".to_string(), ByteString(vec![1]))].into()),
        ..ConfigMap::default()
    };
    assert_eq!(
        paths(&validate_config_map(&config_map)),
        ["data[k]", "binaryData[k]"]
    );
}

#[test]
fn typed_secrets_need_their_keys() {
    let mut tls = secret(&[("tls.crt", "c")], &[]);
    tls.type_ = Some("kubernetes.io/tls".into());
    assert_eq!(paths(&validate_secret(&tls)), ["data[tls.key]"]);
    let mut auth = secret(&[], &[]);
    auth.type_ = Some("kubernetes.io/basic-auth".into());
    assert_eq!(
        paths(&validate_secret(&auth)),
        ["data[username]", "data[password]"]
    );
    let mut docker = secret(&[(".dockerconfigjson", "not json")], &[]);
    docker.type_ = Some("kubernetes.io/dockerconfigjson".into());
    assert_eq!(
        paths(&validate_secret(&docker)),
        ["data[.dockerconfigjson]"]
    );
    let mut token = secret(&[], &[]);
    token.type_ = Some("kubernetes.io/service-account-token".into());
    assert_eq!(
        paths(&validate_secret(&token)),
        ["metadata.annotations[kubernetes.io/service-account.name]"]
    );
}
