//! The pods bound to this node, as the pod stream tells them: one thread per pod
//! uid ([`super::pod_thread`]), one status reporter per pod, termination on
//! deletion, and the clean-up of leftovers once the first snapshot is complete.
//!
//! - ADDED/MODIFIED start a worker for a new uid or wake the existing one; a pod
//!   with a `deletionTimestamp` is terminated with its grace period and, once
//!   removed, reported with `PodTerminated` (the control plane then deletes it).
//! - A pod whose phase in the API is terminal (Succeeded, Failed) starts nothing
//!   again; its worker is stopped and removed (without PodTerminated: the object
//!   stays) when a container still runs — a returning agent's pod that the control
//!   plane failed while the node was lost — or when the control plane ended it.
//! - DELETED terminates the worker; nothing is reported, the object is gone.
//! - SYNCED ends a snapshot: workers of pods the snapshot did not list were deleted
//!   while the stream was down and are terminated; after the agent's first snapshot,
//!   `remove_orphans` removes whatever is on the node for no listed pod.
//! - A uid whose worker was terminated and removed is never started again: the pod
//!   object lingers (its status is written, PodTerminated is on its way), and a new
//!   worker would set the sandbox and the network up again for a deleted pod.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use coxswain_api::k8s::{ConfigMap, Pod, Secret};
use coxswain_proto::node::v1alpha1::PodEvent;
use coxswain_proto::node::v1alpha1::pod_event::Type as EventType;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use super::pod_thread::{PodCommand, PodThreadExit, run_pod_thread};
use super::status_report::{PodKey, report_pod_status, report_pod_terminated};
use crate::csi::CsiVolumes;
use crate::devices::pod_object;
use crate::volumes::PodData;
use crate::worker::{PodWorker, WorkerDeps, remove_orphans};

/// Which pod uid runs under a namespace and name, for the log service.
#[derive(Debug, Clone, Default)]
pub struct PodDirectory(Arc<RwLock<BTreeMap<(String, String), String>>>);

impl PodDirectory {
    /// The uid of the pod `namespace/name` on this node, if any.
    pub fn uid(&self, namespace: &str, name: &str) -> Option<String> {
        let map = self.0.read().unwrap_or_else(|e| e.into_inner());
        map.get(&(namespace.to_string(), name.to_string())).cloned()
    }

    /// Every pod on this node (for the usage metrics).
    pub fn pods(&self) -> Vec<crate::usage::PodRef> {
        let map = self.0.read().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .map(|((namespace, name), uid)| crate::usage::PodRef {
                uid: uid.clone(),
                namespace: namespace.clone(),
                name: name.clone(),
            })
            .collect()
    }

    fn insert(&self, key: &PodKey) {
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        map.insert((key.namespace.clone(), key.name.clone()), key.uid.clone());
    }

    fn remove(&self, key: &PodKey) {
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        let entry = (key.namespace.clone(), key.name.clone());
        if map.get(&entry) == Some(&key.uid) {
            map.remove(&entry);
        }
    }
}

struct PodEntry {
    key: PodKey,
    commands: std::sync::mpsc::Sender<PodCommand>,
    thread: std::thread::JoinHandle<()>,
    terminating: bool,
    /// Whether the control plane is to be told once the pod is removed.
    report_terminated: bool,
}

impl PodEntry {
    fn terminate(&mut self, grace: Duration, report: bool) {
        self.report_terminated = report;
        if !self.terminating {
            self.terminating = true;
            let _ = self.commands.send(PodCommand::Terminate(grace));
        }
    }
}

/// Runs the pods of this node.
pub struct PodSupervisor {
    node_name: String,
    deps: WorkerDeps,
    channel: watch::Receiver<Option<Channel>>,
    directory: PodDirectory,
    status_interval: Duration,
    shutdown: CancellationToken,
    pods: BTreeMap<String, PodEntry>,
    exits_tx: mpsc::UnboundedSender<PodThreadExit>,
    snapshot: Option<BTreeSet<String>>,
    orphans_removed: bool,
    /// Uids whose worker ended with everything removed, until the pod leaves the API.
    removed: BTreeSet<String>,
}

