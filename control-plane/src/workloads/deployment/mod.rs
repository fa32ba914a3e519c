//! The apps/v1 Deployment controller: one ReplicaSet per pod template, named
//! `<deployment>-<pod-template-hash>`, rolled by `RollingUpdate` (`maxSurge`,
//! `maxUnavailable`) or `Recreate`.
//!
//! Each reconcile lists the Deployment's ReplicaSets and pods fresh from the API. The
//! ReplicaSet whose template equals the Deployment's (ignoring the hash label) is the new
//! one; applying an older template again makes its old ReplicaSet the new one (a
//! rollback), with a fresh `deployment.kubernetes.io/revision`. Availability is counted
//! from pods, capped at each ReplicaSet's size, so a ReplicaSet status that lags a
//! scale-down cannot make the controller remove too much.

pub mod hash;
pub mod rolling;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::error::{ApiContext, is_already_exists};
use super::owned::{background, delete, fresh, is_controlled_by, list_owned, owner_ref};
use super::runner::{controller_of, drive};
use super::selector::{self, is_active, is_available, is_ready};
use super::{Context, Error};
use crate::controllers::work_queue::WorkQueue;
use crate::events::EventType;
use hash::{POD_TEMPLATE_HASH, same_template, template_hash};
use rolling::{RsCount, new_rs_target, old_rs_targets, surge_and_unavailable};

/// Annotation with the rollout revision, on the Deployment and its ReplicaSets.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Default `spec.revisionHistoryLimit`.
pub const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;

/// Runs the Deployment controller until `shutdown` is cancelled.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let queue = WorkQueue::new("deployment", ctx.config.metrics.as_ref());
    let controller = queue
        .controller(
            Api::<Deployment>::all(client.clone()),
            watcher::Config::default(),
        )
        .watches(
            Api::<ReplicaSet>::all(client),
            watcher::Config::default(),
            queue.mapper(controller_of::<Deployment, ReplicaSet>),
        );
    drive(queue, controller, reconcile, ctx, shutdown).await;
}

fn revision_of(rs: &ReplicaSet) -> i64 {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.replicas.unwrap_or(0)
}

fn rs_uid(rs: &ReplicaSet) -> &str {
    rs.metadata.uid.as_deref().unwrap_or_default()
}

