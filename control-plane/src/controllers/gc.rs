//! The garbage collector: deletes objects whose owners are gone, and completes the
//! `Orphan` and `Foreground` deletions the API server records as finalizers.
//!
//! - **Background** (the default): the API server removes the owner at once; every object
//!   whose `ownerReferences` all name objects that no longer exist (no object of that kind
//!   and name with that uid) is deleted.
//! - **Foreground**: the owner keeps a `foregroundDeletion` finalizer; its dependents are
//!   deleted, and once none that `blockOwnerDeletion` remains the finalizer is removed (which
//!   removes the owner).
//! - **Orphan**: the owner keeps an `orphan` finalizer; the reference to it is removed from
//!   each dependent, then the finalizer.
//!
//! Each sweep lists every kind through the API; an owner missing from the listing is
//! confirmed with a live GET before anything is deleted (it may have been created after its
//! kind was listed), and every delete is preconditioned on the dependent's uid. Sweeps run
//! when a watch reports a deletion, a terminating object or an object with owners, and
//! every `gc_resync`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use coxswain_api::registry::{self, KINDS, KindInfo};
use futures::{FutureExt, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, Preconditions,
    PropagationPolicy,
};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{ControllersConfig, Error};

/// The finalizer the API server adds for `propagationPolicy: Orphan`.
pub const ORPHAN_FINALIZER: &str = "orphan";
/// The finalizer the API server adds for `propagationPolicy: Foreground`.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Objects deleted because their owners are gone or being deleted in the foreground.
    pub deleted: Vec<String>,
    /// Owner references removed from dependents of orphaning owners.
    pub orphaned: Vec<String>,
    /// Owners whose `orphan` or `foregroundDeletion` finalizer was removed.
    pub released: Vec<String>,
    /// Owners still waiting: dependents that block them are terminating, or a write lost a
    /// race; another sweep follows soon.
    pub unfinished: usize,
}

impl SweepReport {
    /// Whether the sweep changed anything.
    pub fn has_changes(&self) -> bool {
        !(self.deleted.is_empty() && self.orphaned.is_empty() && self.released.is_empty())
    }
}

/// Runs the garbage collector until `shutdown` is cancelled.
pub async fn run(client: kube::Client, config: ControllersConfig, shutdown: CancellationToken) {
    let collector = GarbageCollector::new(client.clone());
    let streams = KINDS.iter().map(|kind| {
        let api = Api::<DynamicObject>::all_with(client.clone(), &api_resource(kind));
        watcher(api, watcher::Config::default())
            .default_backoff()
            .map(|event| match event {
                Ok(watcher::Event::Delete(_) | watcher::Event::InitDone) => true,
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                    o.metadata.deletion_timestamp.is_some()
                        || o.metadata
                            .owner_references
                            .as_ref()
                            .is_some_and(|r| !r.is_empty())
                }
                Ok(watcher::Event::Init) | Err(_) => false,
            })
            .boxed()
    });
    let mut events = futures::stream::select_all(streams);
    // While an owner still waits (on terminating dependents, or after a lost race), sweep
    // again soon, backing off towards the resync period.
    let mut retry: Option<Duration> = None;
    loop {
        let wait = retry.unwrap_or(config.gc_resync);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            event = events.next() => match event {
                Some(true) => {}
                Some(false) => continue,
                None => return,
            },
            _ = tokio::time::sleep(wait) => {}
        }
        // Whatever else arrived meanwhile is covered by this sweep.
        while let Some(Some(_)) = events.next().now_or_never() {}
        let swept = collector.sweep().await;
        let unfinished = match swept {
            Ok(report) => {
                if report.has_changes() {
                    tracing::info!(?report, "garbage collector sweep");
                }
                report.unfinished > 0
            }
            Err(error) => {
                tracing::warn!(%error, "garbage collector sweep failed");
                true
            }
        };
        retry = unfinished.then(|| {
            retry
                .map_or(RETRY_FIRST, |r| r.saturating_mul(2))
                .min(config.gc_resync)
        });
    }
}