impl PodSupervisor {
    /// A supervisor with no pods yet; reports go through whichever `channel` is up.
    /// The receiver gets each pod thread's end, for [`Self::thread_exited`].
    pub fn new(
        node_name: String,
        deps: WorkerDeps,
        channel: watch::Receiver<Option<Channel>>,
        directory: PodDirectory,
        status_interval: Duration,
        shutdown: CancellationToken,
    ) -> (Self, mpsc::UnboundedReceiver<PodThreadExit>) {
        let (exits_tx, exits) = mpsc::unbounded_channel();
        let supervisor = Self {
            node_name,
            deps,
            channel,
            directory,
            status_interval,
            shutdown,
            pods: BTreeMap::new(),
            exits_tx,
            snapshot: None,
            orphans_removed: false,
            removed: BTreeSet::new(),
        };
        (supervisor, exits)
    }

    /// A new pod stream opened: its events up to SYNCED are a full snapshot.
    pub fn begin_snapshot(&mut self) {
        self.snapshot = Some(BTreeSet::new());
    }

    /// Applies one event of the pod stream.
    pub async fn handle(&mut self, event: PodEvent) {
        let kind = EventType::try_from(event.r#type).unwrap_or(EventType::Modified);
        if kind == EventType::Synced {
            self.end_snapshot().await;
            return;
        }
        let pod: Pod = match serde_json::from_slice(&event.pod) {
            Ok(pod) => pod,
            Err(e) => {
                tracing::warn!("pod stream: ignoring an event with a bad pod: {e}");
                return;
            }
        };
        let Some(key) = pod_key(&pod) else {
            tracing::warn!("pod stream: ignoring a pod without namespace, name or uid");
            return;
        };
        if let Some(snapshot) = &mut self.snapshot {
            snapshot.insert(key.uid.clone());
        }
        if self.removed.contains(&key.uid) {
            // Already stopped and removed: only its deletion is news.
            if kind == EventType::Deleted {
                self.removed.remove(&key.uid);
            }
            return;
        }
        let grace = deletion_grace(&pod);
        let deleting = pod.metadata.deletion_timestamp.is_some();
        let ended = ended_in_api(&pod);
        match kind {
            EventType::Deleted => {
                if let Some(entry) = self.pods.get_mut(&key.uid) {
                    entry.terminate(grace, false);
                }
            }
            _ => {
                let mut data = pod_data(&event.secrets, &event.config_maps);
                add_claims(
                    &mut data,
                    &event.persistent_volume_claims,
                    &event.persistent_volumes,
                );
                if !self.pods.contains_key(&key.uid) {
                    self.start(key.clone(), pod, data);
                } else if let Some(entry) = self.pods.get_mut(&key.uid) {
                    let _ = entry.commands.send(PodCommand::Data(Box::new(data)));
                }
                if let Some(entry) = self.pods.get_mut(&key.uid) {
                    if deleting {
                        entry.terminate(grace, true);
                    } else if let Some(disrupted) = ended {
                        let _ = entry.commands.send(PodCommand::Ended { grace, disrupted });
                    } else {
                        let _ = entry.commands.send(PodCommand::Changed);
                    }
                }
            }
        }
    }

    /// A pod thread ended: forget it, and report a terminating pod's removal.
    pub fn thread_exited(&mut self, exit: PodThreadExit) {
        let Some(entry) = self.pods.remove(&exit.uid) else {
            return;
        };
        self.directory.remove(&entry.key);
        tracing::info!(pod = %entry.key, removed = exit.removed, "pod worker ended");
        if exit.removed {
            self.removed.insert(exit.uid.clone());
        }
        if exit.removed && entry.report_terminated {
            tokio::spawn(report_pod_terminated(
                self.node_name.clone(),
                entry.key,
                self.channel.clone(),
                self.shutdown.clone(),
            ));
        }
    }

    /// Ends every pod thread without touching its containers (the agent stops;
    /// a new agent re-adopts them), and waits for the threads.
    pub async fn detach_all(&mut self) {
        let entries = std::mem::take(&mut self.pods);
        for entry in entries.values() {
            let _ = entry.commands.send(PodCommand::Detach);
        }
        let threads: Vec<_> = entries.into_values().map(|e| e.thread).collect();
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }

    fn start(&mut self, key: PodKey, pod: Pod, data: PodData) {
        let (commands, receiver) = std::sync::mpsc::channel();
        let (status_tx, status_rx) = watch::channel(None);
        let worker = PodWorker::new(self.deps.clone(), pod, data);
        let exits = self.exits_tx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!(
                "pod-{}",
                key.uid.chars().take(8).collect::<String>()
            ))
            .spawn(move || run_pod_thread(worker, receiver, status_tx, exits));
        let thread = match spawned {
            Ok(thread) => thread,
            Err(e) => {
                tracing::error!(pod = %key, "cannot start a thread for the pod: {e}");
                return;
            }
        };
        tracing::info!(pod = %key, "pod worker started");
        let object = pod_object(&key.namespace, &key.name, &key.uid);
        let status_rx = self.deps.devices.pod_status_view(object, status_rx);
        tokio::spawn(report_pod_status(
            self.node_name.clone(),
            key.clone(),
            status_rx,
            self.channel.clone(),
            self.status_interval,
            self.shutdown.clone(),
        ));
        self.directory.insert(&key);
        self.pods.insert(
            key.uid.clone(),
            PodEntry {
                key,
                commands,
                thread,
                terminating: false,
                report_terminated: false,
            },
        );
    }

