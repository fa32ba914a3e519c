//! What the scheduler tells users through core/v1 Events, as kube-scheduler does:
//! `Scheduled` ("Successfully assigned default/p to node-a"), `FailedScheduling` with the
//! aggregated fit message, `Preempted` on each victim, and `Unschedulable` on a PodGroup
//! whose gang cannot be placed ("pod group default/g: 2/4 members placeable: ...").
//!
//! The scheduling thread builds each notice (the object reference is taken from the pod
//! cache at that moment, so a victim deleted right after still gets its event) and one
//! task writes them through an [`EventRecorder`], which folds repeats into one record.

use coxswain_api::coxswain::PodGroup;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::{Api, Resource};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio_util::sync::CancellationToken;

use super::super::model::PodKey;
use super::PodCache;
use crate::events::{EventRecorder, EventType};

/// `source.component` of the scheduler's events, as kube-scheduler writes it.
pub const EVENT_COMPONENT: &str = "default-scheduler";

/// One event to write.
#[derive(Debug, Clone)]
pub(super) struct Notice {
    object: ObjectReference,
    event_type: EventType,
    reason: &'static str,
    message: String,
}

/// The sending side, used by the scheduling thread (never blocks).
#[derive(Debug, Clone)]
pub(super) struct Notices {
    tx: UnboundedSender<Notice>,
    pods: PodCache,
}

fn split(key: &str) -> (Option<String>, String) {
    match key.split_once('/') {
        Some((ns, name)) => (Some(ns.to_string()), name.to_string()),
        None => (None, key.to_string()),
    }
}

impl Notices {
    /// The pod's reference as the watch last delivered it (its uid included, which
    /// `kubectl describe` selects on), or one built from its key.
    fn pod_ref(&self, key: &str) -> ObjectReference {
        match self.pods.get(key) {
            Some(pod) => pod.object_ref(&()),
            None => {
                let (namespace, name) = split(key);
                ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    namespace,
                    name: Some(name),
                    ..ObjectReference::default()
                }
            }
        }
    }

    fn send(
        &self,
        object: ObjectReference,
        event_type: EventType,
        reason: &'static str,
        message: String,
    ) {
        let _ = self.tx.send(Notice {
            object,
            event_type,
            reason,
            message,
        });
    }

    /// `Normal Scheduled`: the pod was bound.
    pub(super) fn scheduled(&self, pod: &PodKey, node: &str) {
        let message = format!("Successfully assigned {pod} to {node}");
        self.send(self.pod_ref(pod), EventType::Normal, "Scheduled", message);
    }

    /// `Warning FailedScheduling` with the aggregated reason.
    pub(super) fn failed(&self, pod: &PodKey, message: String) {
        self.send(
            self.pod_ref(pod),
            EventType::Warning,
            "FailedScheduling",
            message,
        );
    }

    /// `Normal Preempted` on `victim`, evicted for `preemptor` on `node`.
    pub(super) fn preempted(&self, victim: &PodKey, preemptor: &PodKey, node: &str) {
        let message = format!("Preempted by pod {preemptor} on node {node}");
        self.send(
            self.pod_ref(victim),
            EventType::Normal,
            "Preempted",
            message,
        );
    }

    /// `Warning Unschedulable` on pod group `group` (Volcano's PodGroup event).
    pub(super) fn gang_unschedulable(&self, group: &PodKey, message: String) {
        let (namespace, name) = split(group);
        let object = ObjectReference {
            api_version: Some(<PodGroup as k8s_openapi::Resource>::API_VERSION.to_string()),
            kind: Some(<PodGroup as k8s_openapi::Resource>::KIND.to_string()),
            namespace,
            name: Some(name),
            ..ObjectReference::default()
        };
        self.send(object, EventType::Warning, "Unschedulable", message);
    }
}

/// Spawns the writer task.
pub(super) fn spawn(client: kube::Client, pods: PodCache, stop: CancellationToken) -> Notices {
    let (tx, rx) = unbounded_channel();
    let recorder = EventRecorder::new(client.clone(), EVENT_COMPONENT);
    tokio::spawn(write_all(client, recorder, rx, stop));
    Notices { tx, pods }
}

/// A pod group's uid, so its events attach to this incarnation of it.
async fn group_uid(client: &kube::Client, object: &ObjectReference) -> Option<String> {
    let ns = object.namespace.as_deref()?;
    let api: Api<PodGroup> = Api::namespaced(client.clone(), ns);
    let group = api.get_opt(object.name.as_deref()?).await.ok()??;
    group.metadata.uid
}

async fn write_all(
    client: kube::Client,
    recorder: EventRecorder,
    mut rx: UnboundedReceiver<Notice>,
    stop: CancellationToken,
) {
    loop {
        let mut notice = tokio::select! {
            _ = stop.cancelled() => return,
            notice = rx.recv() => match notice {
                Some(n) => n,
                None => return,
            },
        };
        if notice.object.uid.is_none() && notice.object.kind.as_deref() == Some("PodGroup") {
            notice.object.uid = group_uid(&client, &notice.object).await;
        }
        recorder
            .publish_ref(
                &notice.object,
                notice.event_type,
                notice.reason,
                &notice.message,
            )
            .await;
    }
}
