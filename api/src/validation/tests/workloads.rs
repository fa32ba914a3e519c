//! Pod templates inside workloads are validated like pods.

use super::*;
use crate::decode_one;

fn decode(yaml: &str) -> Object {
    decode_one(yaml.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn deployment_pods_must_restart_always() {
    let object = decode(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {}\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: web, image: nginx}]\n",
    );
    assert_one(
        object,
        "spec.template.spec.restartPolicy",
        "Unsupported value: \"Never\": supported values: \"Always\"",
    );
}

#[test]
fn job_pods_follow_gpu_rules() {
    let object = decode(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: prep}\nspec:\n  template:\n    spec:\n      restartPolicy: Always\n      containers:\n        - name: prep\n          image: busybox\n          resources: {limits: {nvidia.com/gpu: 250m}}\n",
    );
    let found = errors(object);
    assert_eq!(
        found,
        vec![
            "spec.template.spec.containers[0].resources.limits[nvidia.com/gpu]: must be a whole number; use coxswain.dev/gpu-milli for a fraction of a GPU",
            "spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"",
        ]
    );
}

#[test]
fn cron_job_templates_have_their_own_path() {
    let object = decode(
        "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: nightly}\nspec:\n  schedule: '@daily'\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          containers: [{name: eval}]\n",
    );
    assert_one(
        object,
        "spec.jobTemplate.spec.template.spec.containers[0].image",
        "an image is required",
    );
}

#[test]
fn other_kinds_are_checked_on_metadata_only() {
    let object = decode("apiVersion: v1\nkind: Service\nmetadata: {name: 1web}\nspec: {}\n");
    assert_one(object, "metadata.name", "DNS-1035 label");
    let object =
        decode("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: b}\n");
    assert_eq!(errors(object), Vec::<String>::new());
}
