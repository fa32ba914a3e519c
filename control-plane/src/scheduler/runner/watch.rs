//! The watches: Pods, Nodes, PodGroups, Queues and ResourceSlices through kube-runtime watchers,
//! each turned into [`Input`]s for the scheduling thread.
//!
//! A re-list (after a watch expired) reports objects that vanished meanwhile as deleted.
//! Pods: bound ones (`spec.nodeName`) hold capacity with the devices of their annotation
//! until they finish or are deleted; unbound ones are queued when they ask for this
//! scheduler and are not terminating.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::mpsc::Sender;

use coxswain_api::coxswain::{PodGroup, Queue};
use coxswain_api::devices::{GPU_DRIVER, gpus_from_slice};
use coxswain_api::k8s::{Node, Pod, ResourceSlice};
use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::super::convert::{gang_spec, node_info, pod_info, queue_info};
use super::devices::model_gpus;
use super::feed::Input;
use super::scheduling_loop::Message;
use super::{PodCache, SCHEDULER_NAME};

/// What a pod means to the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodState {
    /// Bound to a node and not finished: holds capacity.
    Assigned,
    /// Waiting for this scheduler.
    Pending,
    /// Neither: finished, terminating before binding, or for another scheduler.
    Ignored,
}

/// Classifies `pod`.
pub fn classify(pod: &Pod) -> PodState {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return PodState::Ignored;
    }
    let spec = pod.spec.as_ref();
    if spec
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty())
    {
        return PodState::Assigned;
    }
    if pod.metadata.deletion_timestamp.is_some() {
        return PodState::Ignored;
    }
    match spec.and_then(|s| s.scheduler_name.as_deref()) {
        None | Some("" | SCHEDULER_NAME | "default-scheduler") => PodState::Pending,
        Some(_) => PodState::Ignored,
    }
}

enum Change<K> {
    Applied(K),
    Deleted(String),
}

fn object_key<K: Resource>(obj: &K) -> String {
    match obj.meta().namespace.as_deref() {
        Some(ns) => format!("{ns}/{}", obj.name_any()),
        None => obj.name_any(),
    }
}

/// Watches `api` until `stop`, calling `sink` per change; stops when `sink` returns false.
async fn watch_changes<K>(
    api: Api<K>,
    stop: CancellationToken,
    mut sink: impl FnMut(Change<K>) -> bool + Send,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut known: HashSet<String> = HashSet::new();
    let mut relisted: Option<HashSet<String>> = None;
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => return,
            next = stream.next() => next,
        };
        let event = match next {
            None => return,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "scheduler watch failed; retrying with back-off");
                continue;
            }
            Some(Ok(event)) => event,
        };
        let alive = match event {
            watcher::Event::Init => {
                relisted = Some(HashSet::new());
                true
            }
            watcher::Event::InitApply(obj) | watcher::Event::Apply(obj) => {
                let key = object_key(&obj);
                if let Some(seen) = relisted.as_mut() {
                    seen.insert(key.clone());
                }
                known.insert(key);
                sink(Change::Applied(obj))
            }
            watcher::Event::InitDone => match relisted.take() {
                Some(seen) => {
                    let gone: Vec<String> = known.difference(&seen).cloned().collect();
                    known = seen;
                    gone.into_iter().all(|k| sink(Change::Deleted(k)))
                }
                None => true,
            },
            watcher::Event::Delete(obj) => {
                let key = object_key(&obj);
                known.remove(&key);
                sink(Change::Deleted(key))
            }
        };
        if !alive {
            return;
        }
    }
}

fn send(tx: &Sender<Message>, input: Input) -> bool {
    tx.send(Message::Input(Box::new(input))).is_ok()
}

/// Spawns the five watches on the current runtime.
pub(super) fn spawn_all(
    client: &kube::Client,
    pods: PodCache,
    tx: Sender<Message>,
    stop: &CancellationToken,
) {
    tokio::spawn(watch_pods(
        Api::all(client.clone()),
        pods,
        tx.clone(),
        stop.clone(),
    ));
    tokio::spawn(watch_nodes(
        Api::all(client.clone()),
        tx.clone(),
        stop.clone(),
    ));
    tokio::spawn(watch_groups(
        Api::all(client.clone()),
        tx.clone(),
        stop.clone(),
    ));
    tokio::spawn(watch_queues(
        Api::all(client.clone()),
        tx.clone(),
        stop.clone(),
    ));
    tokio::spawn(watch_slices(Api::all(client.clone()), tx, stop.clone()));
}

