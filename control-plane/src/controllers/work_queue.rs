//! A controller's work queue as seen from outside kube-runtime: the objects its watches
//! asked to reconcile that no reconcile has picked up yet.
//!
//! kube-runtime keeps its queue to itself, so [`WorkQueue`] watches both ends: the trigger
//! streams it builds ([`WorkQueue::controller`], [`WorkQueue::mapper`]) add an object's key,
//! and [`WorkQueue::reconciler`] takes it out when a reconcile of that object starts. A key
//! added again while waiting counts once, as client-go's workqueue dedups. The figures go to
//! client-go's series (`workqueue_depth`, `workqueue_adds_total`,
//! `workqueue_queue_duration_seconds`, label `name`). Not counted: timed requeues
//! (`Action::requeue`), which client-go holds in its delaying queue until they are due.

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::TryStreamExt;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

use crate::metrics::controllers::ControllerMetrics;

/// The waiting objects of one controller (by `namespace/name`), and where their figures go.
#[derive(Clone)]
pub struct WorkQueue {
    name: &'static str,
    waiting: Arc<Mutex<HashMap<String, Instant>>>,
    metrics: Option<ControllerMetrics>,
}

impl Debug for WorkQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkQueue")
            .field("name", &self.name)
            .field("depth", &self.depth())
            .finish()
    }
}

impl WorkQueue {
    /// The queue of controller `name`, its figures in `metrics` when there are some.
    pub fn new(name: &'static str, metrics: Option<&ControllerMetrics>) -> Self {
        Self {
            name,
            waiting: Arc::default(),
            metrics: metrics.cloned(),
        }
    }

    /// The controller's name (the `name` label).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// How many objects wait for a reconcile.
    pub fn depth(&self) -> usize {
        self.lock().len()
    }

    /// `Controller::new(api, config)` whose own watch adds each changed object here.
    pub fn controller<K>(&self, api: Api<K>, config: watcher::Config) -> Controller<K>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
        K::DynamicType: Eq + Hash + Clone,
    {
        let (reader, writer) = reflector::store();
        let queue = self.clone();
        let changes = watcher(api, config)
            .reflect(writer)
            .applied_objects()
            .inspect_ok(move |object| queue.add(&key(object.meta())));
        Controller::for_stream(changes, reader)
    }

    /// A `Controller::watches` mapper that adds each object `map` names here.
    pub fn mapper<O, K, I>(
        &self,
        map: impl Fn(O) -> I + Send + Sync + 'static,
    ) -> impl Fn(O) -> Vec<ObjectRef<K>> + Send + Sync + 'static
    where
        K: Resource<DynamicType = ()>,
        I: IntoIterator<Item = ObjectRef<K>>,
    {
        let queue = self.clone();
        move |object| {
            let refs: Vec<_> = map(object).into_iter().collect();
            for r in &refs {
                queue.add(&format!(
                    "{}/{}",
                    r.namespace.as_deref().unwrap_or_default(),
                    r.name
                ));
            }
            refs
        }
    }

    /// `reconcile`, taking the object out of the queue as each reconcile starts.
    pub fn reconciler<K, C, F, Fut>(
        &self,
        reconcile: F,
    ) -> impl Fn(Arc<K>, Arc<C>) -> Fut + Send + Sync + 'static
    where
        K: Resource,
        F: Fn(Arc<K>, Arc<C>) -> Fut + Send + Sync + 'static,
        Fut: Future,
    {
        let queue = self.clone();
        move |object, ctx| {
            queue.started(&key(object.meta()));
            reconcile(object, ctx)
        }
    }

    fn add(&self, key: &str) {
        let depth = {
            let mut waiting = self.lock();
            if waiting.contains_key(key) {
                return;
            }
            waiting.insert(key.to_string(), Instant::now());
            waiting.len()
        };
        if let Some(m) = &self.metrics {
            m.queue_adds.with_label_values(&[self.name]).inc();
            m.queue_depth
                .with_label_values(&[self.name])
                .set(depth as i64);
        }
    }

    fn started(&self, key: &str) {
        let (added, depth) = {
            let mut waiting = self.lock();
            (waiting.remove(key), waiting.len())
        };
        if let (Some(m), Some(added)) = (&self.metrics, added) {
            m.queue_duration
                .with_label_values(&[self.name])
                .observe(added.elapsed().as_secs_f64());
            m.queue_depth
                .with_label_values(&[self.name])
                .set(depth as i64);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `namespace/name`, the queue's key.
fn key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    fn pod(ns: &str, name: &str) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.namespace = Some(ns.into());
        pod.metadata.name = Some(name.into());
        pod
    }

    #[tokio::test]
    async fn counts_each_waiting_object_once_until_its_reconcile_starts() {
        let registry = prometheus::Registry::new();
        let metrics = ControllerMetrics::register(&registry);
        let queue = WorkQueue::new("test", Some(&metrics));
        let owner_of = queue.mapper(|p: Pod| {
            Some(ObjectRef::<Pod>::new("owner").within(p.metadata.namespace.as_deref().unwrap()))
        });
        assert_eq!(owner_of(pod("a", "x")).len(), 1);
        owner_of(pod("a", "y")); // the same owner again: still one waiting
        owner_of(pod("b", "z"));
        assert_eq!(queue.depth(), 2);
        let depth = metrics.queue_depth.with_label_values(&["test"]);
        assert_eq!(depth.get(), 2);
        assert_eq!(metrics.queue_adds.with_label_values(&["test"]).get(), 2);

        let reconcile = queue.reconciler(|p: Arc<Pod>, _: Arc<()>| async move { p });
        reconcile(Arc::new(pod("a", "owner")), Arc::new(())).await;
        assert_eq!(queue.depth(), 1);
        assert_eq!(depth.get(), 1);
        let waited = metrics.queue_duration.with_label_values(&["test"]);
        assert_eq!(waited.get_sample_count(), 1);
        // A reconcile nobody queued (a timed requeue) changes nothing.
        reconcile(Arc::new(pod("c", "other")), Arc::new(())).await;
        assert_eq!((queue.depth(), waited.get_sample_count()), (1, 1));
    }
}