/// One step of a Deployment's rollout, then its status.
pub async fn reconcile(deploy: Arc<Deployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(deploy) = fresh(&ctx.client, deploy.as_ref()).await? else {
        return Ok(Action::await_change());
    };
    if deploy.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let spec = &deploy.spec;
    let client = &ctx.client;
    let ns = deploy.metadata.namespace.clone().unwrap_or_default();
    let name = deploy.metadata.name.clone().unwrap_or_default();
    let uid = deploy.metadata.uid.clone().unwrap_or_default();
    let object = format!("{ns}/{name}");
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let now = ctx.now();
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);

    let mut rss: Vec<ReplicaSet> = list_owned(client, &ns, Some(&spec.selector), &uid).await?;
    rss.sort_by_key(|rs| rs.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let pods: Vec<Pod> = Api::<Pod>::namespaced(client.clone(), &ns)
        .list(&ListParams::default().labels(&selector::to_query(&spec.selector)))
        .await
        .ctx(|| format!("listing the pods of deployment {object}"))?
        .items
        .into_iter()
        .filter(is_active)
        .collect();
    let count_of = |rs: &ReplicaSet| {
        let owned = pods.iter().filter(|p| is_controlled_by(*p, rs_uid(rs)));
        let available = owned.filter(|p| is_available(p, min_ready, now)).count() as i32;
        RsCount {
            replicas: rs_replicas(rs),
            available: available.min(rs_replicas(rs)),
        }
    };

    let new_index = rss.iter().position(|rs| {
        rs.spec
            .template
            .as_ref()
            .is_some_and(|t| same_template(t, &spec.template))
    });
    let max_old_revision = rss
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != new_index)
        .map(|(_, rs)| revision_of(rs))
        .max()
        .unwrap_or(0);
    let revision = max_old_revision + 1;
    let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
    let (max_surge, max_unavailable) = if recreate {
        (0, replicas)
    } else {
        surge_and_unavailable(
            replicas,
            spec.strategy
                .as_ref()
                .and_then(|s| s.rolling_update.as_ref()),
        )
        .map_err(|message| {
            let (field, message) = message
                .split_once(": ")
                .unwrap_or(("spec.strategy", &message));
            Error::InvalidSpec {
                object: object.clone(),
                field: field.into(),
                message: message.into(),
            }
        })?
    };
    let paused = spec.paused == Some(true);

    // Target sizes: index into `rss` -> replicas (and the new ReplicaSet's, if to be created).
    let mut targets: HashMap<usize, i32> = HashMap::new();
    let mut create_new: Option<i32> = None;
    if !paused {
        let olds: Vec<usize> = (0..rss.len()).filter(|i| Some(*i) != new_index).collect();
        if recreate {
            let old_pods = olds
                .iter()
                .any(|i| pods.iter().any(|p| is_controlled_by(p, rs_uid(&rss[*i]))));
            for i in &olds {
                targets.insert(*i, 0);
            }
            if !old_pods && olds.iter().all(|i| rs_replicas(&rss[*i]) == 0) {
                match new_index {
                    Some(i) => {
                        targets.insert(i, replicas);
                    }
                    None => create_new = Some(replicas),
                }
            }
        } else {
            let total: i32 = rss.iter().map(rs_replicas).sum();
            let new_count = new_index.map(|i| count_of(&rss[i])).unwrap_or(RsCount {
                replicas: 0,
                available: 0,
            });
            let new_target = new_rs_target(replicas, max_surge, total, new_count.replicas);
            match new_index {
                Some(i) => {
                    targets.insert(i, new_target);
                }
                None => create_new = Some(new_target),
            }
            let old_counts: Vec<RsCount> = olds.iter().map(|i| count_of(&rss[*i])).collect();
            let old_targets = old_rs_targets(replicas, max_unavailable, new_count, &old_counts);
            for (i, t) in olds.iter().zip(old_targets) {
                targets.insert(*i, t);
            }
        }
    }

    // Apply: resize ReplicaSets, renumber a reused one, create the new one.
    for (i, rs) in rss.iter_mut().enumerate() {
        let mut patch = serde_json::Map::new();
        let mut scaled = None;
        if let Some(target) = targets.get(&i)
            && *target != rs_replicas(rs)
        {
            patch.insert("spec".into(), json!({"replicas": target}));
            scaled = Some((rs_replicas(rs), *target));
        }
        if Some(i) == new_index && revision_of(rs) < revision {
            patch.insert(
                "metadata".into(),
                json!({"annotations": {REVISION: revision.to_string()}}),
            );
        }
        if !patch.is_empty() {
            let rs_name = rs.metadata.name.clone().unwrap_or_default();
            *rs = rs_api
                .patch(
                    &rs_name,
                    &PatchParams::default(),
                    &Patch::Merge(&serde_json::Value::Object(patch)),
                )
                .await
                .ctx(|| format!("scaling replicaset {ns}/{rs_name} of deployment {object}"))?;
            if let Some((from, to)) = scaled {
                scaling_event(&ctx, &deploy, &rs_name, from, to).await;
            }
        }
    }
    let mut new_rs = new_index.map(|i| rss[i].clone());
    if let Some(size) = create_new {
        match create_replica_set(&deploy, &rs_api, size, revision).await? {
            Some(rs) => {
                let rs_name = rs.metadata.name.clone().unwrap_or_default();
                scaling_event(&ctx, &deploy, &rs_name, 0, size).await;
                new_rs = Some(rs);
            }
            None => return Ok(Action::requeue(std::time::Duration::ZERO)),
        }
    }
    if let Some(new_rs) = &new_rs {
        let current = deploy
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION));
        let want = revision_of(new_rs).to_string();
        if current != Some(&want) {
            Api::<Deployment>::namespaced(client.clone(), &ns)
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"metadata": {"annotations": {REVISION: want}}})),
                )
                .await
                .ctx(|| format!("writing the revision of deployment {object}"))?;
        }
    }
    clean_up_history(
        &ctx,
        spec.revision_history_limit,
        &rss,
        new_rs.as_ref(),
        &pods,
    )
    .await?;
    write_status(
        &deploy,
        &ctx,
        &pods,
        new_rs.as_ref(),
        &rss,
        max_unavailable,
        now,
    )
    .await?;
    Ok(Action::await_change())
}