    async fn end_snapshot(&mut self) {
        let Some(listed) = self.snapshot.take() else {
            return;
        };
        self.removed.retain(|uid| listed.contains(uid));
        for (uid, entry) in self.pods.iter_mut() {
            if !listed.contains(uid) {
                // Deleted while the stream was down: the object is gone.
                entry.terminate(Duration::from_secs(30), false);
            }
        }
        if self.orphans_removed {
            return;
        }
        self.orphans_removed = true;
        let keep: BTreeSet<String> = listed
            .into_iter()
            .chain(self.pods.keys().cloned())
            .collect();
        if let Some(csi) = self.deps.volumes.csi().cloned() {
            tokio::spawn(recover_csi(csi, keep.clone(), self.shutdown.clone()));
        }
        let deps = self.deps.clone();
        match tokio::task::spawn_blocking(move || remove_orphans(&deps, &keep)).await {
            Ok(Ok(removed)) if !removed.is_empty() => {
                tracing::info!(?removed, "removed pods no longer bound to this node");
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("removing leftover pods: {e}"),
            Err(e) => tracing::warn!("removing leftover pods: {e}"),
        }
    }
}

/// `Some(disrupted)` when the pod's phase in the API is terminal (Succeeded or
/// Failed); `disrupted` when the control plane ended it (the `DisruptionTarget`
/// condition its node lifecycle sets on a lost node's pods).
fn ended_in_api(pod: &Pod) -> Option<bool> {
    let status = pod.status.as_ref()?;
    if !matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return None;
    }
    let conditions = status.conditions.iter().flatten();
    Some(
        conditions
            .into_iter()
            .any(|c| c.type_ == "DisruptionTarget" && c.status == "True"),
    )
}

