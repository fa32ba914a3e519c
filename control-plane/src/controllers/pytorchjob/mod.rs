//! The `PyTorchJob` controller: runs each Kubeflow `PyTorchJob` (`kubeflow.org/v1`) as a
//! coxswain `TrainingJob`.
//!
//! For a job `<job>` it keeps a `TrainingJob` `<job>` made by
//! [`coxswain_api::kubeflow::to_training_job`] (groups `master` and `worker`, Kubeflow's
//! env: `MASTER_ADDR=<job>-master-0`, `RANK` 0 for the master and 1..N for the workers,
//! `WORLD_SIZE`) and one headless Service per replica ([`render`]), all owned by the job;
//! the TrainingJob controller does the rest. The training job's status is mirrored back
//! into the PyTorchJob's in Kubeflow's shape ([`status`]); `runPolicy.suspend` is passed on.
//!
//! `runPolicy.ttlSecondsAfterFinished` is this controller's: that long after the job's
//! `completionTime` it deletes the PyTorchJob, and the garbage collector its training job,
//! services and pods (as Kubeflow deletes the job itself). A finished job whose training
//! job is gone is left alone, never run again.

pub mod render;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use coxswain_api::coxswain::TrainingJob;
use coxswain_api::kubeflow::{PyTorchJob, PyTorchJobStatus, to_training_job};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::jiff::SignedDuration;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{ControllersConfig, Error};
use crate::events::EventType;

/// The component named in the events this controller records.
pub const COMPONENT: &str = "pytorchjob-controller";

pub use super::Context;

/// Runs the controller until `shutdown` is cancelled: it watches PyTorchJobs and the
/// training jobs they own.
pub async fn run(client: kube::Client, config: ControllersConfig, shutdown: CancellationToken) {
    let jobs = Api::<PyTorchJob>::all(client.clone());
    let training = Api::<TrainingJob>::all(client.clone());
    let queue = super::work_queue::WorkQueue::new("pytorchjob", config.metrics.as_ref());
    let context = Arc::new(Context::new(client, config, COMPONENT));
    queue
        .controller(jobs, watcher::Config::default())
        // Not `owns`: it lists metadata only, which the API server does not serve.
        .watches(
            training,
            watcher::Config::default(),
            queue.mapper(controlling_job),
        )
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(queue.reconciler(reconcile), error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "pytorchjob controller");
            }
        })
        .await;
}

/// The PyTorchJob that controls `training`, if any.
fn controlling_job(training: TrainingJob) -> Option<ObjectRef<PyTorchJob>> {
    super::controller_ref(&training.metadata, "PyTorchJob")
}

/// Brings one PyTorchJob's training job, services and status in line with its spec.
pub async fn reconcile(job: Arc<PyTorchJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let metrics = ctx.config.metrics.as_ref();
    let result =
        crate::metrics::controllers::observe(metrics, "pytorchjob", reconcile_job(&job, &ctx))
            .await;
    if result.is_ok() {
        ctx.failures.reset(job.as_ref());
    }
    result
}

/// Retries a job whose reconcile failed after a back-off that doubles per failure in a row.
pub fn error_policy(job: Arc<PyTorchJob>, error: &Error, ctx: Arc<Context>) -> Action {
    let wait = ctx.config.error_backoff(ctx.failures.record(job.as_ref()));
    tracing::warn!(job = %super::object_key(job.as_ref()), %error, retry_in = ?wait, "reconciling pytorchjob failed");
    Action::requeue(wait)
}

fn is_finished(status: Option<&PyTorchJobStatus>) -> bool {
    status.is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| (c.type_ == "Succeeded" || c.type_ == "Failed") && c.status == "True")
    })
}

