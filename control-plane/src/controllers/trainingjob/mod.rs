//! The `TrainingJob` controller: runs a job as a gang of pods and restarts the whole gang
//! when one of them fails.
//!
//! For each job it keeps a `PodGroup` (the scheduler's gang), a headless `Service` (stable
//! pod DNS names), a `<job>-hostfile` config map (the MPI hostfile) and one pod per replica,
//! all owned by the job (deleting the job removes them through the garbage collector).
//! [`plan`] decides; this module observes through the API and carries the plan out.

pub mod conditions;
pub mod observe;
pub mod plan;
pub mod render;

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use coxswain_api::coxswain::{PodGroup, TrainingJob};
use futures::StreamExt;
use k8s_openapi::Resource as _;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use self::observe::ObservedPod;
use self::plan::Plan;
use super::{ControllersConfig, Error};
use crate::events::EventType;

/// The component named in the events this controller records.
pub const COMPONENT: &str = "trainingjob-controller";

pub use super::Context;

/// Runs the controller until `shutdown` is cancelled: it watches training jobs and the
/// pods they own.
pub async fn run(client: kube::Client, config: ControllersConfig, shutdown: CancellationToken) {
    let jobs = Api::<TrainingJob>::all(client.clone());
    let pods = Api::<Pod>::all(client.clone());
    let queue = super::work_queue::WorkQueue::new("trainingjob", config.metrics.as_ref());
    let context = Arc::new(Context::new(client, config, COMPONENT));
    queue
        .controller(jobs, watcher::Config::default())
        // Not `owns`: it lists with `as=PartialObjectMetadataList`, which the API server
        // does not serve yet; a full watch of the job's pods maps each to its controller.
        .watches(
            pods,
            watcher::Config::default().labels(TrainingJob::JOB_NAME_LABEL),
            queue.mapper(controlling_job),
        )
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(queue.reconciler(reconcile), error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "trainingjob controller");
            }
        })
        .await;
}

/// The training job that controls `pod`, if any.
fn controlling_job(pod: Pod) -> Option<ObjectRef<TrainingJob>> {
    super::controller_ref(&pod.metadata, TrainingJob::KIND)
}

/// Brings one job's children and status in line with its spec.
pub async fn reconcile(job: Arc<TrainingJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let metrics = ctx.config.metrics.as_ref();
    let result =
        crate::metrics::controllers::observe(metrics, "trainingjob", reconcile_job(&job, &ctx))
            .await;
    if result.is_ok() {
        ctx.failures.reset(job.as_ref());
    }
    result
}

/// Retries a job whose reconcile failed after a back-off that doubles per failure in a row.
pub fn error_policy(job: Arc<TrainingJob>, error: &Error, ctx: Arc<Context>) -> Action {
    let wait = ctx.config.error_backoff(ctx.failures.record(job.as_ref()));
    tracing::warn!(job = %super::object_key(job.as_ref()), %error, retry_in = ?wait, "reconciling training job failed");
    Action::requeue(wait)
}

async fn reconcile_job(cached: &TrainingJob, ctx: &Context) -> Result<Action, Error> {
    let ns = cached.namespace().unwrap_or_else(|| "default".to_string());
    let name = cached.name_any();
    // The watch cache may lag behind our own last status write; decisions (a restart, a
    // recreation) are made on the job as it is now.
    let jobs = Api::<TrainingJob>::namespaced(ctx.client.clone(), &ns);
    let Some(job) = jobs
        .get_opt(&name)
        .await
        .map_err(Error::api(format!("reading training job {ns}/{name}")))?
    else {
        return Ok(Action::await_change());
    };
    let job = &job;
    if job.metadata.deletion_timestamp.is_some() || job.metadata.uid.is_none() {
        return Ok(Action::await_change());
    }
    let finished = job.status.as_ref().is_some_and(|s| {
        conditions::is_true(
            s,
            coxswain_api::coxswain::TrainingJobConditionType::Succeeded,
        ) || conditions::is_true(s, coxswain_api::coxswain::TrainingJobConditionType::Failed)
    });
    if !finished {
        let client = &ctx.client;
        ensure(
            Api::<PodGroup>::namespaced(client.clone(), &ns),
            render::pod_group(job),
            job,
            ctx,
        )
        .await?;
        ensure(
            Api::<Service>::namespaced(client.clone(), &ns),
            render::headless_service(job),
            job,
            ctx,
        )
        .await?;
        ensure(
            Api::<ConfigMap>::namespaced(client.clone(), &ns),
            render::hostfile_config_map(job),
            job,
            ctx,
        )
        .await?;
    }
    let pods_api = Api::<Pod>::namespaced(ctx.client.clone(), &ns);
    let selector = format!("{}={name}", TrainingJob::JOB_NAME_LABEL);
    let pods = pods_api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(Error::api(format!(
            "listing the pods of training job {ns}/{name}"
        )))?;
    let observed: Vec<ObservedPod> = pods
        .items
        .iter()
        .filter(|p| ObservedPod::is_owned_by(p, job))
        .map(ObservedPod::from_pod)
        .collect();
    let plan = plan::plan(job, &observed, ctx.config.clock.now(), &ctx.config);
    carry_out(job, &ns, &plan, ctx).await
}

