//! Events: the core/v1 `Event` records that `kubectl describe` and `cox describe` show under an
//! object.
//!
//! Components record what they did or failed to do through an [`EventRecorder`]. Like
//! client-go's event correlator, a repeat of the same event (same object, type, reason, message
//! and source) does not create a new record: it bumps the existing one's `count` and
//! `lastTimestamp`. The record's name is derived from those fields, so a restarted component
//! finds and bumps its predecessor's record instead of starting a second one.
//!
//! Recording is best effort: a failure is logged and never fails the caller's work, as in
//! Kubernetes.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use serde_json::json;

/// How many event records a recorder remembers the count of.
const MAX_REMEMBERED: usize = 4096;

/// Whether an event is routine or something a user should look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Routine progress ("Scheduled", "Started").
    Normal,
    /// Something went wrong or is stuck ("FailedScheduling", "BackOff").
    Warning,
}

impl EventType {
    /// The `type` field's value.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Records events for one component (`source.component`, e.g. "scheduler").
#[derive(Clone)]
pub struct EventRecorder {
    client: Client,
    component: String,
    host: Option<String>,
    /// Event name → count last written, for the events this recorder wrote.
    counts: Arc<Mutex<HashMap<String, i32>>>,
}

impl std::fmt::Debug for EventRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRecorder")
            .field("component", &self.component)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl EventRecorder {
    /// A recorder writing through `client` as `component`.
    pub fn new(client: Client, component: impl Into<String>) -> Self {
        Self {
            client,
            component: component.into(),
            host: None,
            counts: Arc::default(),
        }
    }

    /// The same recorder, naming `host` as the event source's host (agents: the node name).
    pub fn with_host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// Records an event about `object` (anything kube can reference: pods, jobs, nodes...).
    pub async fn publish<K>(&self, object: &K, event_type: EventType, reason: &str, message: &str)
    where
        K: Resource<DynamicType = ()>,
    {
        self.publish_ref(&object.object_ref(&()), event_type, reason, message)
            .await;
    }

    /// Records an event about the object `reference` names. Failures are logged, not returned.
    pub async fn publish_ref(
        &self,
        reference: &ObjectReference,
        event_type: EventType,
        reason: &str,
        message: &str,
    ) {
        if let Err(error) = self.record(reference, event_type, reason, message).await {
            tracing::warn!(
                component = %self.component,
                reason,
                object = reference.name.as_deref().unwrap_or_default(),
                "recording an event failed: {error}"
            );
        }
    }

    /// Records an event, returning the API's error when it could not be written.
    pub async fn record(
        &self,
        reference: &ObjectReference,
        event_type: EventType,
        reason: &str,
        message: &str,
    ) -> Result<(), kube::Error> {
        // Cluster-scoped objects' events live in "default", as in Kubernetes.
        let namespace = reference.namespace.as_deref().unwrap_or("default");
        let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        let name = self.event_name(reference, event_type, reason, message);
        let now = Timestamp::now();
        let known = self
            .counts
            .lock()
            .expect("event counts")
            .get(&name)
            .copied();
        if let Some(count) = known
            && self.bump(&api, &name, count + 1, now).await?
        {
            return Ok(());
        }
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.to_owned()),
                ..ObjectMeta::default()
            },
            involved_object: reference.clone(),
            type_: Some(event_type.as_str().to_owned()),
            reason: Some(reason.to_owned()),
            message: Some(message.to_owned()),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            reporting_component: Some(self.component.clone()),
            reporting_instance: self.host.clone(),
            action: Some(reason.to_owned()),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: self.host.clone(),
            }),
            ..Event::default()
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                self.remember(&name, 1);
                Ok(())
            }
            // Written before (by a previous run of this component): bump that record.
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let existing = api.get(&name).await?;
                let count = existing.count.unwrap_or(1) + 1;
                self.bump(&api, &name, count, now).await.map(|_| ())
            }
            Err(error) => Err(error),
        }
    }

    /// Sets an existing record's count and last timestamp; `false` when it no longer exists.
    async fn bump(
        &self,
        api: &Api<Event>,
        name: &str,
        count: i32,
        now: Timestamp,
    ) -> Result<bool, kube::Error> {
        let patch = json!({
            "count": count,
            "lastTimestamp": Time(now),
        });
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                self.remember(name, count);
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {
                self.counts.lock().expect("event counts").remove(name);
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    fn remember(&self, name: &str, count: i32) {
        let mut counts = self.counts.lock().expect("event counts");
        // Bounded, like client-go's LRU of 4096: a forgotten record is found again by its
        // stable name (create → 409 → bump), so dropping the cache only costs a GET.
        if counts.len() >= MAX_REMEMBERED && !counts.contains_key(name) {
            counts.clear();
        }
        counts.insert(name.to_owned(), count);
    }

    /// `<object>.<hash of what makes two events the same>`: stable across restarts.
    fn event_name(
        &self,
        reference: &ObjectReference,
        event_type: EventType,
        reason: &str,
        message: &str,
    ) -> String {
        let mut hasher = Fnv64::default();
        (
            &reference.kind,
            &reference.namespace,
            &reference.name,
            &reference.uid,
            &reference.field_path,
            event_type,
            reason,
            message,
            &self.component,
            &self.host,
        )
            .hash(&mut hasher);
        let object = reference.name.as_deref().unwrap_or("object");
        // Object names may be 253 characters; the suffix must still fit.
        let object = &object[..object.len().min(200)];
        format!("{object}.{:016x}", hasher.finish())
    }
}

/// FNV-1a: a hash that is the same in every process, unlike std's randomly seeded one.
struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv64 {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}
