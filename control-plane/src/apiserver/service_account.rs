//! ServiceAccount admission, as Kubernetes' `ServiceAccount` admission plugin does it, on
//! a server that issues service-account tokens (one with a TLS listener):
//!
//! - a new pod without `spec.serviceAccountName` gets `default`;
//! - the service account must exist (403 naming it otherwise; the `default` account is
//!   waited for a little, as the controller that makes it may be a moment behind a new
//!   namespace);
//! - unless the pod or its account sets `automountServiceAccountToken: false`, or a
//!   container already mounts something at [`MOUNT_PATH`], the pod gets kube-apiserver's
//!   `kube-api-access-<suffix>` projected volume — a pod-bound token (`token`, refreshed by
//!   the agent), the cluster CA (`ca.crt` from the `kube-root-ca.crt` ConfigMap) and the
//!   namespace — mounted read-only at [`MOUNT_PATH`] in every container.

use std::time::Duration;

use coxswain_api::k8s::ServiceAccount;
use serde_json::{Value, json};

use super::status_error::ApiError;
use crate::apiserver::auth::stored;
use crate::store::Store;

/// Where the token, CA and namespace files appear in containers.
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The ConfigMap with the cluster CA that every namespace gets.
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";
/// The service account pods get when they name none.
pub const DEFAULT_ACCOUNT: &str = "default";
/// kube-apiserver's token lifetime for the projected volume (an hour and 7 s).
const TOKEN_SECONDS: i64 = 3607;
/// How often, and how long apart, the default account is looked for before refusing.
const DEFAULT_ACCOUNT_TRIES: u32 = 10;
const DEFAULT_ACCOUNT_WAIT: Duration = Duration::from_millis(150);

/// Admits a new pod (`value`, decoded and defaulted) in `namespace`.
pub async fn admit_pod(
    store: &dyn Store,
    namespace: &str,
    value: &mut Value,
) -> Result<(), ApiError> {
    let pod_name = value["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let spec = &mut value["spec"];
    let account_name = match spec["serviceAccountName"].as_str() {
        Some(name) if !name.is_empty() => name.to_string(),
        _ => DEFAULT_ACCOUNT.to_string(),
    };
    spec["serviceAccountName"] = json!(account_name);
    let account = find_account(store, namespace, &account_name)
        .await?
        .ok_or_else(|| {
            ApiError::Forbidden(format!(
                "pods {pod_name:?} is forbidden: error looking up service account \
                 {namespace}/{account_name}: serviceaccount {account_name:?} not found"
            ))
        })?;
    let automount = spec["automountServiceAccountToken"]
        .as_bool()
        .or(account.automount_service_account_token)
        .unwrap_or(true);
    if !automount || mounts_the_path(spec) {
        return Ok(());
    }
    let volume_name = volume_name(spec);
    let volumes = spec["volumes"].as_array_mut();
    let volume = access_volume(&volume_name);
    match volumes {
        Some(volumes) => volumes.push(volume),
        None => spec["volumes"] = json!([volume]),
    }
    let mount = json!({"name": volume_name, "readOnly": true, "mountPath": MOUNT_PATH});
    for field in ["initContainers", "containers"] {
        for container in spec[field].as_array_mut().into_iter().flatten() {
            match container["volumeMounts"].as_array_mut() {
                Some(mounts) => mounts.push(mount.clone()),
                None => container["volumeMounts"] = json!([mount]),
            }
        }
    }
    Ok(())
}

/// The account, waiting a little for `default` (its controller may lag a new namespace).
async fn find_account(
    store: &dyn Store,
    namespace: &str,
    name: &str,
) -> Result<Option<ServiceAccount>, ApiError> {
    let tries = if name == DEFAULT_ACCOUNT {
        DEFAULT_ACCOUNT_TRIES
    } else {
        1
    };
    for attempt in 0..tries {
        if attempt > 0 {
            tokio::time::sleep(DEFAULT_ACCOUNT_WAIT).await;
        }
        let account = stored::get(store, "v1", "ServiceAccount", Some(namespace), name)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        if account.is_some() {
            return Ok(account);
        }
    }
    Ok(None)
}

/// Whether some container already mounts a volume at [`MOUNT_PATH`].
fn mounts_the_path(spec: &Value) -> bool {
    ["initContainers", "containers"].iter().any(|field| {
        spec[*field]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["volumeMounts"].as_array().into_iter().flatten())
            .any(|m| m["mountPath"].as_str().map(|p| p.trim_end_matches('/')) == Some(MOUNT_PATH))
    })
}

