//! Pod and container resource rules.

use k8s_openapi::api::core::v1::{Volume, VolumeMount};

use super::*;

#[test]
fn pod_rules() {
    let mut p = pod();
    p.spec = None;
    assert_one(Object::Pod(p), "spec", "needs a spec");
    let mut p = pod();
    if let Some(spec) = &mut p.spec {
        spec.containers.clear();
    }
    assert_one(Object::Pod(p), "spec.containers", "at least one container");
    let mut p = pod();
    if let Some(spec) = &mut p.spec {
        spec.containers.push(spec.containers[0].clone());
        spec.containers[0].image = None;
        spec.containers[1].image_pull_policy = Some("Sometimes".into());
        spec.restart_policy = Some("Maybe".into());
    }
    let found = errors(Object::Pod(p));
    assert_eq!(
        found,
        vec![
            "spec.containers[0].image: an image is required",
            "spec.containers[1].imagePullPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\"",
            "spec.containers[1].name: Duplicate value: \"app\"",
            "spec.restartPolicy: Unsupported value: \"Maybe\": supported values: \"Always\", \"OnFailure\", \"Never\"",
        ]
    );
    let mut p = pod();
    if let Some(spec) = &mut p.spec {
        spec.containers[0].name = "App".into();
    }
    assert_one(Object::Pod(p), "spec.containers[0].name", "RFC 1123 label");
    let mut p = pod();
    if let Some(spec) = &mut p.spec {
        spec.containers[0].volume_mounts = Some(vec![Default::default()]);
        spec.volumes = Some(vec![
            Volume {
                name: "data".into(),
                ..Default::default()
            };
            2
        ]);
    }
    let found = errors(Object::Pod(p));
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(found[0].starts_with("spec.volumes[1].name: Duplicate"));
    assert!(found[1].starts_with("spec.containers[0].volumeMounts[0].name: \"\": no volume"));
    assert!(found[2].starts_with("spec.containers[0].volumeMounts[0].mountPath"));
}

#[test]
fn resource_rules() {
    let base = "spec.containers[0].resources";
    assert_eq!(
        errors(with_resources(
            &[("cpu", "500m")],
            &[("cpu", "1"), ("memory", "1Gi")]
        )),
        Vec::<String>::new()
    );
    assert_one(
        with_resources(&[("cpu", "2")], &[("cpu", "1")]),
        &format!("{base}.requests[cpu]"),
        "less than or equal to cpu limit of 1",
    );
    assert_one(
        with_resources(&[("memory", "lots")], &[]),
        &format!("{base}.requests[memory]"),
        "must match",
    );
    assert_one(
        with_resources(&[], &[("cpu", "-1")]),
        &format!("{base}.limits[cpu]"),
        "greater than or equal to 0",
    );
    assert_one(
        with_resources(&[], &[("bad name!", "1")]),
        &format!("{base}.limits[bad name!]"),
        "name part",
    );
    let found = errors(with_resources(&[], &[("nvidia.com/gpu", "0.5")]));
    assert_eq!(
        found,
        vec![format!(
            "{base}.limits[nvidia.com/gpu]: must be a whole number; use coxswain.dev/gpu-milli for a fraction of a GPU"
        )]
    );
    assert_one(
        with_resources(&[], &[("coxswain.dev/gpu-milli", "1500")]),
        &format!("{base}.limits[coxswain.dev/gpu-milli]"),
        "between 1 and 1000",
    );
    assert_one(
        with_resources(&[("nvidia.com/gpu", "1")], &[]),
        &format!("{base}.requests[nvidia.com/gpu]"),
        "cannot be overcommitted",
    );
    assert_one(
        with_resources(&[("nvidia.com/gpu", "1")], &[("nvidia.com/gpu", "2")]),
        &format!("{base}.requests[nvidia.com/gpu]"),
        "must be equal to nvidia.com/gpu limit of 2",
    );
    assert_one(
        with_resources(
            &[],
            &[("nvidia.com/gpu", "1"), ("coxswain.dev/gpu-milli", "500")],
        ),
        &format!("{base}.limits[coxswain.dev/gpu-milli]"),
        "cannot be combined",
    );
}

#[test]
fn working_dirs_are_absolute_clean_and_outside_proc() {
    for (dir, message) in [
        ("/proc/self/fd/7", "must not be under /proc"),
        ("work", "must be an absolute path"),
        ("/a/../proc/self/fd/8", "must be a clean path"),
        ("/a//b", "must be a clean path"),
    ] {
        let mut p = pod();
        if let Some(spec) = &mut p.spec {
            spec.containers[0].working_dir = Some(dir.into());
        }
        assert_one(Object::Pod(p), "spec.containers[0].workingDir", message);
    }
    let mut p = pod();
    if let Some(spec) = &mut p.spec {
        spec.containers[0].working_dir = Some("/srv/app".into());
    }
    assert_eq!(errors(Object::Pod(p)), Vec::<String>::new());
}

#[test]
fn sub_paths_stay_below_their_volume() {
    for (sub_path, message) in [
        ("/etc", "must be a relative path"),
        ("a/../../etc", "must not contain '..'"),
    ] {
        let mut p = pod();
        if let Some(spec) = &mut p.spec {
            spec.volumes = Some(vec![Volume {
                name: "data".into(),
                empty_dir: Some(Default::default()),
                ..Default::default()
            }]);
            spec.containers[0].volume_mounts = Some(vec![VolumeMount {
                name: "data".into(),
                mount_path: "/data".into(),
                sub_path: Some(sub_path.into()),
                ..Default::default()
            }]);
        }
        assert_one(
            Object::Pod(p),
            "spec.containers[0].volumeMounts[0].subPath",
            message,
        );
    }
}

#[test]
fn projected_token_lifetimes_stay_within_kube_apiservers_bounds() {
    use k8s_openapi::api::core::v1::{
        ProjectedVolumeSource, ServiceAccountTokenProjection, VolumeProjection,
    };
    let with_token = |seconds: i64| {
        let mut p = pod();
        if let Some(spec) = &mut p.spec {
            spec.volumes = Some(vec![Volume {
                name: "token".into(),
                projected: Some(ProjectedVolumeSource {
                    sources: Some(vec![VolumeProjection {
                        service_account_token: Some(ServiceAccountTokenProjection {
                            expiration_seconds: Some(seconds),
                            path: "token".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            }]);
        }
        Object::Pod(p)
    };
    let field = "spec.volumes[0].projected.sources[0].serviceAccountToken.expirationSeconds";
    assert_one(with_token(599), field, "less than 10 minutes");
    assert_one(with_token((1 << 32) + 1), field, "larger than 2^32 seconds");
    assert!(errors(with_token(600)).is_empty());
    assert!(errors(with_token(3607)).is_empty());
}
