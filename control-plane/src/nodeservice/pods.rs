//! WatchPods: the pods bound to one node, each with the secrets, configMaps and claims it
//! references and the volumes its claims are bound to.
//!
//! A kube-runtime watcher over `spec.nodeName=<node>` feeds the stream: every pod of the
//! initial list as ADDED, one SYNCED, then ADDED / MODIFIED / DELETED as pods are bound,
//! change and go. When the watcher has to list again (its watch expired), the new list is
//! diffed against what the agent was told, so the agent sees only real changes.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use coxswain_proto::node::v1alpha1 as pb;
use coxswain_proto::node::v1alpha1::pod_event::Type;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, PersistentVolume, PersistentVolumeClaim, Pod, Secret,
};
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::mpsc;
use tonic::Status;

use super::{EventStream, NodeService};

/// Serves WatchPods: the stream runs until the agent hangs up or the server shuts down.
pub(crate) fn watch(
    service: &NodeService,
    request: pb::WatchPodsRequest,
) -> Result<EventStream<pb::PodEvent>, Status> {
    super::server_stream(service, request.node_name, |client, node, tx| async move {
        stream_pods(client, node, &tx).await
    })
}

/// What the agent has been told.
#[derive(Default)]
struct Sent {
    pods: BTreeMap<String, Pod>,
    synced: bool,
}

type Sender = mpsc::Sender<Result<pb::PodEvent, Status>>;

/// What the stream follows: the node's pods, and the claims their volumes name.
enum Followed {
    Pod(Box<Result<watcher::Event<Pod>, watcher::Error>>),
    Claim(Box<Result<watcher::Event<PersistentVolumeClaim>, watcher::Error>>),
}

async fn stream_pods(client: kube::Client, node: String, tx: &Sender) {
    let pods: Api<Pod> = Api::all(client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let pod_events = watcher(pods, config)
        .default_backoff()
        .map(|e| Followed::Pod(Box::new(e)));
    // A claim bound (or changed) after its pod reached the node is news for the pod:
    // the agent waits for the bound volume, which the next pod event carries.
    let claims: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let claim_events = watcher(claims, watcher::Config::default())
        .default_backoff()
        .map(|e| Followed::Claim(Box::new(e)));
    let mut events = futures::stream::select(pod_events, claim_events).boxed();
    let mut sent = Sent::default();
    let mut relisted: Option<HashSet<String>> = None;
    while let Some(followed) = events.next().await {
        let event = match followed {
            Followed::Pod(event) => match *event {
                Ok(event) => event,
                Err(error) => {
                    tracing::warn!(%node, %error, "watching the node's pods");
                    continue;
                }
            },
            Followed::Claim(event) => match *event {
                Ok(watcher::Event::Apply(claim)) => {
                    if !claim_changed(&client, &mut sent, &claim, tx).await {
                        return;
                    }
                    continue;
                }
                Ok(_) => continue,
                Err(error) => {
                    tracing::warn!(%node, %error, "watching claims");
                    continue;
                }
            },
        };
        let ok = match event {
            watcher::Event::Init => {
                relisted = Some(HashSet::new());
                true
            }
            watcher::Event::InitApply(pod) => {
                if let Some(seen) = relisted.as_mut() {
                    seen.insert(key(&pod));
                }
                apply(&client, &mut sent, pod, tx).await
            }
            watcher::Event::InitDone => {
                let seen = relisted.take().unwrap_or_default();
                let gone: Vec<String> = sent
                    .pods
                    .keys()
                    .filter(|k| !seen.contains(*k))
                    .cloned()
                    .collect();
                let mut ok = true;
                for key in gone {
                    if let Some(pod) = sent.pods.remove(&key) {
                        ok &= send(tx, Type::Deleted, Some(&pod), Attachments::default()).await;
                    }
                }
                if !sent.synced {
                    sent.synced = true;
                    ok &= send(tx, Type::Synced, None, Attachments::default()).await;
                }
                ok
            }
            watcher::Event::Apply(pod) => apply(&client, &mut sent, pod, tx).await,
            watcher::Event::Delete(pod) => {
                sent.pods.remove(&key(&pod));
                send(tx, Type::Deleted, Some(&pod), Attachments::default()).await
            }
        };
        if !ok {
            return;
        }
    }
}

/// Sends again, with fresh attachments, every pod the agent was told of that uses
/// `claim`.
async fn claim_changed(
    client: &kube::Client,
    sent: &mut Sent,
    claim: &PersistentVolumeClaim,
    tx: &Sender,
) -> bool {
    let namespace = claim.metadata.namespace.as_deref().unwrap_or_default();
    let name = claim.metadata.name.clone().unwrap_or_default();
    let users: Vec<Pod> = sent
        .pods
        .values()
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
        .filter(|p| claim_references(p).contains(&name))
        .cloned()
        .collect();
    for pod in users {
        if !apply(client, sent, pod, tx).await {
            return false;
        }
    }
    true
}

fn key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

async fn apply(client: &kube::Client, sent: &mut Sent, pod: Pod, tx: &Sender) -> bool {
    let kind = match sent.pods.insert(key(&pod), pod.clone()) {
        None => Type::Added,
        Some(_) => Type::Modified,
    };
    let attachments = attachments(client, &pod).await;
    send(tx, kind, Some(&pod), attachments).await
}

/// The objects a pod event carries beside the pod, each as JSON.
#[derive(Default)]
struct Attachments {
    secrets: Vec<Vec<u8>>,
    config_maps: Vec<Vec<u8>>,
    claims: Vec<Vec<u8>>,
    volumes: Vec<Vec<u8>>,
}

async fn send(tx: &Sender, kind: Type, pod: Option<&Pod>, attachments: Attachments) -> bool {
    let pod = match pod.map(serde_json::to_vec).transpose() {
        Ok(pod) => pod.unwrap_or_default(),
        Err(e) => {
            let _ = tx
                .send(Err(Status::internal(format!("encoding a pod: {e}"))))
                .await;
            return false;
        }
    };
    let event = pb::PodEvent {
        r#type: kind as i32,
        pod,
        secrets: attachments.secrets,
        config_maps: attachments.config_maps,
        persistent_volume_claims: attachments.claims,
        persistent_volumes: attachments.volumes,
    };
    tx.send(Ok(event)).await.is_ok()
}

/// The secrets, configMaps and claims `pod` references and the volumes its claims are
/// bound to, as JSON; missing ones are left out (the agent reports the pod's containers
/// as waiting on them).
async fn attachments(client: &kube::Client, pod: &Pod) -> Attachments {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let (secret_names, config_map_names) = references(pod);
    let mut out = Attachments {
        secrets: fetch::<Secret>(Api::namespaced(client.clone(), namespace), secret_names).await,
        config_maps: fetch::<ConfigMap>(
            Api::namespaced(client.clone(), namespace),
            config_map_names,
        )
        .await,
        ..Attachments::default()
    };
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let mut volume_names = BTreeSet::new();
    for name in claim_references(pod) {
        match claims.get_opt(&name).await {
            Ok(Some(claim)) => {
                let bound = claim.spec.as_ref().and_then(|s| s.volume_name.clone());
                volume_names.extend(bound.filter(|v| !v.is_empty()));
                out.claims.extend(serde_json::to_vec(&claim).ok());
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(%namespace, %name, %error, "reading a pod's claim"),
        }
    }
    out.volumes = fetch::<PersistentVolume>(Api::all(client.clone()), volume_names).await;
    out
}

/// The named objects of `api`, as JSON; missing ones are left out.
async fn fetch<K>(api: Api<K>, names: BTreeSet<String>) -> Vec<Vec<u8>>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let mut out = Vec::new();
    for name in names {
        match api.get_opt(&name).await {
            Ok(Some(object)) => out.extend(serde_json::to_vec(&object).ok()),
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(kind = %K::kind(&()), %name, %error, "reading a pod's reference")
            }
        }
    }
    out
}

