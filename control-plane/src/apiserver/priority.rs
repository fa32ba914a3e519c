//! Priority admission, as Kubernetes' `Priority` admission plugin does it: a new pod's
//! `spec.priorityClassName` is resolved into `spec.priority` and `spec.preemptionPolicy`
//! from its `scheduling.k8s.io/v1` PriorityClass; a pod without a class gets the
//! `globalDefault` class (the lowest-valued one if several claim it) or priority 0. An
//! unknown class, or a `priority`/`preemptionPolicy` in the pod that disagrees with its
//! class, is refused (403, naming the field).
//!
//! The built-in classes `system-cluster-critical` and `system-node-critical` are created
//! when the API server starts, as kube-apiserver's post-start hook does.

use serde_json::{Value, json};

use super::objects::{from_store, meta_str, new_uid, now, to_store};
use super::status_error::ApiError;
use crate::store::{ListOptions, Store, StoreError};

/// The built-in classes: name, value, description.
pub const SYSTEM_PRIORITY_CLASSES: [(&str, i32, &str); 2] = [
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to \
         another node if necessary.",
    ),
];

/// The preemption policy when a class names none.
const PREEMPT_LOWER_PRIORITY: &str = "PreemptLowerPriority";

fn class_key(name: &str) -> Result<String, ApiError> {
    class_kind()?
        .store_key(None, name)
        .map_err(|e| ApiError::Internal(format!("priority class key: {e}")))
}

fn class_kind() -> Result<&'static coxswain_api::registry::KindInfo, ApiError> {
    coxswain_api::registry::lookup("scheduling.k8s.io/v1", "PriorityClass")
        .ok_or_else(|| ApiError::Internal("PriorityClass is not registered".to_string()))
}