async fn carry_out(
    job: &TrainingJob,
    ns: &str,
    plan: &Plan,
    ctx: &Context,
) -> Result<Action, Error> {
    let name = job.name_any();
    let pods_api = Api::<Pod>::namespaced(ctx.client.clone(), ns);
    for deletion in &plan.delete {
        let params = DeleteParams {
            grace_period_seconds: deletion.immediately.then_some(0),
            preconditions: Some(Preconditions {
                uid: Some(deletion.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match pods_api.delete(&deletion.name, &params).await {
            Ok(_) => {
                let message = format!("Deleted pod: {}", deletion.name);
                ctx.events
                    .publish(job, EventType::Normal, "SuccessfulDelete", &message)
                    .await;
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => {
                return Err(Error::api(format!("deleting pod {ns}/{}", deletion.name))(
                    e,
                ));
            }
        }
    }
    let replicas = render::replicas(job);
    for (group, index) in &plan.create {
        let Some(replica) = replicas
            .iter()
            .find(|r| &r.group.name == group && r.index == *index)
        else {
            continue;
        };
        let pod = render::pod(job, replica);
        match pods_api.create(&PostParams::default(), &pod).await {
            Ok(_) => {
                let message = format!("Created pod: {}", job.pod_name(group, *index));
                ctx.events
                    .publish(job, EventType::Normal, "SuccessfulCreate", &message)
                    .await;
            }
            // A pod of this name is still terminating; its deletion wakes us again.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => {
                let pod_name = job.pod_name(group, *index);
                return Err(Error::api(format!("creating pod {ns}/{pod_name}"))(e));
            }
        }
    }
    if job.status.as_ref() != Some(&plan.status) {
        write_status(job, ns, &plan.status, ctx).await?;
        // Only once the transition is stored: a failed write replans and re-announces.
        for event in &plan.events {
            ctx.events
                .publish(job, event.type_, event.reason, &event.message)
                .await;
        }
    }
    if plan.delete_job {
        let jobs = Api::<TrainingJob>::namespaced(ctx.client.clone(), ns);
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            preconditions: Some(Preconditions {
                uid: job.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match jobs.delete(&name, &params).await {
            Ok(_) => {
                tracing::info!(job = %super::object_key(job), "deleted finished training job (ttlSecondsAfterFinished)")
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => return Err(Error::api(format!("deleting training job {ns}/{name}"))(e)),
        }
        return Ok(Action::await_change());
    }
    Ok(match plan.requeue_after {
        Some(wait) => Action::requeue(wait.max(Duration::from_millis(1))),
        None => Action::await_change(),
    })
}

async fn write_status(
    job: &TrainingJob,
    ns: &str,
    status: &coxswain_api::coxswain::TrainingJobStatus,
    ctx: &Context,
) -> Result<(), Error> {
    let name = job.name_any();
    let jobs = Api::<TrainingJob>::namespaced(ctx.client.clone(), ns);
    let mut updated = job.clone();
    updated.status = Some(status.clone());
    jobs.replace_status(&name, &PostParams::default(), &updated)
        .await
        .map_err(Error::api(format!(
            "writing the status of training job {ns}/{name}"
        )))?;
    Ok(())
}

/// Creates `object` unless one of its name exists already; records the creation on `job`.
async fn ensure<K>(api: Api<K>, object: K, job: &TrainingJob, ctx: &Context) -> Result<(), Error>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    let name = object.meta().name.clone().unwrap_or_default();
    match api.create(&PostParams::default(), &object).await {
        Ok(_) => {
            let message = format!("Created {}: {name}", K::kind(&Default::default()));
            ctx.events
                .publish(job, EventType::Normal, "SuccessfulCreate", &message)
                .await;
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(Error::api(format!(
            "creating {} {name}",
            K::kind(&Default::default())
        ))(e)),
    }
}