/// The names of the PersistentVolumeClaims `pod`'s volumes use.
pub fn claim_references(pod: &Pod) -> BTreeSet<String> {
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    volumes
        .into_iter()
        .flatten()
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.clone())
        .collect()
}

/// The names of the secrets and configMaps `pod`'s volumes, env, envFrom and image pull
/// secrets reference.
pub fn references(pod: &Pod) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut secrets = BTreeSet::new();
    let mut config_maps = BTreeSet::new();
    let Some(spec) = pod.spec.as_ref() else {
        return (secrets, config_maps);
    };
    for volume in spec.volumes.iter().flatten() {
        if let Some(name) = volume.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            secrets.insert(name);
        }
        if let Some(config_map) = volume.config_map.as_ref() {
            config_maps.insert(config_map.name.clone());
        }
        let sources = volume.projected.as_ref().and_then(|p| p.sources.as_ref());
        for source in sources.into_iter().flatten() {
            if let Some(secret) = source.secret.as_ref() {
                secrets.insert(secret.name.clone());
            }
            if let Some(config_map) = source.config_map.as_ref() {
                config_maps.insert(config_map.name.clone());
            }
        }
    }
    let containers: Vec<&Container> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .collect();
    for container in containers {
        for env in container.env.iter().flatten() {
            let source = env.value_from.as_ref();
            if let Some(key) = source.and_then(|s| s.secret_key_ref.as_ref()) {
                secrets.insert(key.name.clone());
            }
            if let Some(key) = source.and_then(|s| s.config_map_key_ref.as_ref()) {
                config_maps.insert(key.name.clone());
            }
        }
        for from in container.env_from.iter().flatten() {
            if let Some(secret) = from.secret_ref.as_ref() {
                secrets.insert(secret.name.clone());
            }
            if let Some(config_map) = from.config_map_ref.as_ref() {
                config_maps.insert(config_map.name.clone());
            }
        }
    }
    for pull in spec.image_pull_secrets.iter().flatten() {
        secrets.insert(pull.name.clone());
    }
    secrets.remove("");
    config_maps.remove("");
    (secrets, config_maps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_cover_volumes_env_env_from_and_pull_secrets() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "imagePullSecrets": [{"name": "registry"}],
                "volumes": [
                    {"name": "a", "secret": {"secretName": "tls"}},
                    {"name": "b", "configMap": {"name": "conf"}},
                    {"name": "c", "projected": {"sources": [
                        {"secret": {"name": "token"}},
                        {"configMap": {"name": "ca"}},
                    ]}},
                ],
                "initContainers": [{"name": "i", "env": [
                    {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "init-conf", "key": "k"}}},
                ]}],
                "containers": [{"name": "c",
                    "env": [
                        {"name": "Y", "valueFrom": {"secretKeyRef": {"name": "password", "key": "k"}}},
                        {"name": "Z", "value": "plain"},
                    ],
                    "envFrom": [{"secretRef": {"name": "all-secrets"}}, {"configMapRef": {"name": "all-conf"}}],
                }],
            }
        }))
        .unwrap();
        let (secrets, config_maps) = references(&pod);
        let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(
            secrets,
            set(&["all-secrets", "password", "registry", "tls", "token"])
        );
        assert_eq!(config_maps, set(&["all-conf", "ca", "conf", "init-conf"]));
    }
}
