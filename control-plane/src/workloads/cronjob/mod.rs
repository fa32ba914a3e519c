//! The batch/v1 CronJob controller: creates a Job `<cronjob>-<minutes since the epoch>` at
//! each scheduled time (read in `spec.timeZone`), honouring `concurrencyPolicy`,
//! `startingDeadlineSeconds` and `suspend`; keeps `successfulJobsHistoryLimit` /
//! `failedJobsHistoryLimit` finished Jobs; writes `lastScheduleTime`,
//! `lastSuccessfulTime` and `active`. The schedule math is in [`plan`], driven by the
//! controllers' [`Clock`](crate::workloads::Clock).

pub mod plan;
pub mod schedule;

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::error::{ApiContext, is_already_exists};
use super::job::status::{finished_at, has_condition, is_finished};
use super::owned::{background, delete, fresh, list_owned, owner_ref};
use super::runner::{controller_of, drive};
use super::{Context, Error};
use crate::controllers::work_queue::WorkQueue;
use crate::events::EventType;
use plan::{MAX_MISSED_WARNING, decide, schedule_of};

/// Annotation on each Job with the time it was scheduled for.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// Runs the CronJob controller until `shutdown` is cancelled.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let queue = WorkQueue::new("cronjob", ctx.config.metrics.as_ref());
    let controller = queue
        .controller(
            Api::<CronJob>::all(client.clone()),
            watcher::Config::default(),
        )
        .watches(
            Api::<Job>::all(client),
            watcher::Config::default(),
            queue.mapper(controller_of::<CronJob, Job>),
        );
    drive(queue, controller, reconcile, ctx, shutdown).await;
}

fn reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..ObjectReference::default()
    }
}

