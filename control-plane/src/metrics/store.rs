//! [`MeteredStore`]: a [`Store`] that times and counts every operation of the store it wraps,
//! and counts the objects and bytes stored per resource.
//!
//! The object gauges come from a full list of `/registry/` by pages, so they are refreshed at
//! most every [`OBJECT_REFRESH_INTERVAL`] by [`MeteredStore::run_object_counter`] rather than
//! on every scrape: a scrape stays cheap however large the store is.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};
use tokio_util::sync::CancellationToken;

use super::{Metrics, register};
use crate::store::{
    Deleted, ListOptions, ListPage, Result, Revision, Store, StoreError, WatchStream,
};

/// How often [`MeteredStore::run_object_counter`] recounts the stored objects.
pub const OBJECT_REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// Items per page when counting objects.
const COUNT_PAGE: usize = 500;

/// Buckets for store operations: 100 µs to 10 s.
const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Metrics of the store.
pub struct StoreMetrics {
    /// `coxswain_store_operation_duration_seconds{operation,backend}`.
    pub duration: HistogramVec,
    /// `coxswain_store_operations_total{operation,result}`.
    pub operations: IntCounterVec,
    /// `coxswain_store_compactions_total`: compactions that succeeded.
    pub compactions: IntCounter,
    /// `coxswain_store_objects{resource}`.
    pub objects: IntGaugeVec,
    /// `coxswain_store_object_bytes{resource}`.
    pub bytes: IntGaugeVec,
}

impl StoreMetrics {
    pub(super) fn register(registry: &Registry) -> StoreMetrics {
        StoreMetrics {
            duration: register(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "coxswain_store_operation_duration_seconds",
                        "Duration of store operations by operation and backend.",
                    )
                    .buckets(DURATION_BUCKETS.to_vec()),
                    &["operation", "backend"],
                )
                .expect("valid metric"),
            ),
            operations: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "coxswain_store_operations_total",
                        "Store operations by operation and result.",
                    ),
                    &["operation", "result"],
                )
                .expect("valid metric"),
            ),
            compactions: register(
                registry,
                IntCounter::new(
                    "coxswain_store_compactions_total",
                    "Store compactions that succeeded.",
                )
                .expect("valid metric"),
            ),
            objects: register(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "coxswain_store_objects",
                        "Objects stored per resource, counted at most every 10 s.",
                    ),
                    &["resource"],
                )
                .expect("valid metric"),
            ),
            bytes: register(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "coxswain_store_object_bytes",
                        "Bytes of stored values per resource, counted at most every 10 s.",
                    ),
                    &["resource"],
                )
                .expect("valid metric"),
            ),
        }
    }
}

/// A store that records metrics about the store it wraps.
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    backend: &'static str,
    metrics: Arc<Metrics>,
}

impl MeteredStore {
    /// Wraps `inner`; `backend` names it in the `backend` label (`embedded`, `etcd`).
    pub fn new(
        inner: Arc<dyn Store>,
        backend: &'static str,
        metrics: Arc<Metrics>,
    ) -> MeteredStore {
        MeteredStore {
            inner,
            backend,
            metrics,
        }
    }

    fn observe<T>(&self, operation: &str, start: Instant, result: &Result<T>) {
        let store = &self.metrics.store;
        store
            .duration
            .with_label_values(&[operation, self.backend])
            .observe(start.elapsed().as_secs_f64());
        let outcome = match result {
            Ok(_) => "ok",
            Err(error) => error_result(error),
        };
        store
            .operations
            .with_label_values(&[operation, outcome])
            .inc();
    }

