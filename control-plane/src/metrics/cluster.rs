//! Cluster state gauges: nodes, GPUs, pods and training jobs, computed from the API.
//!
//! [`run_cluster_collector`] keeps kube-runtime reflectors of nodes, pods and training jobs
//! through a `kube::Client` (the in-process one in `cox server`) and recomputes every gauge
//! from them after changes, at most once per [`MIN_RECOMPUTE_INTERVAL`]. The computation is
//! [`ClusterState::compute`], a pure function of the three lists.
//!
//! GPU accounting: a pod holds its GPUs while it is bound (`spec.nodeName`) and not finished
//! (phase neither `Succeeded` nor `Failed`); its GPUs are its `nvidia.com/gpu` requests and its
//! `coxswain.dev/gpu-milli` requests, counted as Kubernetes counts pod requests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use coxswain_api::pod_resources::pod_requests;
use coxswain_api::quantity::parse_quantity;
use coxswain_api::resources::{GPU_MILLI, NVIDIA_GPU};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::reflector::{self, Store as Reflection};
use kube::runtime::{WatchStreamExt, watcher};
use prometheus::{Gauge, GaugeVec, IntGauge, IntGaugeVec, Opts, Registry};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Metrics, register};

/// The least time between two recomputations of the gauges, so a burst of changes (a
/// thousand pods created) costs a few passes over the lists rather than one per change.
pub const MIN_RECOMPUTE_INTERVAL: Duration = Duration::from_millis(500);

/// Pod phases, as `coxswain_pods{phase}` reports them.
const POD_PHASES: &[&str] = &["Pending", "Running", "Succeeded", "Failed", "Unknown"];

/// Training job states in precedence order: a job's state is the first of these whose
/// condition is `True` (`Pending` when none is).
const JOB_STATES: &[&str] = &[
    "Failed",
    "Succeeded",
    "Suspended",
    "Restarting",
    "Running",
    "Scheduled",
    "Created",
];

/// The state of a training job with no `True` condition yet.
const JOB_PENDING: &str = "Pending";

/// Cluster state gauges.
pub struct ClusterMetrics {
    /// `coxswain_nodes{condition="Ready",status}`.
    pub nodes: IntGaugeVec,
    /// `coxswain_node_gpus_allocatable{node}`.
    pub gpus_allocatable: IntGaugeVec,
    /// `coxswain_node_gpus_allocated{node}`.
    pub gpus_allocated: IntGaugeVec,
    /// `coxswain_node_gpu_milli_allocated{node}`.
    pub gpu_milli_allocated: IntGaugeVec,
    /// `coxswain_cluster_gpu_fragmentation_ratio`.
    pub fragmentation: Gauge,
    /// `coxswain_trainingjobs{state}`.
    pub trainingjobs: IntGaugeVec,
    /// `coxswain_pods{phase}`.
    pub pods: IntGaugeVec,
    /// `coxswain_pods_unscheduled`: pending pods not bound to a node.
    pub unscheduled: IntGauge,
    /// `coxswain_pod_gpus{namespace,pod,node,owner_kind,owner}`: GPUs a bound, unfinished pod
    /// holds (whole GPUs plus shares as fractions), with its controlling owner for per-job sums.
    pub pod_gpus: GaugeVec,
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        registry,
        IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

impl ClusterMetrics {
    pub(super) fn register(registry: &Registry) -> ClusterMetrics {
        ClusterMetrics {
            nodes: gauge_vec(
                registry,
                "coxswain_nodes",
                "Nodes by the status of their Ready condition (Unknown when it is missing).",
                &["condition", "status"],
            ),
            gpus_allocatable: gauge_vec(
                registry,
                "coxswain_node_gpus_allocatable",
                "Whole GPUs (nvidia.com/gpu) a node can allocate.",
                &["node"],
            ),
            gpus_allocated: gauge_vec(
                registry,
                "coxswain_node_gpus_allocated",
                "Whole GPUs requested by bound pods that have not finished, per node.",
                &["node"],
            ),
            gpu_milli_allocated: gauge_vec(
                registry,
                "coxswain_node_gpu_milli_allocated",
                "Thousandths of a GPU (coxswain.dev/gpu-milli) requested by bound pods that have not finished, per node.",
                &["node"],
            ),
            fragmentation: register(
                registry,
                Gauge::new(
                    "coxswain_cluster_gpu_fragmentation_ratio",
                    "Share of free GPUs on nodes with too few free GPUs for the most common pending whole-GPU request.",
                )
                .expect("valid metric"),
            ),
            trainingjobs: gauge_vec(
                registry,
                "coxswain_trainingjobs",
                "Training jobs by state (the highest-precedence True condition; Pending when none).",
                &["state"],
            ),
            pods: gauge_vec(registry, "coxswain_pods", "Pods by phase.", &["phase"]),
            pod_gpus: register(
                registry,
                GaugeVec::new(
                    Opts::new(
                        "coxswain_pod_gpus",
                        "GPUs held by a bound pod that has not finished (shares as fractions), with its controlling owner.",
                    ),
                    &["namespace", "pod", "node", "owner_kind", "owner"],
                )
                .expect("valid metric"),
            ),
            unscheduled: register(
                registry,
                IntGauge::new(
                    "coxswain_pods_unscheduled",
                    "Pending pods not yet bound to a node.",
                )
                .expect("valid metric"),
            ),
        }
    }
}

/// GPU figures of one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeGpus {
    /// `status.allocatable["nvidia.com/gpu"]`.
    pub allocatable: i64,
    /// Whole GPUs held by pods.
    pub allocated: i64,
    /// Thousandths of a GPU held by GPU-share pods.
    pub milli_allocated: i64,
}