async fn reconcile_job(cached: &PyTorchJob, ctx: &Context) -> Result<Action, Error> {
    let ns = cached.namespace().unwrap_or_else(|| "default".to_string());
    let name = cached.name_any();
    // Decide on the job as it is now, not on a watch cache that may lag our status write.
    let jobs = Api::<PyTorchJob>::namespaced(ctx.client.clone(), &ns);
    let Some(job) = jobs
        .get_opt(&name)
        .await
        .map_err(Error::api(format!("reading pytorchjob {ns}/{name}")))?
    else {
        return Ok(Action::await_change());
    };
    let Some(uid) = job.metadata.uid.clone() else {
        return Ok(Action::await_change());
    };
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let desired = match to_training_job(&job) {
        Ok(desired) => desired,
        Err(error) => {
            // Admission validates the same rules; this is a job stored before they
            // existed. It cannot run: say why, once.
            let message = format!("the job cannot run as a TrainingJob: {error}");
            refuse(&job, &ns, &message, ctx).await?;
            return Ok(Action::await_change());
        }
    };
    let training_api = Api::<TrainingJob>::namespaced(ctx.client.clone(), &ns);
    let existing = training_api
        .get_opt(&name)
        .await
        .map_err(Error::api(format!("reading training job {ns}/{name}")))?;
    let training = match existing {
        Some(training) => {
            let ours = training
                .owner_references()
                .iter()
                .any(|o| o.uid == uid && o.controller == Some(true));
            if !ours {
                let message = format!(
                    "TrainingJob {ns}/{name} exists and is not controlled by this PyTorchJob"
                );
                ctx.events
                    .publish(&job, EventType::Warning, "ErrResourceExists", &message)
                    .await;
                return Ok(Action::await_change());
            }
            sync_suspend(&training, &desired, &ns, ctx).await?;
            training
        }
        // Finished and its training job deleted by hand: it is not run again.
        None if is_finished(job.status.as_ref()) => return expire(&job, &jobs, &uid, ctx).await,
        None => {
            let created = match training_api.create(&PostParams::default(), &desired).await {
                Ok(created) => created,
                // Made by a reconcile racing this one; the next one reads it.
                Err(kube::Error::Api(s)) if s.code == 409 => return Ok(Action::await_change()),
                Err(e) => {
                    return Err(Error::api(format!("creating training job {ns}/{name}"))(e));
                }
            };
            let message = format!("Created TrainingJob: {name}");
            ctx.events
                .publish(&job, EventType::Normal, "SuccessfulCreate", &message)
                .await;
            created
        }
    };
    if !is_finished(job.status.as_ref()) {
        ensure_services(&job, &training, &ns, ctx).await?;
    }
    let new = status::mirror(&job, training.status.as_ref(), ctx.config.clock.now());
    let mut job = job;
    if job.status.as_ref() != Some(&new) {
        write_status(&job, &ns, new.clone(), ctx).await?;
        for condition in status::became_true(job.status.as_ref(), &new) {
            let event_type = match condition.type_.as_str() {
                "Failed" | "Restarting" => EventType::Warning,
                _ => EventType::Normal,
            };
            let reason = format!("PyTorchJob{}", condition.type_);
            let message = condition.message.clone().unwrap_or_default();
            ctx.events
                .publish(&job, event_type, &reason, &message)
                .await;
        }
        job.status = Some(new);
    }
    if is_finished(job.status.as_ref()) {
        return expire(&job, &jobs, &uid, ctx).await;
    }
    Ok(Action::await_change())
}

/// Deletes a finished job once `ttlSecondsAfterFinished` passed since its completion;
/// before that, looks again when it will have.
async fn expire(
    job: &PyTorchJob,
    jobs: &Api<PyTorchJob>,
    uid: &str,
    ctx: &Context,
) -> Result<Action, Error> {
    let ttl = job
        .spec
        .run_policy
        .as_ref()
        .and_then(|p| p.ttl_seconds_after_finished);
    let done = job.status.as_ref().and_then(|s| s.completion_time.as_ref());
    let (Some(ttl), Some(done)) = (ttl, done) else {
        return Ok(Action::await_change());
    };
    let due = done
        .0
        .saturating_add(SignedDuration::from_secs(ttl.into()))
        .unwrap_or(done.0);
    let left = due.duration_since(ctx.config.clock.now());
    if left.is_positive() {
        let wait = Duration::try_from(left).unwrap_or_default();
        return Ok(Action::requeue(wait.max(Duration::from_millis(1))));
    }
    delete_job(jobs, &job.name_any(), uid).await?;
    Ok(Action::await_change())
}