    /// Recounts the objects and bytes per resource now, from a paged list of `/registry/`
    /// (read from the wrapped store, so the count does not count itself).
    pub async fn refresh_object_gauges(&self) -> Result<()> {
        let mut counts: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        let mut options = ListOptions {
            limit: COUNT_PAGE,
            continue_token: None,
        };
        loop {
            let page = self.inner.list("/registry/", options.clone()).await?;
            for kv in &page.items {
                let entry = counts.entry(resource_of(&kv.key)).or_default();
                entry.0 += 1;
                entry.1 += i64::try_from(kv.value.len()).unwrap_or(i64::MAX);
            }
            match page.continue_token {
                Some(token) => options.continue_token = Some(token),
                None => break,
            }
        }
        let store = &self.metrics.store;
        store.objects.reset();
        store.bytes.reset();
        for (resource, (objects, bytes)) in counts {
            store.objects.with_label_values(&[&resource]).set(objects);
            store.bytes.with_label_values(&[&resource]).set(bytes);
        }
        Ok(())
    }

    /// Recounts the objects every [`OBJECT_REFRESH_INTERVAL`] until `shutdown` is cancelled.
    pub async fn run_object_counter(self: Arc<Self>, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(OBJECT_REFRESH_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            if let Err(error) = self.refresh_object_gauges().await {
                tracing::warn!(%error, "counting stored objects for metrics");
            }
        }
    }
}

/// The `resource` label of a key `/registry/<group>/<resource>/...`: `pods` for the core
/// group, `deployments.apps` otherwise (Kubernetes' `apiserver_storage_objects` spelling).
fn resource_of(key: &str) -> String {
    let mut segments = key.trim_start_matches("/registry/").split('/');
    match (segments.next(), segments.next()) {
        (Some("core"), Some(resource)) => resource.to_string(),
        (Some(group), Some(resource)) => format!("{resource}.{group}"),
        _ => "other".to_string(),
    }
}

/// The `result` label of a failed operation.
fn error_result(error: &StoreError) -> &'static str {
    match error {
        StoreError::NotFound { .. } => "not_found",
        StoreError::AlreadyExists { .. } => "already_exists",
        StoreError::Conflict { .. } => "conflict",
        StoreError::Expired { .. } => "expired",
        StoreError::TooLarge { .. }
        | StoreError::FutureRevision { .. }
        | StoreError::InvalidKey { .. }
        | StoreError::InvalidContinue { .. } => "invalid",
        _ => "error",
    }
}

#[async_trait]
impl Store for MeteredStore {
    async fn get(&self, key: &str) -> Result<Option<crate::store::KeyValue>> {
        let start = Instant::now();
        let result = self.inner.get(key).await;
        self.observe("get", start, &result);
        result
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListPage> {
        let start = Instant::now();
        let result = self.inner.list(prefix, options).await;
        self.observe("list", start, &result);
        result
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision> {
        let start = Instant::now();
        let result = self.inner.create(key, value).await;
        self.observe("create", start, &result);
        result
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Option<Revision>,
    ) -> Result<Revision> {
        let start = Instant::now();
        let result = self.inner.update(key, value, expected).await;
        self.observe("update", start, &result);
        result
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<Deleted> {
        let start = Instant::now();
        let result = self.inner.delete(key, expected).await;
        self.observe("delete", start, &result);
        result
    }

    /// Times setting up the watch, not the life of its stream.
    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream> {
        let start = Instant::now();
        let result = self.inner.watch(prefix, from).await;
        self.observe("watch", start, &result);
        result
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let start = Instant::now();
        let result = self.inner.compact(revision).await;
        self.observe("compact", start, &result);
        if result.is_ok() {
            self.metrics.store.compactions.inc();
        }
        result
    }

    async fn current_revision(&self) -> Result<Revision> {
        let start = Instant::now();
        let result = self.inner.current_revision().await;
        self.observe("current_revision", start, &result);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_labels_follow_kubernetes() {
        assert_eq!(resource_of("/registry/core/pods/default/p"), "pods");
        assert_eq!(resource_of("/registry/core/nodes/n1"), "nodes");
        assert_eq!(
            resource_of("/registry/apps/deployments/ns/d"),
            "deployments.apps"
        );
        assert_eq!(resource_of("/registry/x"), "other");
    }
}