/// Unpublishes the CSI volumes of pods a previous agent ran that are not in
/// `keep`, and unstages volumes nobody uses; retried (1 s doubling to 10 s) while
/// a driver is not reachable yet.
async fn recover_csi(csi: Arc<CsiVolumes>, keep: BTreeSet<String>, shutdown: CancellationToken) {
    let mut backoff = super::Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
    loop {
        let (volumes, pods) = (csi.clone(), keep.clone());
        match tokio::task::spawn_blocking(move || volumes.recover(&pods)).await {
            Ok(Ok(cleaned)) => {
                if !cleaned.is_empty() {
                    tracing::info!(
                        ?cleaned,
                        "unpublished the CSI volumes of pods no longer on this node"
                    );
                }
                return;
            }
            Ok(Err(e)) => tracing::warn!("recovering CSI mounts: {e}"),
            Err(e) => tracing::warn!("recovering CSI mounts: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

fn pod_key(pod: &Pod) -> Option<PodKey> {
    let meta = &pod.metadata;
    Some(PodKey {
        namespace: meta.namespace.clone().filter(|s| !s.is_empty())?,
        name: meta.name.clone().filter(|s| !s.is_empty())?,
        uid: meta.uid.clone().filter(|s| !s.is_empty())?,
    })
}

/// The grace period of a pod's deletion: `deletionGracePeriodSeconds`, else its
/// `terminationGracePeriodSeconds`, else 30 s.
fn deletion_grace(pod: &Pod) -> Duration {
    let seconds = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30);
    Duration::from_secs(seconds.max(0) as u64)
}

/// The secret and configMap contents of a pod event, for the pod's volumes.
pub fn pod_data(secrets: &[Vec<u8>], config_maps: &[Vec<u8>]) -> PodData {
    let mut data = PodData::default();
    for raw in secrets {
        let Ok(secret) = serde_json::from_slice::<Secret>(raw) else {
            tracing::warn!("pod stream: ignoring a malformed secret");
            continue;
        };
        let name = secret.metadata.name.unwrap_or_default();
        data.secrets
            .insert(name, contents(secret.data, secret.string_data));
    }
    for raw in config_maps {
        let Ok(map) = serde_json::from_slice::<ConfigMap>(raw) else {
            tracing::warn!("pod stream: ignoring a malformed configMap");
            continue;
        };
        let name = map.metadata.name.unwrap_or_default();
        data.config_maps
            .insert(name, contents(map.binary_data, map.data));
    }
    data
}

/// Adds the claims and persistent volumes of a pod event to `data`.
pub fn add_claims(data: &mut PodData, claims: &[Vec<u8>], volumes: &[Vec<u8>]) {
    for raw in claims {
        match serde_json::from_slice::<PersistentVolumeClaim>(raw) {
            Ok(claim) => {
                let name = claim.metadata.name.clone().unwrap_or_default();
                data.claims.insert(name, claim);
            }
            Err(e) => tracing::warn!("pod stream: ignoring a malformed claim: {e}"),
        }
    }
    for raw in volumes {
        match serde_json::from_slice::<PersistentVolume>(raw) {
            Ok(pv) => {
                let name = pv.metadata.name.clone().unwrap_or_default();
                data.persistent_volumes.insert(name, pv);
            }
            Err(e) => tracing::warn!("pod stream: ignoring a malformed persistent volume: {e}"),
        }
    }
}

/// Binary and text entries of a Secret or ConfigMap as bytes; text wins on a clash, as
/// `stringData` does.
fn contents(
    binary: Option<BTreeMap<String, ByteString>>,
    text: Option<BTreeMap<String, String>>,
) -> BTreeMap<String, Vec<u8>> {
    let mut values: BTreeMap<String, Vec<u8>> = binary
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    for (k, v) in text.unwrap_or_default() {
        values.insert(k, v.into_bytes());
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_config_maps_become_pod_data() {
        let secret = serde_json::json!({"metadata": {"name": "s"}, "data": {"token": "aGk="}, "stringData": {"plain": "x"}});
        let map = serde_json::json!({"metadata": {"name": "c"}, "data": {"k": "v"}, "binaryData": {"b": "AQI="}});
        let data = pod_data(
            &[serde_json::to_vec(&secret).unwrap(), b"garbage".to_vec()],
            &[serde_json::to_vec(&map).unwrap()],
        );
        assert_eq!(data.secrets["s"]["token"], b"hi");
        assert_eq!(data.secrets["s"]["plain"], b"x");
        assert_eq!(data.config_maps["c"]["k"], b"v");
        assert_eq!(data.config_maps["c"]["b"], [1, 2]);
    }

    #[test]
    fn deletion_grace_prefers_the_deletion_grace_period() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [], "terminationGracePeriodSeconds": 7},
        }))
        .unwrap();
        assert_eq!(deletion_grace(&pod), Duration::from_secs(7));
        pod.metadata.deletion_grace_period_seconds = Some(2);
        assert_eq!(deletion_grace(&pod), Duration::from_secs(2));
        pod.spec = None;
        pod.metadata.deletion_grace_period_seconds = None;
        assert_eq!(deletion_grace(&pod), Duration::from_secs(30));
    }
}