/// Records Kubernetes' `ScalingReplicaSet` event for a resize of `rs_name`.
async fn scaling_event(ctx: &Context, deploy: &Deployment, rs_name: &str, from: i32, to: i32) {
    let direction = if to > from { "up" } else { "down" };
    let message = format!("Scaled {direction} replica set {rs_name} from {from} to {to}");
    ctx.events
        .deployment
        .publish(deploy, EventType::Normal, "ScalingReplicaSet", &message)
        .await;
}

/// Creates the ReplicaSet for the Deployment's current template. `None` after a hash
/// collision (the collision count is bumped; the next reconcile uses a new name).
async fn create_replica_set(
    deploy: &Deployment,
    rs_api: &Api<ReplicaSet>,
    replicas: i32,
    revision: i64,
) -> Result<Option<ReplicaSet>, Error> {
    let spec = deploy.spec.clone();
    let ns = deploy.metadata.namespace.clone().unwrap_or_default();
    let name = deploy.metadata.name.clone().unwrap_or_default();
    let collisions = deploy
        .status
        .as_ref()
        .and_then(|s| s.collision_count)
        .unwrap_or(0);
    let hash = template_hash(&spec.template, collisions);
    let mut template = spec.template.clone();
    let meta = template.metadata.get_or_insert_default();
    meta.labels
        .get_or_insert_default()
        .insert(POD_TEMPLATE_HASH.into(), hash.clone());
    let labels = meta.labels.clone();
    let mut selector = spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_default()
        .insert(POD_TEMPLATE_HASH.into(), hash.clone());
    let annotations: BTreeMap<String, String> = [
        (REVISION.to_string(), revision.to_string()),
        (
            "deployment.kubernetes.io/desired-replicas".to_string(),
            spec.replicas.unwrap_or(1).to_string(),
        ),
    ]
    .into();
    let rs_name = format!("{name}-{hash}");
    let rs = ReplicaSet {
        metadata: ObjectMeta {
            name: Some(rs_name.clone()),
            namespace: Some(ns.clone()),
            labels,
            annotations: Some(annotations),
            owner_references: Some(vec![owner_ref(deploy)]),
            ..ObjectMeta::default()
        },
        spec: ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        },
        status: None,
    };
    match rs_api.create(&PostParams::default(), &rs).await {
        Ok(rs) => Ok(Some(rs)),
        Err(e) if is_already_exists(&e) => {
            let existing = rs_api
                .get(&rs_name)
                .await
                .ctx(|| format!("reading replicaset {ns}/{rs_name}"))?;
            let ours = existing
                .spec
                .template
                .as_ref()
                .is_some_and(|t| same_template(t, &spec.template))
                && is_controlled_by(
                    &existing,
                    deploy.metadata.uid.as_deref().unwrap_or_default(),
                );
            if ours {
                return Ok(Some(existing));
            }
            Api::<Deployment>::namespaced(rs_api.clone().into_client(), &ns)
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"status": {"collisionCount": collisions + 1}})),
                )
                .await
                .ctx(|| format!("recording a hash collision of deployment {ns}/{name}"))?;
            Ok(None)
        }
        Err(e) => Err(e).ctx(|| format!("creating replicaset {ns}/{rs_name}")),
    }
}

