//! Drives one kube-runtime [`Controller`] until shutdown, with per-object error back-off.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::Resource;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::{Context, Error};
use crate::controllers::work_queue::WorkQueue;

/// `namespace/name` of an object, for logs and the error counts.
pub(crate) fn key_of<K: Resource>(obj: &K) -> String {
    format!(
        "{}/{}",
        obj.meta().namespace.as_deref().unwrap_or_default(),
        obj.meta().name.as_deref().unwrap_or_default()
    )
}

/// The reconcile request for the controller (kind `K`) of `child`, if `K` controls it.
///
/// Used with `Controller::watches` instead of `Controller::owns`: kube-runtime's `owns`
/// watches metadata only (`PartialObjectMetadata`), which the API server does not serve.
pub(crate) fn controller_of<K, C>(child: C) -> Option<ObjectRef<K>>
where
    K: Resource<DynamicType = ()>,
    C: Resource,
{
    let meta = child.meta();
    let owner = meta
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))?;
    (owner.kind == K::kind(&()) && owner.api_version == K::api_version(&()))
        .then(|| ObjectRef::new(&owner.name).within(meta.namespace.as_deref().unwrap_or_default()))
}

/// Runs `controller` with `reconcile` until `shutdown` is cancelled, `queue` following
/// what waits for a reconcile.
pub(crate) async fn drive<K, F, Fut>(
    queue: WorkQueue,
    controller: Controller<K>,
    reconcile: F,
    ctx: Arc<Context>,
    shutdown: CancellationToken,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    F: Fn(Arc<K>, Arc<Context>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, Error>> + Send + 'static,
{
    let name = queue.name();
    let reconcile = Arc::new(queue.reconciler(reconcile));
    controller
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(
            move |obj: Arc<K>, ctx: Arc<Context>| {
                let key = format!("{name}:{}", key_of(obj.as_ref()));
                let fut = reconcile(obj, ctx.clone());
                async move {
                    let metrics = ctx.config.metrics.as_ref();
                    let result = crate::metrics::controllers::observe(metrics, name, fut).await;
                    if result.is_ok() {
                        ctx.failures
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&key);
                    }
                    result
                }
            },
            move |obj: Arc<K>, err: &Error, ctx: Arc<Context>| error_policy(name, obj, err, ctx),
            ctx,
        )
        .for_each(move |r| {
            if let Err(e) = r {
                tracing::debug!(controller = name, "controller stream: {e}");
            }
            futures::future::ready(())
        })
        .await;
}

/// Retries a failed reconcile after `base * 2^(n-1)` (capped) for the n-th failure in a row.
fn error_policy<K: Resource>(name: &str, obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action {
    let key = format!("{name}:{}", key_of(obj.as_ref()));
    let n = {
        let mut failures = ctx.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key.clone()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    if err.is_conflict() {
        tracing::debug!(controller = name, object = %key, "conflict, retrying: {err}");
    } else {
        tracing::warn!(controller = name, object = %key, failures = n, "reconcile failed: {err}");
    }
    Action::requeue(backoff(
        ctx.config.error_backoff_base,
        ctx.config.error_backoff_max,
        n,
    ))
}

/// `base * 2^(n-1)`, at most `max`.
pub(crate) fn backoff(base: Duration, max: Duration, n: u32) -> Duration {
    let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
    base.checked_mul(factor).unwrap_or(max).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let (b, m) = (Duration::from_secs(10), Duration::from_secs(360));
        assert_eq!(backoff(b, m, 1), Duration::from_secs(10));
        assert_eq!(backoff(b, m, 2), Duration::from_secs(20));
        assert_eq!(backoff(b, m, 6), Duration::from_secs(320));
        assert_eq!(backoff(b, m, 7), m);
        assert_eq!(backoff(b, m, 100), m);
    }
}