impl NodeGpus {
    /// Whole GPUs free for a whole-GPU request: GPU shares are assumed packed onto as few
    /// GPUs as their sum allows (an optimistic bound; the placement is not visible here).
    pub fn free(&self) -> i64 {
        let shared = (self.milli_allocated + 999) / 1000;
        (self.allocatable - self.allocated - shared).max(0)
    }
}

/// Everything the gauges show, computed from the lists of nodes, pods and training jobs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterState {
    /// Nodes per Ready status (`True`, `False`, `Unknown`).
    pub ready: BTreeMap<&'static str, i64>,
    /// GPU figures per node name.
    pub gpus: BTreeMap<String, NodeGpus>,
    /// See [`fragmentation`].
    pub fragmentation: f64,
    /// Pods per phase.
    pub pods: BTreeMap<&'static str, i64>,
    /// Pending pods without a node.
    pub unscheduled: i64,
    /// Training jobs per state.
    pub trainingjobs: BTreeMap<&'static str, i64>,
    /// GPUs per holding pod: (namespace, pod, node, owner kind, owner) → GPUs.
    pub pod_gpus: BTreeMap<[String; 5], f64>,
}

impl ClusterState {
    /// The state of a cluster with these objects.
    pub fn compute(nodes: &[Arc<Node>], pods: &[Arc<Pod>], jobs: &[Arc<DynamicObject>]) -> Self {
        let mut state = ClusterState::default();
        for status in ["True", "False", "Unknown"] {
            state.ready.insert(status, 0);
        }
        for node in nodes {
            *state.ready.entry(ready_status(node)).or_default() += 1;
            let allocatable = node
                .status
                .as_ref()
                .and_then(|s| s.allocatable.as_ref())
                .and_then(|a| a.get(NVIDIA_GPU))
                .and_then(|q| parse_quantity(q).ok())
                .map_or(0, |q| saturate(q.millis() / 1000));
            let name = node.metadata.name.clone().unwrap_or_default();
            state.gpus.entry(name).or_default().allocatable = allocatable;
        }
        for phase in POD_PHASES {
            state.pods.insert(phase, 0);
        }
        let mut pending_requests: BTreeMap<i64, i64> = BTreeMap::new();
        for pod in pods {
            let phase = pod_phase(pod);
            *state.pods.entry(phase).or_default() += 1;
            let Some(spec) = &pod.spec else { continue };
            let requests = pod_requests(spec);
            let gpus = requests
                .get(NVIDIA_GPU)
                .map_or(0, |q| saturate(q.millis() / 1000));
            let milli = requests
                .get(GPU_MILLI)
                .map_or(0, |q| saturate(q.millis() / 1000));
            match spec.node_name.as_deref() {
                None | Some("") => {
                    if phase == "Pending" {
                        state.unscheduled += 1;
                        if gpus > 0 {
                            *pending_requests.entry(gpus).or_default() += 1;
                        }
                    }
                }
                Some(node) if !matches!(phase, "Succeeded" | "Failed") => {
                    let entry = state.gpus.entry(node.to_string()).or_default();
                    entry.allocated += gpus;
                    entry.milli_allocated += milli;
                    if gpus > 0 || milli > 0 {
                        state
                            .pod_gpus
                            .insert(pod_labels(pod, node), gpus as f64 + milli as f64 / 1000.0);
                    }
                }
                Some(_) => {}
            }
        }
        // The most common request; among equally common ones, the smallest.
        let common = pending_requests
            .iter()
            .max_by_key(|(size, count)| (**count, -**size))
            .map_or(1, |(size, _)| *size);
        state.fragmentation = fragmentation(state.gpus.values(), common);
        for job_state in JOB_STATES.iter().chain([&JOB_PENDING]) {
            state.trainingjobs.insert(job_state, 0);
        }
        for job in jobs {
            *state.trainingjobs.entry(job_state(job)).or_default() += 1;
        }
        state
    }

