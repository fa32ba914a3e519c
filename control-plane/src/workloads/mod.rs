//! Kubernetes' standard workload controllers: Job, CronJob, ReplicaSet, Deployment and
//! DaemonSet.
//!
//! Each controller is level-triggered on kube-runtime's [`Controller`](kube::runtime::Controller):
//! `reconcile(object, ctx) -> Result<Action, Error>` reads the object and the children it
//! owns *fresh from the API* (so a second reconcile never double-creates what the first
//! made), makes one step towards the desired state, and writes the status. Errors back off
//! per object ([`runner`]). Controllers read and write only through a [`kube::Client`].
//! `docs/workloads.md` lists what each controller does and does not do.

pub mod clock;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
mod error;
pub mod job;
mod owned;
pub mod replicaset;
mod runner;
pub mod selector;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use clock::{Clock, FakeClock, SystemClock};
pub use error::Error;

use crate::events::EventRecorder;

/// Settings shared by the workload controllers.
#[derive(Clone)]
pub struct WorkloadsConfig {
    /// Wall time as the controllers see it (deadlines, TTLs, cron schedules).
    pub clock: Arc<dyn Clock>,
    /// First delay before a Job re-creates a failed pod; doubles per failure (Kubernetes: 10 s).
    pub job_backoff_base: Duration,
    /// Cap of the Job pod re-creation delay (Kubernetes: 6 min).
    pub job_backoff_max: Duration,
    /// First retry delay after a failed reconcile; doubles per consecutive failure.
    pub error_backoff_base: Duration,
    /// Cap of the retry delay after failed reconciles.
    pub error_backoff_max: Duration,
    /// Where reconciles are counted and timed (`None`: not measured).
    pub metrics: Option<crate::metrics::controllers::ControllerMetrics>,
}

impl Default for WorkloadsConfig {
    fn default() -> Self {
        WorkloadsConfig {
            clock: Arc::new(SystemClock),
            job_backoff_base: Duration::from_secs(10),
            job_backoff_max: Duration::from_secs(360),
            error_backoff_base: Duration::from_millis(100),
            error_backoff_max: Duration::from_secs(60),
            metrics: None,
        }
    }
}

impl std::fmt::Debug for WorkloadsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadsConfig")
            .field("job_backoff_base", &self.job_backoff_base)
            .field("job_backoff_max", &self.job_backoff_max)
            .field("error_backoff_base", &self.error_backoff_base)
            .field("error_backoff_max", &self.error_backoff_max)
            .finish_non_exhaustive()
    }
}

/// What every reconcile gets: the client, the settings, the event recorders and the
/// per-object error counts.
pub struct Context {
    /// The API client the controller reads and writes through.
    pub client: kube::Client,
    /// The controllers' settings.
    pub config: WorkloadsConfig,
    /// One event recorder per controller, named as Kubernetes names them.
    pub events: Recorders,
    failures: std::sync::Mutex<std::collections::HashMap<String, u32>>,
}

/// The event recorders of the five controllers (`source.component` as in Kubernetes).
#[derive(Debug, Clone)]
pub struct Recorders {
    /// `job-controller`.
    pub job: EventRecorder,
    /// `cronjob-controller`.
    pub cronjob: EventRecorder,
    /// `replicaset-controller`.
    pub replicaset: EventRecorder,
    /// `deployment-controller`.
    pub deployment: EventRecorder,
    /// `daemonset-controller`.
    pub daemonset: EventRecorder,
}

impl Recorders {
    fn new(client: &kube::Client) -> Self {
        let recorder = |component: &str| EventRecorder::new(client.clone(), component);
        Recorders {
            job: recorder("job-controller"),
            cronjob: recorder("cronjob-controller"),
            replicaset: recorder("replicaset-controller"),
            deployment: recorder("deployment-controller"),
            daemonset: recorder("daemonset-controller"),
        }
    }
}

impl Context {
    /// A context over `client` with `config`.
    pub fn new(client: kube::Client, config: WorkloadsConfig) -> Self {
        Context {
            events: Recorders::new(&client),
            client,
            config,
            failures: Default::default(),
        }
    }

    /// The current wall time.
    pub fn now(&self) -> jiff::Timestamp {
        self.config.clock.now()
    }
}

/// Runs the five workload controllers over all namespaces until `shutdown` is cancelled.
pub async fn run(client: kube::Client, config: WorkloadsConfig, shutdown: CancellationToken) {
    let ctx = Arc::new(Context::new(client, config));
    tokio::join!(
        job::run(ctx.clone(), shutdown.clone()),
        cronjob::run(ctx.clone(), shutdown.clone()),
        replicaset::run(ctx.clone(), shutdown.clone()),
        deployment::run(ctx.clone(), shutdown.clone()),
        daemonset::run(ctx, shutdown),
    );
}