fn started(job: &Job) -> Option<Timestamp> {
    job.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// One step of a CronJob: history clean-up, at most one run started, the status.
pub async fn reconcile(cj: Arc<CronJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(cj) = fresh(&ctx.client, cj.as_ref()).await? else {
        return Ok(Action::await_change());
    };
    if cj.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let client = &ctx.client;
    let ns = cj.metadata.namespace.clone().unwrap_or_default();
    let name = cj.metadata.name.clone().unwrap_or_default();
    let uid = cj.metadata.uid.clone().unwrap_or_default();
    let object = format!("{ns}/{name}");
    let now = ctx.now();
    let mut jobs: Vec<Job> = list_owned(client, &ns, None, &uid).await?;
    jobs.sort_by_key(started);

    // History: keep the newest N succeeded and M failed Jobs.
    for (type_, limit) in [
        (
            "Complete",
            cj.spec.successful_jobs_history_limit.unwrap_or(3),
        ),
        ("Failed", cj.spec.failed_jobs_history_limit.unwrap_or(1)),
    ] {
        let done: Vec<&Job> = jobs.iter().filter(|j| has_condition(j, type_)).collect();
        let excess = done.len().saturating_sub(limit.max(0) as usize);
        for job in done.into_iter().take(excess) {
            delete_job(&ctx, &cj, job).await?;
        }
    }
    let old = cj.status.clone().unwrap_or_default();
    // Runs the status still lists as active that have finished since.
    for job in jobs.iter().filter(|j| is_finished(j)) {
        let was_active = old
            .active
            .iter()
            .flatten()
            .any(|r| r.uid.is_some() && r.uid == job.metadata.uid);
        if was_active {
            let state = if has_condition(job, "Complete") {
                "Complete"
            } else {
                "Failed"
            };
            let message = format!(
                "Saw completed job: {}, status: {state}",
                job.metadata.name.as_deref().unwrap_or_default()
            );
            ctx.events
                .cronjob
                .publish(&cj, EventType::Normal, "SawCompletedJob", &message)
                .await;
        }
    }
    // The newest scheduled time of the Jobs themselves too: the cached CronJob may predate
    // the status write that recorded it.
    let mut last_schedule = jobs
        .iter()
        .filter_map(|j| j.metadata.annotations.as_ref()?.get(SCHEDULED_TIMESTAMP))
        .filter_map(|t| t.parse::<Timestamp>().ok())
        .chain(old.last_schedule_time.as_ref().map(|t| t.0))
        .max();
    let last_success = jobs
        .iter()
        .filter(|j| has_condition(j, "Complete"))
        .filter_map(finished_at)
        .chain(old.last_successful_time.as_ref().map(|t| t.0))
        .max();
    let mut active: Vec<ObjectReference> = jobs
        .iter()
        .filter(|j| !is_finished(j))
        .map(reference)
        .collect();

    let mut requeue = None;
    if cj.spec.suspend != Some(true) {
        match schedule_of(&cj) {
            Err((field, message)) => {
                tracing::warn!(cronjob = %object, "{field}: {message}");
                let message = format!("invalid schedule: {field}: {message}");
                ctx.events
                    .cronjob
                    .publish(&cj, EventType::Warning, "InvalidSchedule", &message)
                    .await;
            }
            Ok((schedule, tz)) => {
                let decision = decide(&cj, &schedule, &tz, &jobs, now);
                if decision.missed > MAX_MISSED_WARNING {
                    tracing::warn!(
                        cronjob = %object,
                        missed = decision.missed,
                        "too many missed start times; starting the latest (set or check spec.startingDeadlineSeconds)"
                    );
                }
                if decision.forbidden {
                    tracing::debug!(cronjob = %object, "run skipped: one is still active and concurrencyPolicy is Forbid");
                    ctx.events
                        .cronjob
                        .publish(
                            &cj,
                            EventType::Normal,
                            "JobAlreadyActive",
                            "Not starting job because prior execution is running and concurrency policy is Forbid",
                        )
                        .await;
                }
                if let Some(at) = decision.too_late {
                    let message = format!("Missed scheduled time to start a job: {at}");
                    ctx.events
                        .cronjob
                        .publish(&cj, EventType::Warning, "MissSchedule", &message)
                        .await;
                }
                if decision.replace_active {
                    for job in jobs.iter().filter(|j| !is_finished(j)) {
                        delete_job(&ctx, &cj, job).await?;
                    }
                    active.clear();
                }
                if let Some((job_name, at)) = decision.start {
                    let job = create_job(&cj, &ctx, &job_name, at).await?;
                    active.push(reference(&job));
                    last_schedule = last_schedule.max(Some(at));
                }
                requeue = decision.next.map(|next| {
                    crate::workloads::job::until(now, next) + Duration::from_millis(100)
                });
            }
        }
    }

    let new = CronJobStatus {
        active: (!active.is_empty()).then_some(active),
        last_schedule_time: last_schedule.map(Time),
        last_successful_time: last_success.map(Time),
    };
    if new != old {
        let mut value = serde_json::to_value(&new).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            map.entry("active").or_insert(serde_json::Value::Null);
        }
        Api::<CronJob>::namespaced(client.clone(), &ns)
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&json!({ "status": value })),
            )
            .await
            .ctx(|| format!("writing the status of cronjob {object}"))?;
    }
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// Deletes one of the CronJob's Jobs (background) and records it.
async fn delete_job(ctx: &Context, cj: &CronJob, job: &Job) -> Result<(), Error> {
    delete(&ctx.client, job, &background()).await?;
    let message = format!(
        "Deleted job {}",
        job.metadata.name.as_deref().unwrap_or_default()
    );
    ctx.events
        .cronjob
        .publish(cj, EventType::Normal, "SuccessfulDelete", &message)
        .await;
    Ok(())
}

/// Creates the Job for the run scheduled at `at`; an existing one of that name is reused.
async fn create_job(cj: &CronJob, ctx: &Context, name: &str, at: Timestamp) -> Result<Job, Error> {
    let ns = cj.metadata.namespace.clone().unwrap_or_default();
    let template = &cj.spec.job_template;
    let meta = template.metadata.clone().unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP.into(), at.to_string());
    let job = Job {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(ns.clone()),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![owner_ref(cj)]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    };
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    match jobs.create(&PostParams::default(), &job).await {
        Ok(job) => {
            ctx.events
                .cronjob
                .publish(
                    cj,
                    EventType::Normal,
                    "SuccessfulCreate",
                    &format!("Created job {name}"),
                )
                .await;
            Ok(job)
        }
        Err(e) if is_already_exists(&e) => jobs
            .get(name)
            .await
            .ctx(|| format!("reading job {ns}/{name}")),
        Err(e) => Err(e).ctx(|| format!("creating job {ns}/{name}")),
    }
}
