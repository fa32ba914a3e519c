//! A watch-fed cache of the decoded objects of one kind, as kube-apiserver's authorizers
//! read informers instead of the store: a list, then a watch from the list's revision that
//! applies every put and delete; when the watch ends or fails (compaction), list again.
//! Objects that do not decode (or that the cache's decoder leaves out) count as absent. The task stops when the cache is dropped.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use serde::de::DeserializeOwned;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::store::{ListOptions, Store, StoreError, WatchEvent};

/// The objects under one store prefix, by store key, kept current by a watch.
pub struct Informer<T> {
    objects: Arc<RwLock<BTreeMap<String, Arc<T>>>>,
    _stop: DropGuard,
}

impl<T> std::fmt::Debug for Informer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Informer").finish_non_exhaustive()
    }
}

impl<T: DeserializeOwned + Send + Sync + 'static> Informer<T> {
    /// Starts filling the cache from `prefix` of `store` (on the current tokio runtime).
    pub fn start(store: Arc<dyn Store>, prefix: String) -> Self {
        Self::start_with(store, prefix, |bytes| serde_json::from_slice(bytes).ok())
    }
}

impl<T: Send + Sync + 'static> Informer<T> {
    /// Starts filling the cache with what `decode` makes of each stored value under `prefix`
    /// (`None`: not cached), on the current tokio runtime.
    pub fn start_with(
        store: Arc<dyn Store>,
        prefix: String,
        decode: fn(&[u8]) -> Option<T>,
    ) -> Self {
        let objects = Arc::new(RwLock::new(BTreeMap::new()));
        let stop = CancellationToken::new();
        let task = follow(store, prefix, objects.clone(), decode);
        let cancelled = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = task => {}
                () = cancelled.cancelled() => {}
            }
        });
        Self {
            objects,
            _stop: stop.drop_guard(),
        }
    }

    /// The object stored under `key`.
    pub fn get(&self, key: &str) -> Option<Arc<T>> {
        self.read().get(key).cloned()
    }

    /// Every object whose key starts with `prefix`.
    pub fn list(&self, prefix: &str) -> Vec<Arc<T>> {
        self.read()
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<T>>> {
        self.objects.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// Lists and watches `prefix` forever, mirroring it into `objects`.
async fn follow<T>(
    store: Arc<dyn Store>,
    prefix: String,
    objects: Arc<RwLock<BTreeMap<String, Arc<T>>>>,
    decode: fn(&[u8]) -> Option<T>,
) {
    loop {
        if let Err(e) = list_and_watch(&*store, &prefix, &objects, decode).await {
            tracing::debug!(%prefix, "authorization cache: {e}; listing again");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn list_and_watch<T>(
    store: &dyn Store,
    prefix: &str,
    objects: &RwLock<BTreeMap<String, Arc<T>>>,
    decode: fn(&[u8]) -> Option<T>,
) -> Result<(), StoreError> {
    let mut fresh = BTreeMap::new();
    let mut options = ListOptions::default();
    let revision = loop {
        let page = store.list(prefix, options.clone()).await?;
        for kv in &page.items {
            if let Some(object) = decode(&kv.value) {
                fresh.insert(kv.key.clone(), Arc::new(object));
            }
        }
        match page.continue_token {
            Some(token) => options.continue_token = Some(token),
            None => break page.revision,
        }
    };
    *objects.write().unwrap_or_else(|e| e.into_inner()) = fresh;
    let mut events = store.watch(prefix, revision).await?;
    while let Some(event) = events.next().await {
        let mut objects = objects.write().unwrap_or_else(|e| e.into_inner());
        match event? {
            WatchEvent::Put { kv, .. } => match decode(&kv.value) {
                Some(object) => {
                    objects.insert(kv.key, Arc::new(object));
                }
                None => {
                    objects.remove(&kv.key);
                }
            },
            WatchEvent::Delete { key, .. } => {
                objects.remove(&key);
            }
        }
    }
    Ok(())
}
