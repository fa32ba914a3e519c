//! The tasks that turn device health into what users see: each pod's status gets
//! the `coxswain.dev/DevicesHealthy` condition and `allocatedResourcesStatus`
//! (a view over the status its worker publishes), and the pod and the node get a
//! `Warning DeviceUnhealthy` Event when a device turns unhealthy and a
//! `Normal DeviceRecovered` one when it is healthy again. Events go to an
//! [`EventSink`] (the agent's sender to `NodeService.RecordEvent`), fire and forget.

use std::collections::BTreeSet;
use std::sync::Arc;

use coxswain_api::k8s::{PodCondition, PodStatus, Time};
use coxswain_proto::node::v1alpha1::InvolvedObject;
use k8s_openapi::jiff::Timestamp;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::DeviceManager;
use super::pod_health::{
    self, Health, PodDeviceHealth, REASON_RECOVERED, REASON_UNHEALTHY, unhealthy_message,
};

/// Whether an Event is routine or needs a look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// `Normal`.
    Normal,
    /// `Warning`.
    Warning,
}

impl EventKind {
    /// The Event's `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Normal => "Normal",
            EventKind::Warning => "Warning",
        }
    }
}

/// Where the agent's Events go. Implementations must not block: recording is
/// best effort and never holds up a pod.
pub trait EventSink: Send + Sync {
    /// Records an Event about `object` (the node, or a pod bound to it).
    fn record(&self, object: InvolvedObject, kind: EventKind, reason: &str, message: &str);
}

/// The object reference of a pod.
pub fn pod_object(namespace: &str, name: &str, uid: &str) -> InvolvedObject {
    InvolvedObject {
        kind: "Pod".into(),
        namespace: namespace.into(),
        name: name.into(),
        uid: uid.into(),
    }
}

/// The object reference of a node.
pub fn node_object(name: &str) -> InvolvedObject {
    InvolvedObject {
        kind: "Node".into(),
        name: name.into(),
        ..InvolvedObject::default()
    }
}

type StatusJson = Option<Vec<u8>>;

/// Per pod: the last known verdict, the condition written, and the unhealthy
/// devices already reported.
#[derive(Default)]
struct PodView {
    condition: Option<PodCondition>,
    reported: BTreeSet<(String, String)>,
}

impl PodView {
    /// Updates the condition and emits the Events for `health`'s change.
    fn observe(
        &mut self,
        pod: &InvolvedObject,
        health: &PodDeviceHealth,
        events: Option<&dyn EventSink>,
    ) {
        let Some(healthy) = pod_health::verdict(health) else {
            // A plugin is away: keep what was said until it is back.
            return;
        };
        let unhealthy = health.unhealthy();
        if let Some(sink) = events {
            if !unhealthy.is_subset(&self.reported) {
                sink.record(
                    pod.clone(),
                    EventKind::Warning,
                    REASON_UNHEALTHY,
                    &unhealthy_message(&unhealthy),
                );
            } else if healthy && !self.reported.is_empty() {
                let ids: Vec<String> = self
                    .reported
                    .iter()
                    .map(|(r, id)| format!("{r} {id}"))
                    .collect();
                sink.record(
                    pod.clone(),
                    EventKind::Normal,
                    REASON_RECOVERED,
                    &format!("device(s) healthy again: {}", ids.join(", ")),
                );
            }
        }
        self.reported = unhealthy;
        let now = Time(Timestamp::now());
        self.condition = Some(pod_health::condition(
            health,
            healthy,
            self.condition.as_ref(),
            now,
        ));
    }
}

/// The status `raw` carries, with `health` written in.
fn decorated(
    raw: &StatusJson,
    health: Option<&PodDeviceHealth>,
    condition: Option<&PodCondition>,
) -> StatusJson {
    let (Some(bytes), Some(health)) = (raw, health) else {
        return raw.clone();
    };
    let Ok(mut status) = serde_json::from_slice::<PodStatus>(bytes) else {
        return raw.clone();
    };
    pod_health::decorate(&mut status, health, condition.cloned());
    serde_json::to_vec(&status).ok().or_else(|| raw.clone())
}

