//! Running the scheduler for real: watches over the API feed the snapshot, a dedicated
//! thread runs [`Scheduler::schedule_one`] while work is queued, and [`ApiBinder`] writes
//! decisions back through a [`kube::Client`].
//!
//! - `watch`: kube-runtime watchers over Pods, Nodes, PodGroups, Queues and ResourceSlices, turned
//!   into [`Input`]s (which pods are pending for us, which hold capacity).
//! - `feed`: [`Input`]s → [`super::ClusterEvent`]s (a node's GPUs come from its slices).
//! - `devices`: a `gpu.coxswain.dev` ResourceSlice → the model's GPU devices.
//! - `scheduling_loop`: the thread that owns the [`Scheduler`].
//! - [`ApiBinder`]: compare-and-swap binds (`spec.nodeName` + GPU annotation) and evictions.
//! - `pod_status`: the `PodScheduled` condition, written in order by one task.
//! - `metering`: scheduler metrics (when [`RunnerConfig::metrics`] is set).
//! - `notices`: Events (`Scheduled`, `FailedScheduling`, `Preempted`, gang `Unschedulable`).
//!
//! The engine is synchronous; API calls from its thread go through
//! [`tokio::runtime::Handle::block_on`], so no tokio worker shared with other tasks blocks.

mod api_binder;
mod devices;
mod feed;
mod metering;
mod notices;
mod pod_status;
mod scheduling_loop;
mod volumes;
mod watch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use coxswain_api::k8s::Pod;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

pub use api_binder::{ApiBinder, BeforeBind};
pub use devices::model_gpus;
pub use feed::Input;
pub use notices::EVENT_COMPONENT;
pub use watch::{PodState, classify};

use super::clock::SystemClock;
use super::plugins::default_framework_with_volumes;
use super::{Scheduler, SchedulerConfig};
pub use volumes::DEFAULT_VOLUME_BIND_TIMEOUT;

/// The scheduler name pods ask for (`spec.schedulerName`); pods naming `default-scheduler`
/// or nothing are scheduled too.
pub const SCHEDULER_NAME: &str = "coxswain";

/// How the runner schedules.
#[derive(Clone, Default)]
pub struct RunnerConfig {
    /// Back-off and queue tuning.
    pub scheduler: SchedulerConfig,
    /// Called on the scheduling thread with each binding after the binder picked the pod
    /// version to write on and right before the write: a seam for tests that race the bind
    /// (it may block; it runs outside the tokio workers).
    pub before_bind: Option<BeforeBind>,
    /// Where to record scheduler metrics (`cox server` passes the control plane's).
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// How long the binder waits for a pod's claims to bind before binding the pod
    /// (`None`: [`DEFAULT_VOLUME_BIND_TIMEOUT`]); on timeout the pod goes back to the queue.
    pub volume_bind_timeout: Option<std::time::Duration>,
}

impl std::fmt::Debug for RunnerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerConfig")
            .field("scheduler", &self.scheduler)
            .field("before_bind", &self.before_bind.is_some())
            .field("metrics", &self.metrics.is_some())
            .finish()
    }
}

/// Why the runner stopped other than by shutdown.
#[derive(Debug, Error)]
pub enum RunnerError {
    /// The scheduling thread could not be started.
    #[error("starting the scheduling thread: {0}")]
    Thread(#[source] std::io::Error),
    /// The scheduling thread panicked.
    #[error("the scheduling thread panicked (see the log above)")]
    Panicked,
}

/// The latest version of every pod the watch has seen, by `namespace/name`: what the
/// binder writes on top of (at its resourceVersion) and what status writes compare with.
#[derive(Debug, Clone, Default)]
pub(crate) struct PodCache(Arc<Mutex<HashMap<String, Pod>>>);

impl PodCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pod>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached pod `key`.
    pub(crate) fn get(&self, key: &str) -> Option<Pod> {
        self.lock().get(key).cloned()
    }

    /// Stores `pod` unless the cache already holds a newer version of it.
    pub(crate) fn put(&self, key: String, pod: Pod) {
        let mut map = self.lock();
        let newer = |p: &Pod| resource_version(p);
        if let Some(old) = map.get(&key)
            && newer(old) > newer(&pod)
        {
            return;
        }
        map.insert(key, pod);
    }

    /// Forgets pod `key`.
    pub(crate) fn remove(&self, key: &str) {
        self.lock().remove(key);
    }
}

fn resource_version(pod: &Pod) -> u64 {
    pod.metadata
        .resource_version
        .as_deref()
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}

/// Runs the scheduler against the API behind `client` until `shutdown` is cancelled.
///
/// Must be called inside a tokio runtime; the scheduling itself runs on its own thread.
pub async fn run(
    client: kube::Client,
    config: RunnerConfig,
    shutdown: CancellationToken,
) -> Result<(), RunnerError> {
    let stop = shutdown.child_token();
    let (tx, rx) = std::sync::mpsc::channel();
    let pods = PodCache::default();
    let handle = tokio::runtime::Handle::current();
    let status = pod_status::spawn(client.clone(), pods.clone(), stop.clone());
    let notices = notices::spawn(client.clone(), pods.clone(), stop.clone());
    watch::spawn_all(&client, pods.clone(), tx.clone(), &stop);
    let volume_view = volumes::view(&client, &stop).await;
    let binder = Arc::new(
        ApiBinder::new(client, handle, pods, config.before_bind.clone()).with_volume_timeout(
            config
                .volume_bind_timeout
                .unwrap_or(DEFAULT_VOLUME_BIND_TIMEOUT),
        ),
    );
    let meter = metering::Meter::new(config.metrics.clone());
    let clock = Arc::new(SystemClock::new());
    let scheduler = Scheduler::new(
        default_framework_with_volumes(volume_view),
        binder,
        clock.clone(),
        config.scheduler.clone(),
    );
    let thread = std::thread::Builder::new()
        .name("coxswain-scheduler".into())
        .spawn(move || scheduling_loop::run(scheduler, clock, rx, status, notices, meter))
        .map_err(RunnerError::Thread)?;
    stop.cancelled().await;
    // Wakes the thread if it waits for input; it exits at its next look at the channel.
    let _ = tx.send(scheduling_loop::Message::Stop);
    let joined = tokio::task::spawn_blocking(move || thread.join()).await;
    match joined {
        Ok(Ok(())) => Ok(()),
        _ => {
            tracing::error!("the scheduling thread panicked");
            Err(RunnerError::Panicked)
        }
    }
}
