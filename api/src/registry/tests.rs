//! Registry lookups, name resolution and store keys.

use super::*;

#[test]
fn kinds_are_unique() {
    for (i, a) in KINDS.iter().enumerate() {
        for b in &KINDS[i + 1..] {
            assert!(
                a.api_version != b.api_version || a.kind != b.kind,
                "{}",
                a.kind
            );
            assert!(a.group != b.group || a.plural != b.plural, "{}", a.plural);
            for short in a.short_names {
                assert!(!b.short_names.contains(short), "{short}");
            }
        }
    }
}

#[test]
fn looks_up_kinds() {
    let pod = lookup("v1", "Pod").expect("pods are registered");
    assert_eq!(
        (pod.plural, pod.namespaced, pod.store_group()),
        ("pods", true, "core")
    );
    let tj = lookup("coxswain.dev/v1alpha1", "TrainingJob").expect("registered");
    assert_eq!((tj.plural, tj.short_names), ("trainingjobs", &["tj"][..]));
    assert!(!lookup("coxswain.dev/v1alpha1", "Queue").is_some_and(|q| q.namespaced));
    assert_eq!(lookup("v1", "Deployment"), None);
    assert_eq!(by_resource("core", "pods"), Some(pod));
    assert_eq!(by_resource("", "pods"), Some(pod));
    assert_eq!(
        by_resource("apps", "deployments").map(|k| k.kind),
        Some("Deployment")
    );
    assert_eq!(
        lookup("resource.k8s.io/v1", "ResourceSlice").map(|k| k.namespaced),
        Some(false)
    );
}

#[test]
fn resolves_names_like_kubectl() {
    let kind = |n: &str| resolve(n).map(|k| k.kind);
    for (name, expected) in [
        ("po", "Pod"),
        ("pods", "Pod"),
        ("Pod", "Pod"),
        ("no", "Node"),
        ("ns", "Namespace"),
        ("svc", "Service"),
        ("cm", "ConfigMap"),
        ("ev", "Event"),
        ("pv", "PersistentVolume"),
        ("pvc", "PersistentVolumeClaim"),
        ("deploy", "Deployment"),
        ("rs", "ReplicaSet"),
        ("ds", "DaemonSet"),
        ("cj", "CronJob"),
        ("sc", "StorageClass"),
        ("pc", "PriorityClass"),
        ("tj", "TrainingJob"),
        ("pg", "PodGroup"),
        ("q", "Queue"),
        ("jobs.batch", "Job"),
        ("trainingjobs.coxswain.dev", "TrainingJob"),
    ] {
        assert_eq!(kind(name), Some(expected), "{name}");
    }
    assert_eq!(kind("jobs.apps"), None);
    assert_eq!(kind("nope"), None);
}

#[test]
fn builds_store_keys() {
    assert_eq!(
        store_key("v1", "Pod", Some("default"), "web-0"),
        Ok("/registry/core/pods/default/web-0".to_string())
    );
    assert_eq!(
        store_key("coxswain.dev/v1alpha1", "Queue", None, "research"),
        Ok("/registry/coxswain.dev/queues/research".to_string())
    );
    assert_eq!(
        store_key("apps/v1", "Deployment", None, "web"),
        Err(StoreKeyError::NamespaceRequired("Deployment"))
    );
    assert_eq!(
        store_key("v1", "Node", Some("default"), "n1"),
        Err(StoreKeyError::ClusterScoped("Node"))
    );
    assert!(matches!(
        store_key("v1", "Pod", Some("a/b"), "x"),
        Err(StoreKeyError::BadNamespace(_))
    ));
    assert!(matches!(
        store_key("v1", "Pod", Some("a"), ""),
        Err(StoreKeyError::BadName(_))
    ));
    assert!(matches!(
        store_key("v9", "Pod", Some("a"), "x"),
        Err(StoreKeyError::UnknownKind { .. })
    ));
    let pods = lookup("v1", "Pod").expect("registered");
    assert_eq!(
        pods.store_prefix(Some("ml")),
        Ok("/registry/core/pods/ml/".to_string())
    );
    assert_eq!(
        pods.store_prefix(None),
        Ok("/registry/core/pods/".to_string())
    );
}