/// Deletes the oldest empty old ReplicaSets beyond `revisionHistoryLimit`.
async fn clean_up_history(
    ctx: &Context,
    limit: Option<i32>,
    rss: &[ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    pods: &[Pod],
) -> Result<(), Error> {
    let limit = limit.unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT).max(0) as usize;
    let mut empty: Vec<&ReplicaSet> = rss
        .iter()
        .filter(|rs| new_rs.is_none_or(|n| n.metadata.uid != rs.metadata.uid))
        .filter(|rs| rs_replicas(rs) == 0)
        .filter(|rs| !pods.iter().any(|p| is_controlled_by(p, rs_uid(rs))))
        .collect();
    if empty.len() <= limit {
        return Ok(());
    }
    empty.sort_by_key(|rs| revision_of(rs));
    let excess = empty.len() - limit;
    for rs in empty.into_iter().take(excess) {
        delete(&ctx.client, rs, &background()).await?;
    }
    Ok(())
}

fn condition(
    old: Option<&DeploymentCondition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    let status = if status { "True" } else { "False" };
    let unchanged = old.is_some_and(|c| {
        c.status.as_deref() == Some(status) && c.reason.as_deref() == Some(reason)
    });
    DeploymentCondition {
        type_: Some(type_.into()),
        status: Some(status.into()),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: if unchanged {
            old.and_then(|c| c.last_update_time.clone())
        } else {
            Some(Time(now))
        },
        last_transition_time: match old {
            Some(c) if c.status.as_deref() == Some(status) => c.last_transition_time.clone(),
            _ => Some(Time(now)),
        },
    }
}

async fn write_status(
    deploy: &Deployment,
    ctx: &Context,
    pods: &[Pod],
    new_rs: Option<&ReplicaSet>,
    rss: &[ReplicaSet],
    max_unavailable: i32,
    now: Timestamp,
) -> Result<(), Error> {
    let spec = deploy.spec.clone();
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let owned: Vec<&Pod> = pods
        .iter()
        .filter(|p| {
            rss.iter()
                .chain(new_rs)
                .any(|rs| is_controlled_by(*p, rs_uid(rs)))
        })
        .collect();
    let updated = new_rs.map_or(0, |rs| {
        owned
            .iter()
            .filter(|p| is_controlled_by(**p, rs_uid(rs)))
            .count() as i32
    });
    let ready = owned.iter().filter(|p| is_ready(p)).count() as i32;
    let available = owned
        .iter()
        .filter(|p| is_available(p, min_ready, now))
        .count() as i32;
    let total = owned.len() as i32;
    let old = deploy.status.clone().unwrap_or_default();
    let find = |t: &str| {
        old.conditions
            .iter()
            .flatten()
            .find(|c| c.type_.as_deref() == Some(t))
    };
    let complete = updated == replicas && total == replicas && available == replicas;
    let min_available = replicas - max_unavailable;
    let conditions = vec![
        condition(
            find("Available"),
            "Available",
            available >= min_available,
            if available >= min_available {
                "MinimumReplicasAvailable"
            } else {
                "MinimumReplicasUnavailable"
            },
            format!(
                "{available} of {replicas} replicas available (at least {min_available} needed)"
            ),
            now,
        ),
        condition(
            find("Progressing"),
            "Progressing",
            true,
            if complete {
                "NewReplicaSetAvailable"
            } else {
                "ReplicaSetUpdated"
            },
            match new_rs.and_then(|rs| rs.metadata.name.as_deref()) {
                Some(n) if complete => format!("ReplicaSet {n:?} has successfully progressed"),
                Some(n) => format!("ReplicaSet {n:?} is progressing"),
                None => "waiting for the old pods to stop".to_string(),
            },
            now,
        ),
    ];
    let new = DeploymentStatus {
        replicas: Some(total),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        unavailable_replicas: Some((replicas - available).max(0)),
        observed_generation: deploy.metadata.generation,
        conditions: Some(conditions),
        ..old.clone()
    };
    if new != old {
        let ns = deploy.metadata.namespace.clone().unwrap_or_default();
        let name = deploy.metadata.name.clone().unwrap_or_default();
        Api::<Deployment>::namespaced(ctx.client.clone(), &ns)
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&json!({ "status": new })),
            )
            .await
            .ctx(|| format!("writing the status of deployment {ns}/{name}"))?;
    }
    Ok(())
}