    /// Sets the gauges to this state; nodes that are gone lose their series.
    pub fn publish(&self, metrics: &ClusterMetrics) {
        for (status, count) in &self.ready {
            metrics
                .nodes
                .with_label_values(&["Ready", status])
                .set(*count);
        }
        metrics.gpus_allocatable.reset();
        metrics.gpus_allocated.reset();
        metrics.gpu_milli_allocated.reset();
        for (node, gpus) in &self.gpus {
            metrics
                .gpus_allocatable
                .with_label_values(&[node])
                .set(gpus.allocatable);
            metrics
                .gpus_allocated
                .with_label_values(&[node])
                .set(gpus.allocated);
            metrics
                .gpu_milli_allocated
                .with_label_values(&[node])
                .set(gpus.milli_allocated);
        }
        metrics.fragmentation.set(self.fragmentation);
        for (phase, count) in &self.pods {
            metrics.pods.with_label_values(&[phase]).set(*count);
        }
        metrics.unscheduled.set(self.unscheduled);
        metrics.pod_gpus.reset();
        for (labels, gpus) in &self.pod_gpus {
            let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
            metrics.pod_gpus.with_label_values(&labels).set(*gpus);
        }
        for (job_state, count) in &self.trainingjobs {
            metrics
                .trainingjobs
                .with_label_values(&[job_state])
                .set(*count);
        }
    }
}

/// `coxswain_pod_gpus`' labels of `pod` on `node`: its controlling owner, else the pod itself.
fn pod_labels(pod: &Pod, node: &str) -> [String; 5] {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let (kind, owner) = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .map_or(("Pod".to_string(), name.clone()), |r| {
            (r.kind.clone(), r.name.clone())
        });
    [namespace, name, node.to_string(), kind, owner]
}

/// The share of free whole GPUs that sit on nodes with fewer than `request` free GPUs, so
/// cannot serve a pod asking for `request`; 0 when no GPU is free. `request` is the most
/// common whole-GPU request among unscheduled pods, or 1 when none asks for GPUs (then only
/// GPUs left free by GPU shares could count, and none do: the ratio is 0).
pub fn fragmentation<'a>(nodes: impl IntoIterator<Item = &'a NodeGpus>, request: i64) -> f64 {
    let (mut free, mut stranded) = (0i64, 0i64);
    for node in nodes {
        let node_free = node.free();
        free += node_free;
        if node_free < request {
            stranded += node_free;
        }
    }
    if free == 0 {
        0.0
    } else {
        stranded as f64 / free as f64
    }
}

fn saturate(value: i128) -> i64 {
    i64::try_from(value.max(0)).unwrap_or(i64::MAX)
}

fn ready_status(node: &Node) -> &'static str {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    match ready.map(|c| c.status.as_str()) {
        Some("True") => "True",
        Some("False") => "False",
        _ => "Unknown",
    }
}

