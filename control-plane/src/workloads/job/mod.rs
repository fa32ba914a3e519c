//! The batch/v1 Job controller: runs pods until `completions` of them succeed (NonIndexed),
//! or until every index in `0..completions` has a succeeded pod (Indexed).
//!
//! Each reconcile lists the Job's pods fresh from the API and takes one step: fail the Job
//! (backoff limit, deadline, `podFailurePolicy` FailJob), complete it, suspend it (active
//! pods deleted), or create/delete pods towards `parallelism` — failed pods are re-created
//! only after a back-off of `base * 2^(failures-1)`. Then it writes the status. Finished
//! pods are kept (they are the failure and success counts) until the Job is deleted;
//! `ttlSecondsAfterFinished` deletes the Job with background propagation.

pub mod failure_policy;
pub mod pods;
pub mod status;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{Job, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::error::ApiContext;
use super::owned::{background, create_pod, delete, fresh, list_owned};
use super::runner::{backoff, controller_of, drive};
use super::selector::{self, is_active, is_ready};
use super::{Context, Error};
use crate::controllers::work_queue::WorkQueue;
use crate::events::EventType;
use failure_policy::{Verdict, judge};
use pods::{CONTROLLER_UID, completion_index, job_labels, new_pod};
use status::{finished_at, format_indexes, has_condition, is_finished, set_condition};

/// Default `spec.backoffLimit`.
pub const DEFAULT_BACKOFF_LIMIT: i32 = 6;

/// Runs the Job controller until `shutdown` is cancelled.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let queue = WorkQueue::new("job", ctx.config.metrics.as_ref());
    let controller = queue
        .controller(Api::<Job>::all(client.clone()), watcher::Config::default())
        .watches(
            Api::<Pod>::all(client),
            watcher::Config::default(),
            queue.mapper(controller_of::<Job, Pod>),
        );
    drive(queue, controller, reconcile, ctx, shutdown).await;
}

/// Time from `now` until `at` (zero when past).
pub(crate) fn until(now: Timestamp, at: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)
}

fn plus_secs(t: Timestamp, secs: i64) -> Timestamp {
    t.saturating_add(SignedDuration::from_secs(secs))
        .unwrap_or(Timestamp::MAX)
}

fn min_requeue(a: Option<Duration>, b: Duration) -> Option<Duration> {
    Some(a.map_or(b, |a| a.min(b)))
}