/// Passes `runPolicy.suspend` on to the training job.
async fn sync_suspend(
    training: &TrainingJob,
    desired: &TrainingJob,
    ns: &str,
    ctx: &Context,
) -> Result<(), Error> {
    let suspend = |job: &TrainingJob| {
        job.spec
            .run_policy
            .as_ref()
            .and_then(|p| p.suspend)
            .unwrap_or(false)
    };
    if suspend(training) == suspend(desired) {
        return Ok(());
    }
    let name = training.name_any();
    let patch = json!({"spec": {"runPolicy": {"suspend": suspend(desired)}}});
    Api::<TrainingJob>::namespaced(ctx.client.clone(), ns)
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::api(format!("suspending training job {ns}/{name}")))?;
    Ok(())
}

/// Creates the per-replica services that do not exist yet.
async fn ensure_services(
    job: &PyTorchJob,
    training: &TrainingJob,
    ns: &str,
    ctx: &Context,
) -> Result<(), Error> {
    let services = Api::<Service>::namespaced(ctx.client.clone(), ns);
    for service in render::replica_services(job, training) {
        let name = service.metadata.name.clone().unwrap_or_default();
        match services.create(&PostParams::default(), &service).await {
            Ok(_) => {
                let message = format!("Created Service: {name}");
                ctx.events
                    .publish(job, EventType::Normal, "SuccessfulCreate", &message)
                    .await;
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(Error::api(format!("creating service {ns}/{name}"))(e)),
        }
    }
    Ok(())
}

/// Marks a job that cannot be converted `Failed` (reason `InvalidSpec`), once.
async fn refuse(job: &PyTorchJob, ns: &str, message: &str, ctx: &Context) -> Result<(), Error> {
    if is_finished(job.status.as_ref()) {
        return Ok(());
    }
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(ctx.config.clock.now());
    let mut status = job.status.clone().unwrap_or_default();
    status
        .conditions
        .push(coxswain_api::kubeflow::JobCondition {
            type_: "Failed".to_string(),
            status: "True".to_string(),
            reason: Some("InvalidSpec".to_string()),
            message: Some(message.to_string()),
            last_update_time: Some(now.clone()),
            last_transition_time: Some(now.clone()),
        });
    status.completion_time = Some(now);
    write_status(job, ns, status, ctx).await?;
    ctx.events
        .publish(job, EventType::Warning, "InvalidSpec", message)
        .await;
    Ok(())
}

async fn write_status(
    job: &PyTorchJob,
    ns: &str,
    status: PyTorchJobStatus,
    ctx: &Context,
) -> Result<(), Error> {
    let name = job.name_any();
    let mut updated = job.clone();
    updated.status = Some(status);
    Api::<PyTorchJob>::namespaced(ctx.client.clone(), ns)
        .replace_status(&name, &PostParams::default(), &updated)
        .await
        .map_err(Error::api(format!(
            "writing the status of pytorchjob {ns}/{name}"
        )))?;
    Ok(())
}

async fn delete_job(jobs: &Api<PyTorchJob>, name: &str, uid: &str) -> Result<(), Error> {
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match jobs.delete(name, &params).await {
        Ok(_) => {
            tracing::info!(
                job = name,
                "deleted finished pytorchjob (ttlSecondsAfterFinished)"
            );
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(Error::api(format!("deleting pytorchjob {name}"))(e)),
    }
}