fn pod_phase(pod: &Pod) -> &'static str {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    match phase {
        None | Some("Pending") => "Pending",
        Some("Running") => "Running",
        Some("Succeeded") => "Succeeded",
        Some("Failed") => "Failed",
        Some(_) => "Unknown",
    }
}

fn job_state(job: &DynamicObject) -> &'static str {
    let conditions = job
        .data
        .pointer("/status/conditions")
        .and_then(|c| c.as_array());
    let is_true = |wanted: &str| {
        conditions.into_iter().flatten().any(|c| {
            c.get("type").and_then(|t| t.as_str()) == Some(wanted)
                && c.get("status").and_then(|s| s.as_str()) == Some("True")
        })
    };
    JOB_STATES
        .iter()
        .find(|state| is_true(state))
        .copied()
        .unwrap_or(JOB_PENDING)
}

/// The `coxswain.dev/v1alpha1` `TrainingJob` resource.
fn training_jobs() -> ApiResource {
    ApiResource {
        group: "coxswain.dev".into(),
        version: "v1alpha1".into(),
        api_version: "coxswain.dev/v1alpha1".into(),
        kind: "TrainingJob".into(),
        plural: "trainingjobs".into(),
    }
}

/// Keeps the cluster gauges of `metrics` up to date from `client` until `shutdown` is
/// cancelled. Watch errors are retried with backoff and logged.
pub async fn run_cluster_collector(
    client: kube::Client,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let (nodes, node_writer) = reflector::store::<Node>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let job_writer = reflector::store::Writer::<DynamicObject>::new(training_jobs());
    let jobs = job_writer.as_reader();
    let config = watcher::Config::default;
    let streams: Vec<BoxStream<'static, ()>> = vec![
        events(reflector::reflector(
            node_writer,
            watcher(Api::<Node>::all(client.clone()), config()),
        )),
        events(reflector::reflector(
            pod_writer,
            watcher(Api::<Pod>::all(client.clone()), config()),
        )),
        events(reflector::reflector(
            job_writer,
            watcher(
                Api::<DynamicObject>::all_with(client, &training_jobs()),
                config(),
            ),
        )),
    ];
    let changed = Notify::new();
    let drive = futures::stream::select_all(streams).for_each(|()| {
        changed.notify_one();
        async {}
    });
    let recompute = async {
        loop {
            changed.notified().await;
            publish(&nodes, &pods, &jobs, &metrics);
            tokio::time::sleep(MIN_RECOMPUTE_INTERVAL).await;
        }
    };
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = drive => {}
        _ = recompute => {}
    }
}

fn publish(
    nodes: &Reflection<Node>,
    pods: &Reflection<Pod>,
    jobs: &Reflection<DynamicObject>,
    metrics: &Metrics,
) {
    ClusterState::compute(&nodes.state(), &pods.state(), &jobs.state()).publish(&metrics.cluster);
}

/// One `()` per watch event; errors are logged and the watch retries with backoff.
fn events<K, S>(stream: S) -> BoxStream<'static, ()>
where
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    K: Send + 'static,
{
    stream
        .default_backoff()
        .inspect_err(|error| tracing::warn!(%error, "metrics: watching the cluster"))
        .map(|_| ())
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(allocatable: i64, allocated: i64, milli: i64) -> NodeGpus {
        NodeGpus {
            allocatable,
            allocated,
            milli_allocated: milli,
        }
    }

    #[test]
    fn fragmentation_counts_free_gpus_that_cannot_serve_the_request() {
        // 8 free: 3 on a node that cannot host a 4-GPU pod, 5 on one that can.
        let nodes = [node(8, 5, 0), node(8, 3, 0)];
        assert_eq!(fragmentation(&nodes, 4), 3.0 / 8.0);
        assert_eq!(fragmentation(&nodes, 1), 0.0);
        assert_eq!(fragmentation(&nodes, 6), 1.0);
        assert_eq!(fragmentation(&[node(4, 4, 0)], 1), 0.0, "nothing free");
    }

    #[test]
    fn gpu_shares_take_whole_gpus_rounded_up() {
        assert_eq!(node(4, 1, 1500).free(), 1);
        assert_eq!(node(4, 0, 1).free(), 3);
        assert_eq!(node(1, 1, 500).free(), 0);
    }
}