/// Creates the built-in priority classes that are missing.
pub async fn ensure_system_classes(store: &dyn Store) -> Result<(), StoreError> {
    for (name, value, description) in SYSTEM_PRIORITY_CLASSES {
        let Ok(key) = class_key(name) else {
            continue;
        };
        if store.get(&key).await?.is_some() {
            continue;
        }
        let class = json!({
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": name, "uid": new_uid(), "creationTimestamp": now()},
            "value": value,
            "globalDefault": false,
            "description": description,
            "preemptionPolicy": PREEMPT_LOWER_PRIORITY,
        });
        match store.create(&key, to_store(&class)).await {
            Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// What a class gives its pods.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Resolved {
    name: Option<String>,
    value: i32,
    policy: String,
}

fn resolved(class: &Value) -> Resolved {
    Resolved {
        name: meta_str(class, "name").map(str::to_string),
        value: class
            .get("value")
            .and_then(Value::as_i64)
            .and_then(|v| i32::try_from(v).ok())
            .unwrap_or(0),
        policy: class
            .get("preemptionPolicy")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .unwrap_or(PREEMPT_LOWER_PRIORITY)
            .to_string(),
    }
}

/// The `globalDefault` class with the lowest value, if any.
async fn global_default(store: &dyn Store) -> Result<Option<Resolved>, ApiError> {
    let prefix = class_kind()?
        .store_prefix(None)
        .map_err(|e| ApiError::Internal(format!("priority class prefix: {e}")))?;
    let page = store.list(&prefix, ListOptions::default()).await?;
    let mut best: Option<Resolved> = None;
    for kv in &page.items {
        let class = from_store(kv)?;
        if class.get("globalDefault").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        let r = resolved(&class);
        if best.as_ref().is_none_or(|b| r.value < b.value) {
            best = Some(r);
        }
    }
    Ok(best)
}

/// Resolves the priority of the pod `pod` (an admitted object about to be created).
pub async fn admit_pod(store: &dyn Store, pod: &mut Value) -> Result<(), ApiError> {
    let pod_name = meta_str(pod, "name").unwrap_or_default().to_string();
    let forbidden =
        |message: String| ApiError::Forbidden(format!("pods {pod_name:?} is forbidden: {message}"));
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let class_name = spec
        .get("priorityClassName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    let class = match class_name {
        Some(name) => {
            let kv = store.get(&class_key(&name)?).await?;
            match kv {
                Some(kv) => resolved(&from_store(&kv)?),
                None => {
                    return Err(forbidden(format!(
                        "spec.priorityClassName: no PriorityClass with name {name} was found"
                    )));
                }
            }
        }
        None => global_default(store).await?.unwrap_or(Resolved {
            name: None,
            value: 0,
            policy: PREEMPT_LOWER_PRIORITY.to_string(),
        }),
    };
    if let Some(given) = spec.get("priority").filter(|p| !p.is_null())
        && given.as_i64() != Some(i64::from(class.value))
    {
        return Err(forbidden(format!(
            "spec.priority: the integer value of priority ({given}) must not be provided in \
             pod spec; priority admission controller computed {} from the given \
             PriorityClass name",
            class.value
        )));
    }
    if let Some(given) = spec.get("preemptionPolicy").and_then(Value::as_str)
        && given != class.policy
    {
        return Err(forbidden(format!(
            "spec.preemptionPolicy: the string value of PreemptionPolicy ({given}) must not be \
             provided in pod spec; priority admission controller computed {} from the given \
             PriorityClass name",
            class.policy
        )));
    }
    if let Some(name) = class.name {
        spec.insert("priorityClassName".to_string(), json!(name));
    }
    spec.insert("priority".to_string(), json!(class.value));
    spec.insert("preemptionPolicy".to_string(), json!(class.policy));
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::EmbeddedStore;

    async fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        ensure_system_classes(&*store).await.unwrap();
        (dir, store)
    }

    async fn put_class(store: &dyn Store, name: &str, value: i32, default: bool) {
        let class = json!({"metadata": {"name": name}, "value": value, "globalDefault": default});
        store
            .create(&class_key(name).unwrap(), to_store(&class))
            .await
            .unwrap();
    }

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": spec})
    }

    #[tokio::test]
    async fn a_class_name_becomes_priority_and_policy() {
        let (_dir, store) = store().await;
        let mut p = pod(json!({"priorityClassName": "system-node-critical"}));
        admit_pod(&*store, &mut p).await.unwrap();
        assert_eq!(p["spec"]["priority"], json!(2_000_001_000));
        assert_eq!(p["spec"]["preemptionPolicy"], json!("PreemptLowerPriority"));
    }

    #[tokio::test]
    async fn no_class_takes_the_lowest_global_default_or_zero() {
        let (_dir, store) = store().await;
        let mut p = pod(json!({}));
        admit_pod(&*store, &mut p).await.unwrap();
        assert_eq!(p["spec"]["priority"], json!(0));
        assert!(p["spec"].get("priorityClassName").is_none());
        put_class(&*store, "batch", 100, true).await;
        put_class(&*store, "low", 5, true).await;
        put_class(&*store, "prod", 1000, false).await;
        let mut p = pod(json!({}));
        admit_pod(&*store, &mut p).await.unwrap();
        assert_eq!(p["spec"]["priority"], json!(5));
        assert_eq!(p["spec"]["priorityClassName"], json!("low"));
    }

    #[tokio::test]
    async fn unknown_classes_and_contradicting_values_are_forbidden() {
        let (_dir, store) = store().await;
        let mut p = pod(json!({"priorityClassName": "gold"}));
        let e = admit_pod(&*store, &mut p).await.unwrap_err().to_string();
        assert!(e.contains("spec.priorityClassName"), "{e}");
        assert!(
            e.contains("no PriorityClass with name gold was found"),
            "{e}"
        );
        let mut p = pod(json!({"priorityClassName": "system-cluster-critical", "priority": 7}));
        let e = admit_pod(&*store, &mut p).await.unwrap_err().to_string();
        assert!(e.contains("spec.priority:"), "{e}");
        let mut p = pod(json!({"priority": 0, "preemptionPolicy": "Never"}));
        let e = admit_pod(&*store, &mut p).await.unwrap_err().to_string();
        assert!(e.contains("spec.preemptionPolicy"), "{e}");
    }
}