/// The first quick re-sweep while work is unfinished.
const RETRY_FIRST: Duration = Duration::from_millis(100);

/// The kube `ApiResource` of a registered kind.
pub fn api_resource(kind: &KindInfo) -> ApiResource {
    ApiResource {
        group: kind.group.to_string(),
        version: kind.version.to_string(),
        api_version: kind.api_version.to_string(),
        kind: kind.kind.to_string(),
        plural: kind.plural.to_string(),
    }
}

/// One object as the collector sees it.
#[derive(Debug, Clone)]
struct Node {
    kind: &'static KindInfo,
    meta: ObjectMeta,
}

impl Node {
    fn uid(&self) -> &str {
        self.meta.uid.as_deref().unwrap_or_default()
    }

    fn name(&self) -> &str {
        self.meta.name.as_deref().unwrap_or_default()
    }

    fn describe(&self) -> String {
        match &self.meta.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind.kind, self.name()),
            None => format!("{} {}", self.kind.kind, self.name()),
        }
    }

    fn owners(&self) -> &[OwnerReference] {
        self.meta.owner_references.as_deref().unwrap_or_default()
    }

    fn has_finalizer(&self, finalizer: &str) -> bool {
        self.meta
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == finalizer)
    }
}

/// Sweeps the cluster for garbage through a client.
#[derive(Clone)]
pub struct GarbageCollector {
    client: kube::Client,
}

