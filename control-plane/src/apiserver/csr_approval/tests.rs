//! Unit tests of CSR approval: condition rules and the protobuf body.

use serde_json::{Value, json};

use super::*;
use crate::apiserver::protobuf_wire::MAGIC;

fn csr(conditions: Value) -> Value {
    json!({
        "metadata": {"name": "bob"},
        "spec": {"signerName": "kubernetes.io/kube-apiserver-client", "request": "cGVt"},
        "status": {"conditions": conditions, "certificate": "Y2VydA=="},
    })
}

fn approved() -> Value {
    json!({"type": "Approved", "status": "True", "reason": "KubectlApprove"})
}

fn denied() -> Value {
    json!({"type": "Denied", "status": "True", "reason": "KubectlDeny"})
}

fn causes(error: ApiError) -> Vec<String> {
    match error {
        ApiError::Invalid { causes, .. } => causes
            .iter()
            .map(|c| format!("{}: {}", c.path.as_str(), c.message))
            .collect(),
        other => panic!("not Invalid: {other:?}"),
    }
}

#[test]
fn an_approval_changes_only_the_conditions_and_fills_their_times() {
    let old = csr(json!([]));
    let mut candidate = csr(json!([approved()]));
    candidate["spec"]["signerName"] = json!("example.com/evil");
    candidate["status"]["certificate"] = json!("Zm9yZ2Vk");
    let merged = with_new_conditions(&old, &candidate, "bob").unwrap();
    assert_eq!(merged["spec"], old["spec"]);
    assert_eq!(merged["status"]["certificate"], "Y2VydA==");
    let condition = &merged["status"]["conditions"][0];
    assert_eq!(condition["type"], "Approved");
    assert!(
        condition["lastUpdateTime"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert_eq!(condition["lastTransitionTime"], condition["lastUpdateTime"]);
}

#[test]
fn approved_and_denied_exclude_each_other_and_stay() {
    let pending = csr(json!([]));
    let both = csr(json!([approved(), denied()]));
    let errors = causes(with_new_conditions(&pending, &both, "bob").unwrap_err());
    assert_eq!(
        errors,
        ["status.conditions[1].type: Approved and Denied conditions are mutually exclusive"]
    );
    // Flipping an approval to a denial removes the Approved condition.
    let flipped = csr(json!([denied()]));
    let errors = causes(with_new_conditions(&approved_csr(), &flipped, "bob").unwrap_err());
    assert!(
        errors.contains(
            &"status.conditions: updates may not remove a condition of type \"Approved\""
                .to_string()
        ),
        "{errors:?}"
    );
    let unset = csr(json!([{"type": "Denied", "status": "False"}]));
    let errors = causes(with_new_conditions(&pending, &unset, "bob").unwrap_err());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("status.conditions[0].status"),
        "{errors:?}"
    );
    let twice = csr(json!([approved(), approved()]));
    let errors = causes(with_new_conditions(&pending, &twice, "bob").unwrap_err());
    assert!(
        errors[0].starts_with("status.conditions[1].type"),
        "{errors:?}"
    );
}

fn approved_csr() -> Value {
    csr(json!([approved()]))
}

#[test]
fn status_writes_may_not_approve_or_deny() {
    let pending = csr(json!([]));
    let errors =
        causes(check_status_update(&pending, &csr(json!([approved()])), "bob").unwrap_err());
    assert_eq!(
        errors,
        ["status.conditions: updates may not add a condition of type \"Approved\""]
    );
    let failed = json!({"type": "Failed", "status": "True", "reason": "SignerValidationFailure"});
    check_status_update(&approved_csr(), &csr(json!([approved(), failed])), "bob").unwrap();
    assert!(check_status_update(&approved_csr(), &csr(json!([])), "bob").is_err());
}

fn len_field(number: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![(number << 3) | 2, bytes.len() as u8];
    out.extend_from_slice(bytes);
    out
}

#[test]
fn reads_the_conditions_of_a_protobuf_request() {
    // metadata {name: bob, resourceVersion: 12}; status {conditions: [{type: Approved,
    // status: True, reason: KubectlApprove, lastUpdateTime: {seconds: 1_800_000_000},
    // lastTransitionTime: {}}]}.
    let meta = [len_field(1, b"bob"), len_field(6, b"12")].concat();
    let time = vec![1 << 3, 0x80, 0xa4, 0xa7, 0xda, 0x06];
    let condition = [
        len_field(1, b"Approved"),
        len_field(6, b"True"),
        len_field(2, b"KubectlApprove"),
        len_field(4, &time),
        len_field(5, b""),
    ]
    .concat();
    let status = len_field(1, &condition);
    let object = [
        len_field(1, &meta),
        len_field(2, b""),
        len_field(3, &status),
    ]
    .concat();
    let body = [MAGIC, &len_field(2, &object)].concat();
    let value = from_protobuf(&body).unwrap();
    assert_eq!(value["metadata"]["resourceVersion"], "12");
    let condition = &value["status"]["conditions"][0];
    assert_eq!(
        (condition["type"].as_str(), condition["status"].as_str()),
        (Some("Approved"), Some("True"))
    );
    assert_eq!(condition["lastUpdateTime"], "2027-01-15T08:00:00Z");
    assert!(condition.get("lastTransitionTime").is_none());
    assert!(from_protobuf(&body[..body.len() - 2]).is_err());
}