/// `kube-api-access-<5 random characters>`, unused by the pod's other volumes.
fn volume_name(spec: &Value) -> String {
    let taken = |name: &str| {
        spec["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|v| v["name"].as_str() == Some(name))
    };
    loop {
        let suffix: String = super::objects::new_uid()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(5)
            .collect();
        let name = format!("kube-api-access-{suffix}");
        if !taken(&name) {
            return name;
        }
    }
}

/// kube-apiserver's projected volume: token, CA and namespace.
fn access_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "defaultMode": 0o644,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_SECONDS, "path": "token"}},
                {"configMap": {"name": ROOT_CA_CONFIG_MAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::EmbeddedStore;

    async fn store_with(accounts: &[Value]) -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path().join("s")).unwrap());
        for account in accounts {
            let name = account["metadata"]["name"].as_str().unwrap();
            let key = coxswain_api::registry::store_key("v1", "ServiceAccount", Some("ml"), name)
                .unwrap();
            store
                .create(&key, serde_json::to_vec(account).unwrap().into())
                .await
                .unwrap();
        }
        (dir, store)
    }

    fn account(name: &str, automount: Option<bool>) -> Value {
        let mut a = json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": "ml", "uid": "u"}});
        if let Some(automount) = automount {
            a["automountServiceAccountToken"] = json!(automount);
        }
        a
    }

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "ml"}, "spec": spec})
    }

    #[tokio::test]
    async fn a_pod_gets_the_default_account_and_its_token_volume_in_every_container() {
        let (_dir, store) = store_with(&[account("default", None)]).await;
        let mut value = pod(json!({
            "initContainers": [{"name": "i", "image": "busybox"}],
            "containers": [{"name": "a", "image": "busybox",
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "emptyDir": {}}],
        }));
        admit_pod(&*store, "ml", &mut value).await.unwrap();
        let spec = &value["spec"];
        assert_eq!(spec["serviceAccountName"], "default");
        let volume = &spec["volumes"][1];
        let name = volume["name"].as_str().unwrap();
        assert!(
            name.starts_with("kube-api-access-") && name.len() == 21,
            "{name}"
        );
        let sources = volume["projected"]["sources"].as_array().unwrap();
        assert_eq!(sources[0]["serviceAccountToken"]["path"], "token");
        assert_eq!(sources[1]["configMap"]["name"], ROOT_CA_CONFIG_MAP);
        assert_eq!(
            sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
            "metadata.namespace"
        );
        for container in [&spec["initContainers"][0], &spec["containers"][0]] {
            let mounts = container["volumeMounts"].as_array().unwrap();
            let mount = mounts.last().unwrap();
            assert_eq!(mount["name"], name);
            assert_eq!(mount["mountPath"], MOUNT_PATH);
            assert_eq!(mount["readOnly"], true);
        }
        assert_eq!(spec["containers"][0]["volumeMounts"][0]["name"], "data");
    }

    #[tokio::test]
    async fn automount_false_or_an_existing_mount_adds_no_volume() {
        let (_dir, store) =
            store_with(&[account("default", None), account("quiet", Some(false))]).await;
        let containers = json!([{"name": "a", "image": "busybox"}]);
        for spec in [
            json!({"automountServiceAccountToken": false, "containers": containers}),
            json!({"serviceAccountName": "quiet", "containers": containers}),
            json!({"containers": [{"name": "a", "image": "busybox",
                "volumeMounts": [{"name": "own", "mountPath": format!("{MOUNT_PATH}/")}]}],
                "volumes": [{"name": "own", "emptyDir": {}}]}),
        ] {
            let mut value = pod(spec);
            let before = value["spec"]["volumes"].clone();
            admit_pod(&*store, "ml", &mut value).await.unwrap();
            assert_eq!(value["spec"]["volumes"], before, "{value}");
        }
        // The pod's own `true` wins over its account's `false`.
        let mut value = pod(json!({"serviceAccountName": "quiet",
            "automountServiceAccountToken": true, "containers": containers}));
        admit_pod(&*store, "ml", &mut value).await.unwrap();
        assert_eq!(value["spec"]["volumes"].as_array().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_missing_account_is_refused_naming_it() {
        let (_dir, store) = store_with(&[account("default", None)]).await;
        let mut value = pod(json!({"serviceAccountName": "trainer",
            "containers": [{"name": "a", "image": "busybox"}]}));
        let err = admit_pod(&*store, "ml", &mut value).await.unwrap_err();
        let ApiError::Forbidden(message) = err else {
            panic!("{err:?}")
        };
        assert!(message.contains("ml/trainer"), "{message}");
    }
}
