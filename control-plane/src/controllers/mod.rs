//! The control plane's controllers: level-triggered loops over a [`kube::Client`].
//!
//! Each controller reads and writes only through the API (the in-process client in the
//! server), so admission, validation and watches apply to what it does, as they would to
//! kubectl. They follow kube-runtime's shape: `reconcile(object, ctx) -> Result<Action,
//! Error>` is idempotent and computes what to do from what it observes, never from the event
//! that woke it; an error policy backs off per object.
//!
//! - [`trainingjob`]: a `TrainingJob` runs as a gang of pods with a `PodGroup`, a headless
//!   `Service`, an MPI hostfile and rendezvous env; it restarts the whole gang on failure.
//! - [`pytorchjob`]: a Kubeflow `PyTorchJob` runs as a `TrainingJob` it owns, with
//!   Kubeflow's per-replica services and its status mirrored back in Kubeflow's shape.
//! - [`volumes`]: binds PersistentVolumeClaims to PersistentVolumes, protects both while in
//!   use and releases volumes whose claims are gone (provisioning happens on the nodes).
//! - [`csr`]: approves and signs joining nodes' client certificate requests (with the
//!   cluster CA, when `cox server` serves TLS).
//! - [`service_accounts`]: every namespace's `default` ServiceAccount and
//!   `kube-root-ca.crt` ConfigMap (when `cox server` serves TLS).
//! - [`gc`]: the garbage collector deletes dependents whose owners are gone and completes
//!   `Foreground` and `Orphan` deletions.

pub mod clock;
pub mod csr;
pub mod gc;
pub mod pytorchjob;
pub mod service_accounts;
pub mod trainingjob;
pub mod volumes;
pub mod work_queue;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use clock::{Clock, SystemClock, TokioClock};

/// Settings shared by the controllers; tests shorten the delays or use a [`TokioClock`]
/// under `tokio::time::pause`.
#[derive(Debug, Clone)]
pub struct ControllersConfig {
    /// Wait before the first gang restart; doubled for each restart after it.
    pub restart_backoff_base: Duration,
    /// The longest wait before a gang restart.
    pub restart_backoff_max: Duration,
    /// Wait before retrying an object whose reconcile failed; doubled per failure in a row.
    pub error_backoff_base: Duration,
    /// The longest wait before retrying a failed reconcile.
    pub error_backoff_max: Duration,
    /// How often the garbage collector sweeps even when nothing changed.
    pub gc_resync: Duration,
    /// Where the controllers read the time (conditions, TTLs, back-off).
    pub clock: Arc<dyn Clock>,
    /// Where reconciles are counted and timed (`None`: not measured).
    pub metrics: Option<crate::metrics::controllers::ControllerMetrics>,
}

impl Default for ControllersConfig {
    fn default() -> Self {
        Self {
            restart_backoff_base: Duration::from_secs(10),
            restart_backoff_max: Duration::from_secs(300),
            error_backoff_base: Duration::from_millis(500),
            error_backoff_max: Duration::from_secs(60),
            gc_resync: Duration::from_secs(60),
            clock: Arc::new(SystemClock),
            metrics: None,
        }
    }
}

impl ControllersConfig {
    /// The wait before gang restart number `restarts_done + 1`: `base * 2^restarts_done`,
    /// capped at `restart_backoff_max`.
    pub fn restart_backoff(&self, restarts_done: i32) -> Duration {
        exponential(
            self.restart_backoff_base,
            self.restart_backoff_max,
            restarts_done,
        )
    }

    /// The wait before retrying after `failures` failed reconciles in a row (at least 1).
    pub fn error_backoff(&self, failures: u32) -> Duration {
        let exponent = i32::try_from(failures.saturating_sub(1)).unwrap_or(i32::MAX);
        exponential(self.error_backoff_base, self.error_backoff_max, exponent)
    }
}

/// What every reconcile of one controller shares: the client it reads and writes
/// through, the settings, its event recorder (named after the controller, as Kubernetes
/// names its components) and its failed-reconcile counts.
pub struct Context {
    pub(crate) client: kube::Client,
    pub(crate) config: ControllersConfig,
    pub(crate) events: crate::events::EventRecorder,
    pub(crate) failures: FailureCounts,
}

impl Context {
    /// A context over `client` with `config`, recording Events as `component`.
    pub fn new(client: kube::Client, config: ControllersConfig, component: &'static str) -> Self {
        Self {
            events: crate::events::EventRecorder::new(client.clone(), component),
            client,
            config,
            failures: FailureCounts::default(),
        }
    }
}

/// Failed reconciles in a row per object (`namespace/name`), for the error back-off.
#[derive(Debug, Default)]
pub(crate) struct FailureCounts(std::sync::Mutex<std::collections::HashMap<String, u32>>);

impl FailureCounts {
    /// Forgets `object`'s failures (its reconcile succeeded).
    pub(crate) fn reset(&self, object: &impl kube::ResourceExt) {
        self.lock().remove(&object_key(object));
    }

    /// Counts one more failure of `object`; returns how many in a row.
    pub(crate) fn record(&self, object: &impl kube::ResourceExt) -> u32 {
        let mut counts = self.lock();
        let count = counts.entry(object_key(object)).or_insert(0);
        *count += 1;
        *count
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, u32>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `namespace/name` of `object`, as the controllers log it.
pub(crate) fn object_key(object: &impl kube::ResourceExt) -> String {
    format!(
        "{}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

/// The object of kind `kind` that controls an object with `meta` (its controller owner
/// reference), in the same namespace.
pub(crate) fn controller_ref<K>(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    kind: &str,
) -> Option<kube::runtime::reflector::ObjectRef<K>>
where
    K: kube::Resource<DynamicType = ()>,
{
    let owner = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true) && o.kind == kind)?;
    let object = kube::runtime::reflector::ObjectRef::new(&owner.name);
    Some(match meta.namespace.as_deref() {
        Some(ns) => object.within(ns),
        None => object,
    })
}

fn exponential(base: Duration, max: Duration, exponent: i32) -> Duration {
    let factor = 2u32.saturating_pow(u32::try_from(exponent.clamp(0, 31)).unwrap_or(31));
    base.saturating_mul(factor).min(max)
}

/// An error of a controller's reconcile: an API call that failed, with what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the API failed.
    #[error("{action}: {source}")]
    Api {
        /// What the controller was doing (`creating pod default/llm-worker-0`).
        action: String,
        /// The client's error.
        #[source]
        source: Box<kube::Error>,
    },
}

impl Error {
    pub(crate) fn api(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let action = action.into();
        move |source| Self::Api {
            action,
            source: Box::new(source),
        }
    }
}

/// Runs every controller until `shutdown` is cancelled.
pub async fn run_all(client: kube::Client, config: ControllersConfig, shutdown: CancellationToken) {
    tokio::join!(
        trainingjob::run(client.clone(), config.clone(), shutdown.clone()),
        pytorchjob::run(client.clone(), config.clone(), shutdown.clone()),
        volumes::run(client.clone(), config.clone(), shutdown.clone()),
        gc::run(client, config, shutdown),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_backoff_doubles_and_caps() {
        let config = ControllersConfig::default();
        let waits: Vec<u64> = (0..8)
            .map(|n| config.restart_backoff(n).as_secs())
            .collect();
        assert_eq!(waits, vec![10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(config.restart_backoff(i32::MAX).as_secs(), 300);
        assert_eq!(config.error_backoff(1), Duration::from_millis(500));
        assert_eq!(config.error_backoff(3), Duration::from_secs(2));
    }
}
