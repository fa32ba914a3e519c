//! A small cache shared by all watches: each store change is decoded, and each JSON event line
//! encoded, once rather than once per watcher. With a thousand watchers on one resource this
//! turns a thousand JSON parses per change into one.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::Value;

use crate::apiserver::objects::from_store;
use crate::store::{KeyValue, Revision};

/// How many recent objects and lines are kept.
const CAPACITY: usize = 512;

/// Bounded maps from (key, revision) to a decoded object and from (key, revision, event type) to
/// an encoded watch line, evicting the oldest entries.
#[derive(Default)]
pub struct WatchCache {
    objects: Mutex<Recent<(String, Revision), Arc<Value>>>,
    lines: Mutex<Recent<(String, Revision, &'static str), Bytes>>,
}

struct Recent<K, V> {
    map: HashMap<K, V>,
    order: VecDeque<K>,
}

impl<K, V> Default for Recent<K, V> {
    fn default() -> Self {
        Recent {
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone, V: Clone> Recent<K, V> {
    fn get(&self, key: &K) -> Option<V> {
        self.map.get(key).cloned()
    }

    fn insert(&mut self, key: K, value: V) {
        if self.map.insert(key.clone(), value).is_none() {
            self.order.push_back(key);
            while self.order.len() > CAPACITY {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }
}

impl WatchCache {
    /// The decoded object stored in `kv` (with its resourceVersion set).
    pub fn object(&self, kv: &KeyValue) -> Option<Arc<Value>> {
        let id = (kv.key.clone(), kv.mod_revision);
        if let Some(hit) = self.objects.lock().ok()?.get(&id) {
            return Some(hit);
        }
        // Decoded outside the lock: watchers racing on a miss each decode, harmlessly.
        let value = Arc::new(from_store(kv).ok()?);
        if let Ok(mut objects) = self.objects.lock() {
            objects.insert(id, value.clone());
        }
        Some(value)
    }

    /// The encoded JSON watch line of event `kind` for `key` at `revision`, made by `encode`
    /// the first time it is asked for.
    pub fn line(
        &self,
        key: &str,
        revision: Revision,
        kind: &'static str,
        encode: impl FnOnce() -> Bytes,
    ) -> Bytes {
        let id = (key.to_string(), revision, kind);
        if let Some(hit) = self.lines.lock().ok().and_then(|l| l.get(&id)) {
            return hit;
        }
        let line = encode();
        if let Ok(mut lines) = self.lines.lock() {
            lines.insert(id, line.clone());
        }
        line
    }
}