/// Republishes `raw` (a pod's status as its worker publishes it) into `out` with
/// the pod's device health written in, on every status or health change; ends
/// when `raw`'s sender or `out`'s receivers are gone.
pub(super) async fn pod_status_view(
    manager: DeviceManager,
    pod: InvolvedObject,
    mut raw: watch::Receiver<StatusJson>,
    out: watch::Sender<StatusJson>,
) {
    let mut inventory = manager.watch_inventory();
    let mut view = PodView::default();
    loop {
        let health = manager.pod_device_health(&pod.uid);
        if let Some(health) = &health {
            view.observe(&pod, health, manager.events.as_deref());
        }
        let json = decorated(
            &raw.borrow_and_update(),
            health.as_ref(),
            view.condition.as_ref(),
        );
        out.send_if_modified(|current| {
            let changed = *current != json;
            if changed {
                *current = json;
            }
            changed
        });
        tokio::select! {
            changed = raw.changed() => if changed.is_err() { return },
            changed = inventory.changed() => if changed.is_err() { return },
            () = out.closed() => return,
        }
    }
}

/// Records on the node a `Warning DeviceUnhealthy` for each device that turns
/// unhealthy (naming the pods holding it) and a `Normal DeviceRecovered` when it
/// is healthy again, until `cancel`.
pub(super) async fn node_events(
    manager: DeviceManager,
    sink: Arc<dyn EventSink>,
    cancel: CancellationToken,
) {
    let node = node_object(&manager.shared.config.node_name);
    let mut inventory = manager.watch_inventory();
    let mut unhealthy: BTreeSet<(String, String)> = BTreeSet::new();
    loop {
        let devices = manager.devices();
        let mut now_unhealthy = BTreeSet::new();
        for d in &devices {
            let key = (d.resource.clone(), d.id.clone());
            if !d.healthy {
                if !unhealthy.contains(&key) {
                    let holders = manager.pods_holding(&d.id);
                    let held = if holders.is_empty() {
                        "no pod holds it".to_string()
                    } else {
                        format!("held by {}", holders.join(", "))
                    };
                    let message = format!("{} {} turned unhealthy; {held}", d.resource, d.id);
                    sink.record(node.clone(), EventKind::Warning, REASON_UNHEALTHY, &message);
                }
                now_unhealthy.insert(key);
            } else if unhealthy.contains(&key) {
                let message = format!("{} {} is healthy again", d.resource, d.id);
                sink.record(node.clone(), EventKind::Normal, REASON_RECOVERED, &message);
            }
        }
        // Devices not listed now (their plugin is away) keep their last state.
        let listed: BTreeSet<(String, String)> = devices
            .iter()
            .map(|d| (d.resource.clone(), d.id.clone()))
            .collect();
        unhealthy.retain(|k| !listed.contains(k));
        unhealthy.extend(now_unhealthy);
        tokio::select! {
            changed = inventory.changed() => if changed.is_err() { return },
            () = cancel.cancelled() => return,
        }
    }
}

impl DeviceManager {
    /// Sends Events (device unhealthy / recovered, on pods and on the node) to
    /// `sink`, and starts the node's event task.
    pub fn with_events(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.events = Some(sink.clone());
        tokio::spawn(node_events(self.clone(), sink, self.shared.cancel.clone()));
        self
    }

    /// The devices the pod with `uid` holds and their health; `None` when it holds none.
    pub fn pod_device_health(&self, uid: &str) -> Option<PodDeviceHealth> {
        let state = self.shared.lock();
        let pod = state.checkpoint.pods.get(uid)?;
        let mut health = PodDeviceHealth {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            ..PodDeviceHealth::default()
        };
        for (container, allocations) in &pod.containers {
            for allocation in allocations {
                let plugin = state
                    .plugins
                    .get(&allocation.plugin_resource)
                    .filter(|p| p.streaming);
                let devices = allocation
                    .devices
                    .iter()
                    .map(|held| {
                        let h = match plugin.and_then(|p| p.devices.get(&held.id)) {
                            Some(d) if d.healthy => Health::Healthy,
                            Some(_) => Health::Unhealthy,
                            None => Health::Unknown,
                        };
                        (held.id.clone(), h)
                    })
                    .collect();
                health
                    .containers
                    .entry(container.clone())
                    .or_default()
                    .insert(allocation.resource.clone(), devices);
            }
        }
        (!health.containers.is_empty()).then_some(health)
    }

    /// The pods (`namespace/name`, else uid) holding device `id`.
    pub fn pods_holding(&self, id: &str) -> Vec<String> {
        let state = self.shared.lock();
        let holders = state.checkpoint.holders();
        holders
            .get(id)
            .map(|pods| {
                pods.keys()
                    .map(|uid| match state.checkpoint.pods.get(uid) {
                        Some(p) if !p.name.is_empty() => format!("{}/{}", p.namespace, p.name),
                        _ => uid.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}