/// One step of a Job towards its desired state.
pub async fn reconcile(job: Arc<Job>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(job) = fresh(&ctx.client, job.as_ref()).await? else {
        return Ok(Action::await_change());
    };
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(spec) = job.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let client = &ctx.client;
    let ns = job.metadata.namespace.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);

    // The API server generates the selector in Kubernetes; here the controller writes it on
    // first sight, before any pod exists.
    if spec.selector.is_none() && spec.manual_selector != Some(true) {
        let patch = json!({"spec": {
            "selector": {"matchLabels": {CONTROLLER_UID: uid}},
            "template": {"metadata": {"labels": job_labels(&job)}},
        }});
        jobs.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .ctx(|| format!("writing the generated selector of job {ns}/{name}"))?;
        return Ok(Action::await_change());
    }
    let now = ctx.now();
    if is_finished(&job) {
        return expire(&job, &ctx, now).await;
    }
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let completions = spec.completions;
    if indexed && completions.is_none() {
        tracing::warn!(job = %format!("{ns}/{name}"), "spec.completions: required when completionMode is Indexed");
        return Ok(Action::await_change());
    }
    let parallelism = spec.parallelism.unwrap_or(1).max(0) as usize;
    let backoff_limit = spec.backoff_limit.unwrap_or(DEFAULT_BACKOFF_LIMIT);
    let suspended = spec.suspend == Some(true);

    let pods: Vec<Pod> = list_owned(client, &ns, spec.selector.as_ref(), &uid).await?;
    let active: Vec<&Pod> = pods.iter().filter(|p| is_active(p)).collect();
    let mut failed = 0i32;
    let mut fail_job: Option<String> = None;
    let mut last_failure: Option<Timestamp> = None;
    for pod in pods.iter().filter(|p| selector::phase(p) == "Failed") {
        match judge(spec.pod_failure_policy.as_ref(), pod) {
            Verdict::Count => {
                failed += 1;
                last_failure = last_failure.max(selector::finished_at(pod));
            }
            Verdict::Ignore => {}
            Verdict::FailJob(message) => {
                failed += 1;
                fail_job.get_or_insert(message);
            }
        }
    }
    let succeeded_pods = pods.iter().filter(|p| selector::phase(p) == "Succeeded");
    let completions_n = completions.unwrap_or(0);
    let succeeded_indexes: BTreeSet<i32> = if indexed {
        succeeded_pods
            .filter_map(completion_index)
            .filter(|i| (0..completions_n).contains(i))
            .collect()
    } else {
        BTreeSet::new()
    };
    let succeeded = if indexed {
        succeeded_indexes.len() as i32
    } else {
        pods.iter()
            .filter(|p| selector::phase(p) == "Succeeded")
            .count() as i32
    };

    let old = job.status.clone().unwrap_or_default();
    let mut conditions = old.conditions.clone().unwrap_or_default();
    let mut start_time = old.start_time.as_ref().map(|t| t.0);
    let mut completion_time = None;

    let failure: Option<(&str, String)> = if let Some(message) = fail_job {
        Some(("PodFailurePolicy", message))
    } else if failed > backoff_limit {
        Some((
            "BackoffLimitExceeded",
            format!("Job has reached the specified backoff limit ({backoff_limit})"),
        ))
    } else if let (Some(deadline), Some(start), false) =
        (spec.active_deadline_seconds, start_time, suspended)
        && now >= plus_secs(start, deadline)
    {
        Some((
            "DeadlineExceeded",
            format!("Job was active longer than spec.activeDeadlineSeconds ({deadline} s)"),
        ))
    } else {
        None
    };
    let complete = failure.is_none()
        && match completions {
            Some(c) => succeeded >= c,
            None => succeeded > 0 && active.is_empty(),
        };

    let mut requeue: Option<Duration> = None;
    let mut active_count = active.len() as i32;
    let mut ready = active.iter().filter(|p| is_ready(p)).count() as i32;
    let events = &ctx.events.job;
    if failure.is_some() || complete || suspended {
        for pod in &active {
            delete_pod(ctx.as_ref(), &job, pod).await?;
        }
        active_count = 0;
        ready = 0;
        if let Some((reason, message)) = &failure {
            set_condition(&mut conditions, "Failed", "True", reason, message, now);
            events
                .publish(&job, EventType::Warning, reason, message)
                .await;
        } else if complete {
            events
                .publish(&job, EventType::Normal, "Completed", "Job completed")
                .await;
            set_condition(
                &mut conditions,
                "Complete",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                now,
            );
            completion_time = Some(now);
        } else {
            if !has_condition(&job, "Suspended") {
                events
                    .publish(&job, EventType::Normal, "Suspended", "Job suspended")
                    .await;
            }
            set_condition(
                &mut conditions,
                "Suspended",
                "True",
                "JobSuspended",
                "Job suspended",
                now,
            );
            start_time = None;
        }
    } else {
        if has_condition(&job, "Suspended") {
            events
                .publish(&job, EventType::Normal, "Resumed", "Job resumed")
                .await;
            set_condition(
                &mut conditions,
                "Suspended",
                "False",
                "JobResumed",
                "Job resumed",
                now,
            );
        }
        let start = *start_time.get_or_insert(now);
        if let Some(deadline) = spec.active_deadline_seconds {
            requeue = min_requeue(requeue, until(now, plus_secs(start, deadline)));
        }
        // Which pods to delete and how many (or which indexes) to create.
        let mut excess: Vec<&Pod> = Vec::new();
        let mut to_create: Vec<Option<i32>> = Vec::new();
        if indexed {
            let mut running = BTreeSet::new();
            for pod in &active {
                match completion_index(pod) {
                    Some(i)
                        if (0..completions_n).contains(&i)
                            && !succeeded_indexes.contains(&i)
                            && running.insert(i) => {}
                    _ => excess.push(pod),
                }
            }
            let room = parallelism.saturating_sub(running.len());
            to_create = (0..completions_n)
                .filter(|i| !succeeded_indexes.contains(i) && !running.contains(i))
                .take(room)
                .map(Some)
                .collect();
        } else {
            let want = match completions {
                Some(c) => parallelism.min((c - succeeded).max(0) as usize),
                None if succeeded > 0 => 0,
                None => parallelism,
            };
            if active.len() > want {
                let mut by_readiness = active.clone();
                by_readiness.sort_by_key(|p| is_ready(p));
                excess = by_readiness.into_iter().take(active.len() - want).collect();
            } else {
                to_create = vec![None; want - active.len()];
            }
        }
        for pod in &excess {
            delete_pod(ctx.as_ref(), &job, pod).await?;
            active_count -= 1;
            ready -= i32::from(is_ready(pod));
        }
        let wait = match last_failure {
            Some(at) if failed > 0 => {
                let delay = backoff(
                    ctx.config.job_backoff_base,
                    ctx.config.job_backoff_max,
                    failed as u32,
                );
                let delay = SignedDuration::try_from(delay).unwrap_or(SignedDuration::MAX);
                until(now, at.saturating_add(delay).unwrap_or(Timestamp::MAX))
            }
            _ => Duration::ZERO,
        };
        if !to_create.is_empty() && !wait.is_zero() {
            requeue = min_requeue(requeue, wait);
        } else {
            for index in to_create {
                let pod = create_pod(client, &new_pod(&job, index)).await?;
                let message = format!("Created pod: {}", pod.metadata.name.unwrap_or_default());
                events
                    .publish(&job, EventType::Normal, "SuccessfulCreate", &message)
                    .await;
                active_count += 1;
            }
        }
    }

    let new = JobStatus {
        active: Some(active_count),
        ready: Some(ready),
        succeeded: Some(succeeded),
        failed: Some(failed),
        start_time: start_time.map(Time),
        completion_time: completion_time.map(Time).or(old.completion_time.clone()),
        completed_indexes: indexed
            .then(|| format_indexes(&succeeded_indexes.iter().copied().collect::<Vec<_>>())),
        conditions: Some(conditions),
        ..old.clone()
    };
    if new != old {
        let mut value = serde_json::to_value(&new).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut value {
            // A merge patch keeps fields it does not mention: clear the ones now unset.
            for field in ["startTime", "completionTime", "completedIndexes"] {
                map.entry(field).or_insert(Value::Null);
            }
        }
        jobs.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "status": value })),
        )
        .await
        .ctx(|| format!("writing the status of job {ns}/{name}"))?;
    }
    if failure.is_some() || complete {
        if let Some(ttl) = spec.ttl_seconds_after_finished {
            return Ok(Action::requeue(until(now, plus_secs(now, ttl.into()))));
        }
        return Ok(Action::await_change());
    }
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// Deletes one of the Job's pods and records it.
async fn delete_pod(ctx: &Context, job: &Job, pod: &Pod) -> Result<(), Error> {
    delete(&ctx.client, pod, &Default::default()).await?;
    let message = format!(
        "Deleted pod: {}",
        pod.metadata.name.as_deref().unwrap_or_default()
    );
    ctx.events
        .job
        .publish(job, EventType::Normal, "SuccessfulDelete", &message)
        .await;
    Ok(())
}

/// `ttlSecondsAfterFinished`: deletes a finished Job once its time is up.
async fn expire(job: &Job, ctx: &Context, now: Timestamp) -> Result<Action, Error> {
    let ttl = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished);
    let (Some(ttl), Some(finished)) = (ttl, finished_at(job)) else {
        return Ok(Action::await_change());
    };
    let expiry = plus_secs(finished, ttl.into());
    if now < expiry {
        return Ok(Action::requeue(until(now, expiry)));
    }
    delete(&ctx.client, job, &background()).await?;
    Ok(Action::await_change())
}