impl GarbageCollector {
    /// A collector working through `client`.
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }

    fn api(&self, kind: &KindInfo, namespace: Option<&str>) -> Api<DynamicObject> {
        let resource = api_resource(kind);
        match namespace.filter(|_| kind.namespaced) {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        }
    }

    async fn list_all(&self) -> Result<Vec<Node>, Error> {
        let mut nodes = Vec::new();
        for kind in KINDS.iter() {
            let list = self
                .api(kind, None)
                .list(&ListParams::default())
                .await
                .map_err(Error::api(format!("listing {}", kind.plural)))?;
            nodes.extend(list.items.into_iter().map(|o| Node {
                kind,
                meta: o.metadata,
            }));
        }
        Ok(nodes)
    }

    /// One pass over the whole cluster.
    pub async fn sweep(&self) -> Result<SweepReport, Error> {
        let nodes = self.list_all().await?;
        let uids: HashSet<&str> = nodes.iter().map(Node::uid).collect();
        let mut dependents: HashMap<&str, Vec<&Node>> = HashMap::new();
        for node in &nodes {
            for owner in node.owners() {
                dependents.entry(owner.uid.as_str()).or_default().push(node);
            }
        }
        let mut report = SweepReport::default();
        for owner in nodes.iter().filter(|n| n.meta.deletion_timestamp.is_some()) {
            let deps = dependents
                .get(owner.uid())
                .map(Vec::as_slice)
                .unwrap_or_default();
            if owner.has_finalizer(ORPHAN_FINALIZER) {
                self.orphan(owner, deps, &mut report).await?;
            } else if owner.has_finalizer(FOREGROUND_FINALIZER) {
                self.delete_in_foreground(owner, deps, &mut report).await?;
            }
        }
        for node in &nodes {
            let owners = node.owners();
            if owners.is_empty() || owners.iter().any(|o| uids.contains(o.uid.as_str())) {
                continue;
            }
            if self.any_owner_exists(node).await? {
                continue;
            }
            if self.delete(node, PropagationPolicy::Background).await? {
                report.deleted.push(node.describe());
            }
        }
        Ok(report)
    }

    /// Whether one of `node`'s owners exists (a live read; unknown kinds count as existing,
    /// since their absence cannot be proven).
    async fn any_owner_exists(&self, node: &Node) -> Result<bool, Error> {
        for owner in node.owners() {
            let Some(kind) = registry::lookup(&owner.api_version, &owner.kind) else {
                tracing::debug!(dependent = %node.describe(), owner = %owner.kind, "owner of an unknown kind");
                return Ok(true);
            };
            let api = self.api(kind, node.meta.namespace.as_deref());
            let found = api
                .get_opt(&owner.name)
                .await
                .map_err(Error::api(format!("reading {} {}", owner.kind, owner.name)))?;
            if found.is_some_and(|o| o.metadata.uid.as_deref() == Some(owner.uid.as_str())) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Deletes `node` (uid-preconditioned); false when it was already gone or replaced.
    async fn delete(&self, node: &Node, policy: PropagationPolicy) -> Result<bool, Error> {
        let params = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: Some(Preconditions {
                uid: node.meta.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match self
            .api(node.kind, node.meta.namespace.as_deref())
            .delete(node.name(), &params)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(false),
            Err(e) => Err(Error::api(format!("deleting {}", node.describe()))(e)),
        }
    }

    async fn orphan(
        &self,
        owner: &Node,
        deps: &[&Node],
        report: &mut SweepReport,
    ) -> Result<(), Error> {
        let mut all_done = true;
        for dep in deps {
            let patch = json!({"metadata": {
                "ownerReferences": [{"$patch": "delete", "uid": owner.uid()}],
            }});
            match self.patch(dep, patch).await? {
                Outcome::Done => report.orphaned.push(dep.describe()),
                Outcome::Gone => {}
                Outcome::Conflict => all_done = false,
            }
        }
        // The owner goes only once no dependent points at it any more; otherwise the
        // dependents would look ownerless and be collected.
        if all_done {
            self.release(owner, ORPHAN_FINALIZER, report).await
        } else {
            report.unfinished += 1;
            Ok(())
        }
    }

    async fn delete_in_foreground(
        &self,
        owner: &Node,
        deps: &[&Node],
        report: &mut SweepReport,
    ) -> Result<(), Error> {
        let mut blocking = 0;
        for dep in deps {
            let blocks = dep
                .owners()
                .iter()
                .any(|o| o.uid == owner.uid() && o.block_owner_deletion == Some(true));
            if blocks {
                blocking += 1;
            }
            if dep.meta.deletion_timestamp.is_none()
                && self.delete(dep, PropagationPolicy::Foreground).await?
            {
                report.deleted.push(dep.describe());
            }
        }
        if blocking == 0 {
            self.release(owner, FOREGROUND_FINALIZER, report).await?;
        } else {
            report.unfinished += 1;
        }
        Ok(())
    }

    /// Removes `finalizer` from `owner` (the API server removes the owner with its last).
    async fn release(
        &self,
        owner: &Node,
        finalizer: &str,
        report: &mut SweepReport,
    ) -> Result<(), Error> {
        let patch = json!({"metadata": {
            "$deleteFromPrimitiveList/finalizers": [finalizer],
        }});
        match self.patch(owner, patch).await? {
            Outcome::Done => report.released.push(owner.describe()),
            Outcome::Gone => {}
            Outcome::Conflict => report.unfinished += 1,
        }
        Ok(())
    }

    /// A strategic merge patch that removes one entry, so it needs no resourceVersion pin
    /// and cannot undo a concurrent change to the rest of the list.
    async fn patch(&self, node: &Node, patch: serde_json::Value) -> Result<Outcome, Error> {
        match self
            .api(node.kind, node.meta.namespace.as_deref())
            .patch(
                node.name(),
                &PatchParams::default(),
                &Patch::Strategic(patch),
            )
            .await
        {
            Ok(_) => Ok(Outcome::Done),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(Outcome::Gone),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Outcome::Conflict),
            Err(e) => Err(Error::api(format!("updating {}", node.describe()))(e)),
        }
    }
}

/// How a pinned write ended.
enum Outcome {
    Done,
    /// The object is gone.
    Gone,
    /// The write was refused as conflicting; the next sweep sees the new state.
    Conflict,
}