async fn watch_pods(api: Api<Pod>, cache: PodCache, tx: Sender<Message>, stop: CancellationToken) {
    let mut tracked: HashSet<String> = HashSet::new();
    let mut seqs: HashMap<String, u64> = HashMap::new();
    let mut next_seq = 0u64;
    watch_changes(api, stop, move |change| {
        let (key, info) = match change {
            Change::Applied(pod) => {
                let key = object_key(&pod);
                cache.put(key.clone(), pod.clone());
                let seq = *seqs.entry(key.clone()).or_insert_with(|| {
                    next_seq += 1;
                    next_seq
                });
                let info = match classify(&pod) {
                    PodState::Ignored => None,
                    _ => match pod_info(&pod, seq) {
                        Ok(info) => Some(info),
                        Err(e) => {
                            tracing::warn!(pod = %key, error = %e, "pod not schedulable");
                            None
                        }
                    },
                };
                (key, info)
            }
            Change::Deleted(key) => {
                cache.remove(&key);
                seqs.remove(&key);
                (key, None)
            }
        };
        match info {
            Some(info) => {
                tracked.insert(key);
                send(&tx, Input::PodApplied(info))
            }
            None if tracked.remove(&key) => send(&tx, Input::PodDeleted(key.into())),
            None => true,
        }
    })
    .await;
}

async fn watch_nodes(api: Api<Node>, tx: Sender<Message>, stop: CancellationToken) {
    watch_changes(api, stop, move |change| match change {
        Change::Applied(node) => match node_info(&node) {
            Ok(info) => send(&tx, Input::NodeApplied(info)),
            Err(e) => {
                tracing::warn!(node = %node.name_any(), error = %e, "node not schedulable");
                send(&tx, Input::NodeDeleted(node.name_any()))
            }
        },
        Change::Deleted(name) => send(&tx, Input::NodeDeleted(name)),
    })
    .await;
}

async fn watch_groups(api: Api<PodGroup>, tx: Sender<Message>, stop: CancellationToken) {
    let mut seqs: HashMap<String, u64> = HashMap::new();
    let mut next_seq = 0u64;
    watch_changes(api, stop, move |change| match change {
        Change::Applied(group) => {
            let key = object_key(&group);
            let seq = *seqs.entry(key.clone()).or_insert_with(|| {
                next_seq += 1;
                next_seq
            });
            match gang_spec(&group, seq) {
                Ok(spec) => send(&tx, Input::GroupApplied(spec)),
                Err(e) => {
                    tracing::warn!(podgroup = %key, error = %e, "pod group ignored");
                    true
                }
            }
        }
        Change::Deleted(key) => {
            seqs.remove(&key);
            send(&tx, Input::GroupDeleted(key.into()))
        }
    })
    .await;
}

async fn watch_queues(api: Api<Queue>, tx: Sender<Message>, stop: CancellationToken) {
    watch_changes(api, stop, move |change| match change {
        Change::Applied(queue) => match queue_info(&queue) {
            Ok(info) => send(&tx, Input::QueueApplied(info)),
            Err(e) => {
                tracing::warn!(queue = %queue.name_any(), error = %e, "queue ignored");
                send(&tx, Input::QueueDeleted(queue.name_any()))
            }
        },
        Change::Deleted(name) => send(&tx, Input::QueueDeleted(name)),
    })
    .await;
}

async fn watch_slices(api: Api<ResourceSlice>, tx: Sender<Message>, stop: CancellationToken) {
    watch_changes(api, stop, move |change| match change {
        Change::Applied(slice) => {
            let name = slice.name_any();
            if slice.spec.driver != GPU_DRIVER {
                return true;
            }
            let Some(node) = slice.spec.node_name.clone().filter(|n| !n.is_empty()) else {
                tracing::warn!(slice = %name, "GPU slice without spec.nodeName ignored");
                return send(&tx, Input::SliceDeleted(name));
            };
            match gpus_from_slice(&slice) {
                Ok(gpus) => send(
                    &tx,
                    Input::SliceApplied {
                        name,
                        node,
                        devices: model_gpus(&gpus),
                    },
                ),
                Err(e) => {
                    tracing::warn!(slice = %name, error = %e, "GPU slice ignored");
                    send(&tx, Input::SliceDeleted(name))
                }
            }
        }
        Change::Deleted(name) => send(&tx, Input::SliceDeleted(name)),
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn classifies_pending_bound_finished_and_foreign_pods() {
        let c = serde_json::json!({"name": "c", "image": "i"});
        let pending =
            pod(serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": [c]}}));
        assert_eq!(classify(&pending), PodState::Pending);
        let ours = pod(serde_json::json!({"metadata": {"name": "p"},
            "spec": {"schedulerName": "coxswain", "containers": [c]}}));
        assert_eq!(classify(&ours), PodState::Pending);
        let foreign = pod(serde_json::json!({"metadata": {"name": "p"},
            "spec": {"schedulerName": "volcano", "containers": [c]}}));
        assert_eq!(classify(&foreign), PodState::Ignored);
        let bound = pod(serde_json::json!({"metadata": {"name": "p"},
            "spec": {"nodeName": "n1", "schedulerName": "volcano", "containers": [c]}}));
        assert_eq!(classify(&bound), PodState::Assigned);
        let done = pod(serde_json::json!({"metadata": {"name": "p"},
            "spec": {"nodeName": "n1", "containers": [c]}, "status": {"phase": "Succeeded"}}));
        assert_eq!(classify(&done), PodState::Ignored);
        let leaving = pod(serde_json::json!({"metadata": {"name": "p",
            "deletionTimestamp": "2026-01-01T00:00:00Z"}, "spec": {"containers": [c]}}));
        assert_eq!(classify(&leaving), PodState::Ignored);
    }
}
