//! The decision of one reconcile: from the job and the pods it owns, which pods to create
//! or delete, what its status becomes, and when to look again. A pure function of what was
//! observed and the time, so every transition is unit-tested without an API.
//!
//! The gang's lifecycle is a small state, read back from the job's status each time:
//!
//! ```text
//!  Active ──pod failed──▶ BackingOff ──pods gone, back-off passed──▶ Active (restarts+1)
//!    │  └─limit reached / not retryable──▶ Finished(Failed)
//!    ├──success policy met──▶ Finished(Succeeded) ──TTL──▶ job deleted
//!    └──suspend──▶ Suspended ──resume──▶ Active
//! ```

use std::collections::HashMap;
use std::time::Duration;

use coxswain_api::coxswain::{
    ReplicaGroupStatus, ReplicaRestartPolicy, SuccessPolicyType, TrainingJob,
    TrainingJobConditionType as Type, TrainingJobStatus,
};
use coxswain_api::defaulting::DEFAULT_BACKOFF_LIMIT;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::conditions::{self, clear, is_true, set};
use super::observe::{ObservedPod, PodPhase};
use super::render::{Replica, replicas};
use crate::controllers::ControllersConfig;
use crate::events::EventType;

/// `Restarting` reason while the old gang is removed and the back-off runs.
pub const REASON_BACKING_OFF: &str = "BackingOff";
/// `Restarting` reason once the new gang was created.
pub const REASON_RECREATED: &str = "GangRecreated";
/// `Failed` reason when the gang failed more often than `backoffLimit` allows.
pub const REASON_BACKOFF_LIMIT: &str = "BackoffLimitExceeded";
/// Event reason when a failed pod makes the controller restart the whole gang.
pub const EVENT_GANG_RESTART: &str = "GangRestart";

/// Where the gang is in its lifecycle (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Active,
    BackingOff,
    Suspended,
    Finished,
}

impl State {
    fn of(job: &TrainingJob, status: &TrainingJobStatus) -> Self {
        if is_true(status, Type::Succeeded) || is_true(status, Type::Failed) {
            State::Finished
        } else if is_suspended(job) {
            State::Suspended
        } else if conditions::get(status, Type::Restarting)
            .is_some_and(|c| c.status == "True" && c.reason == REASON_BACKING_OFF)
        {
            State::BackingOff
        } else {
            State::Active
        }
    }
}

fn is_suspended(job: &TrainingJob) -> bool {
    job.spec
        .run_policy
        .as_ref()
        .and_then(|p| p.suspend)
        .unwrap_or(false)
}

/// A pod to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    /// The pod's name.
    pub name: String,
    /// Its uid (a precondition, so a newer pod of the same name survives).
    pub uid: String,
    /// Delete at once (grace 0): nothing runs in it any more.
    pub immediately: bool,
}

/// An event about the job, recorded once the plan is carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanEvent {
    /// Normal or Warning.
    pub type_: EventType,
    /// The CamelCase reason (`GangRestart`, `Succeeded`, ...).
    pub reason: &'static str,
    /// What happened, for people.
    pub message: String,
}

/// What one reconcile does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Pods to create, as (group, index).
    pub create: Vec<(String, i32)>,
    /// Pods to delete.
    pub delete: Vec<Deletion>,
    /// The job's new status.
    pub status: TrainingJobStatus,
    /// Delete the job itself (its TTL after finishing passed).
    pub delete_job: bool,
    /// Reconcile again after this long even if nothing changes.
    pub requeue_after: Option<Duration>,
    /// Events for the transitions this plan makes (only when the status changes).
    pub events: Vec<PlanEvent>,
}

impl Plan {
    fn event(&mut self, type_: EventType, reason: &'static str, message: impl Into<String>) {
        self.events.push(PlanEvent {
            type_,
            reason,
            message: message.into(),
        });
    }
}

/// Why the gang must stop: a pod that failed or vanished.
struct Failure {
    message: String,
    retryable: bool,
}

/// Decides what to do with `job`, whose pods are `pods`, at `now`.
pub fn plan(
    job: &TrainingJob,
    pods: &[ObservedPod],
    now: Timestamp,
    config: &ControllersConfig,
) -> Plan {
    let mut plan = Plan {
        status: job.status.clone().unwrap_or_default(),
        ..Default::default()
    };
    let by_name: HashMap<&str, &ObservedPod> = pods.iter().map(|p| (p.name.as_str(), p)).collect();
    let expected = replicas(job);
    plan.status.replica_groups = counters(job, &by_name);
    if conditions::get(&plan.status, Type::Created).is_none() {
        set(
            &mut plan.status,
            Type::Created,
            true,
            "PodGroupCreated",
            "the job's pod group, headless service and hostfile were created",
            now,
        );
    }
    match State::of(job, &plan.status) {
        State::Finished => finished(job, pods, now, &mut plan),
        State::Suspended => suspend(pods, now, &mut plan),
        State::BackingOff => back_off(job, pods, &expected, now, config, &mut plan),
        State::Active => {
            if is_true(&plan.status, Type::Suspended) {
                set(
                    &mut plan.status,
                    Type::Suspended,
                    false,
                    "Resumed",
                    "the job was resumed",
                    now,
                );
                plan.event(EventType::Normal, "Resumed", "the job was resumed");
            }
            active(job, pods, &by_name, &expected, now, config, &mut plan);
        }
    }
    plan
}

/// Per-group counters: active (pending or running), succeeded, failed.
fn counters(job: &TrainingJob, pods: &HashMap<&str, &ObservedPod>) -> Vec<ReplicaGroupStatus> {
    job.spec
        .replica_groups
        .iter()
        .map(|group| {
            let mut counts = ReplicaGroupStatus {
                name: group.name.clone(),
                ..Default::default()
            };
            for index in 0..group.replicas.max(0) {
                let Some(pod) = pods.get(job.pod_name(&group.name, index).as_str()) else {
                    continue;
                };
                match pod.phase {
                    PodPhase::Succeeded => counts.succeeded += 1,
                    PodPhase::Failed => counts.failed += 1,
                    _ if !pod.terminating => counts.active += 1,
                    _ => {}
                }
            }
            counts
        })
        .collect()
}

/// Deletes every pod still running (not finished, not already terminating); with `all`,
/// finished pods too.
fn stop_pods(pods: &[ObservedPod], all: bool, plan: &mut Plan) {
    for pod in pods.iter().filter(|p| !p.terminating) {
        if all || !pod.phase.is_terminal() {
            plan.delete.push(Deletion {
                name: pod.name.clone(),
                uid: pod.uid.clone(),
                immediately: pod.phase.is_terminal() || !pod.bound,
            });
        }
    }
}

fn finished(job: &TrainingJob, pods: &[ObservedPod], now: Timestamp, plan: &mut Plan) {
    stop_pods(pods, false, plan);
    let ttl = job
        .spec
        .run_policy
        .as_ref()
        .and_then(|p| p.ttl_seconds_after_finished);
    let (Some(ttl), Some(done)) = (ttl, plan.status.completion_time.as_ref()) else {
        return;
    };
    let due = done.0.saturating_add(SignedDuration::from_secs(ttl.into()));
    match due.map(|due| due.duration_since(now)) {
        Ok(left) if left.is_positive() => plan.requeue_after = Some(to_std(left)),
        _ => plan.delete_job = true,
    }
}

fn suspend(pods: &[ObservedPod], now: Timestamp, plan: &mut Plan) {
    stop_pods(pods, true, plan);
    if !is_true(&plan.status, Type::Suspended) {
        plan.event(
            EventType::Normal,
            "Suspended",
            "the job was suspended: its pods are stopped",
        );
    }
    let status = &mut plan.status;
    set(
        status,
        Type::Suspended,
        true,
        "Suspended",
        "spec.runPolicy.suspend is true: the job's pods are stopped",
        now,
    );
    clear(
        status,
        Type::Running,
        "Suspended",
        "the job is suspended",
        now,
    );
    clear(
        status,
        Type::Scheduled,
        "Suspended",
        "the job is suspended",
        now,
    );
    clear(
        status,
        Type::Restarting,
        "Suspended",
        "the job is suspended",
        now,
    );
    status.reason = Some("Suspended".to_string());
    status.message = Some("the job is suspended (spec.runPolicy.suspend)".to_string());
}

fn back_off(
    job: &TrainingJob,
    pods: &[ObservedPod],
    expected: &[Replica<'_>],
    now: Timestamp,
    config: &ControllersConfig,
    plan: &mut Plan,
) {
    if !pods.is_empty() {
        // The old gang goes first; its pods' deletions wake the controller again.
        stop_pods(pods, true, plan);
        return;
    }
    let since = conditions::get(&plan.status, Type::Restarting)
        .map(|c| c.last_transition_time.0)
        .unwrap_or(now);
    let wait = config.restart_backoff(plan.status.restarts);
    let due = since
        .saturating_add(SignedDuration::try_from(wait).unwrap_or(SignedDuration::MAX))
        .unwrap_or(since);
    let left = due.duration_since(now);
    if left.is_positive() {
        plan.requeue_after = Some(to_std(left));
        return;
    }
    plan.status.restarts += 1;
    let message = format!(
        "restart {} of {}: the gang was recreated",
        plan.status.restarts,
        backoff_limit(job)
    );
    set(
        &mut plan.status,
        Type::Restarting,
        true,
        REASON_RECREATED,
        message.clone(),
        now,
    );
    plan.status.reason = Some(REASON_RECREATED.to_string());
    plan.status.message = Some(message.clone());
    plan.event(EventType::Normal, REASON_RECREATED, message);
    plan.create = expected
        .iter()
        .map(|r| (r.group.name.clone(), r.index))
        .collect();
}

fn backoff_limit(job: &TrainingJob) -> i32 {
    job.spec
        .run_policy
        .as_ref()
        .and_then(|p| p.backoff_limit)
        .unwrap_or(DEFAULT_BACKOFF_LIMIT)
}

fn active(
    job: &TrainingJob,
    pods: &[ObservedPod],
    by_name: &HashMap<&str, &ObservedPod>,
    expected: &[Replica<'_>],
    now: Timestamp,
    config: &ControllersConfig,
    plan: &mut Plan,
) {
    if let Some(message) = deadline_exceeded(job, &plan.status, now) {
        finish(Type::Failed, "DeadlineExceeded", message, pods, now, plan);
        return;
    }
    if let Some(failure) = find_failure(job, by_name, expected, &plan.status) {
        let limit = backoff_limit(job);
        if !failure.retryable {
            finish(Type::Failed, "PodFailed", failure.message, pods, now, plan);
        } else if plan.status.restarts >= limit {
            let message = format!(
                "{}; the gang was restarted {} times (backoffLimit {limit})",
                failure.message, plan.status.restarts
            );
            finish(Type::Failed, REASON_BACKOFF_LIMIT, message, pods, now, plan);
        } else {
            let wait = config.restart_backoff(plan.status.restarts);
            let message = format!(
                "{}; restarting the gang in {}s (restart {} of {limit})",
                failure.message,
                wait.as_secs_f64(),
                plan.status.restarts + 1
            );
            let status = &mut plan.status;
            set(
                status,
                Type::Restarting,
                true,
                REASON_BACKING_OFF,
                message.clone(),
                now,
            );
            clear(
                status,
                Type::Running,
                "GangFailed",
                failure.message.clone(),
                now,
            );
            clear(status, Type::Scheduled, "GangFailed", failure.message, now);
            status.reason = Some(REASON_BACKING_OFF.to_string());
            status.message = Some(message.clone());
            stop_pods(pods, true, plan);
            plan.event(EventType::Warning, EVENT_GANG_RESTART, message);
            plan.requeue_after = Some(wait);
        }
        return;
    }
    if let Some(message) = success(job, by_name, expected) {
        finish(Type::Succeeded, "Succeeded", message, pods, now, plan);
        return;
    }
    plan.create = expected
        .iter()
        .filter(|r| !by_name.contains_key(job.pod_name(&r.group.name, r.index).as_str()))
        .map(|r| (r.group.name.clone(), r.index))
        .collect();
    let present: Vec<&ObservedPod> = expected
        .iter()
        .filter_map(|r| by_name.get(job.pod_name(&r.group.name, r.index).as_str()))
        .copied()
        .collect();
    let all_present = present.len() == expected.len() && plan.create.is_empty();
    let status = &mut plan.status;
    if all_present && present.iter().all(|p| p.bound) {
        if !is_true(status, Type::Scheduled) {
            set(
                status,
                Type::Scheduled,
                true,
                "AllPodsBound",
                format!("all {} pods of the gang are bound to nodes", expected.len()),
                now,
            );
        }
        status.start_time.get_or_insert(Time(now));
    }
    let running = present
        .iter()
        .filter(|p| p.phase == PodPhase::Running)
        .count();
    let up = present
        .iter()
        .all(|p| matches!(p.phase, PodPhase::Running | PodPhase::Succeeded));
    if all_present && up && running > 0 {
        if !is_true(status, Type::Running) {
            let message = format!("all {} pods of the gang are running", expected.len());
            set(
                status,
                Type::Running,
                true,
                "AllPodsRunning",
                message.clone(),
                now,
            );
            status.reason = Some("Running".to_string());
            status.message = Some("every pod of the gang is running".to_string());
            clear(
                status,
                Type::Restarting,
                "Recovered",
                "the recreated gang is running",
                now,
            );
            plan.event(EventType::Normal, "Running", message);
            return;
        }
        clear(
            status,
            Type::Restarting,
            "Recovered",
            "the recreated gang is running",
            now,
        );
    } else {
        clear(
            status,
            Type::Running,
            "PodsNotRunning",
            "not every pod of the gang is running",
            now,
        );
    }
}

fn deadline_exceeded(
    job: &TrainingJob,
    status: &TrainingJobStatus,
    now: Timestamp,
) -> Option<String> {
    let seconds = job.spec.run_policy.as_ref()?.active_deadline_seconds?;
    let start = status.start_time.as_ref()?.0;
    let due = start
        .saturating_add(SignedDuration::from_secs(seconds))
        .ok()?;
    (now >= due).then(|| format!("the job ran longer than activeDeadlineSeconds ({seconds}s)"))
}

/// The failure of the gang: a failed pod, or, once the gang was placed, a pod deleted
/// while it ran on a node or gone. (Pods still terminating after a suspension or a restart
/// are waited for, not failures: the gang is not placed then.) The first failed pod in rank
/// order decides whether the gang may restart; the message names every failed pod, since
/// the one that failed first often takes its peers down with it.
fn find_failure(
    job: &TrainingJob,
    by_name: &HashMap<&str, &ObservedPod>,
    expected: &[Replica<'_>],
    status: &TrainingJobStatus,
) -> Option<Failure> {
    let placed = is_true(status, Type::Scheduled);
    let mut failures: Vec<Failure> = Vec::new();
    for replica in expected {
        let name = job.pod_name(&replica.group.name, replica.index);
        let policy = replica
            .group
            .restart_policy
            .unwrap_or(ReplicaRestartPolicy::OnFailure);
        let Some(pod) = by_name.get(name.as_str()) else {
            if placed {
                failures.push(Failure {
                    message: format!("pod {name} disappeared"),
                    retryable: policy != ReplicaRestartPolicy::Never,
                });
            }
            continue;
        };
        if pod.phase == PodPhase::Failed {
            let retryable = match policy {
                ReplicaRestartPolicy::Never => false,
                ReplicaRestartPolicy::ExitCode => pod.exit_code.is_none_or(|c| c >= 128),
                ReplicaRestartPolicy::OnFailure | ReplicaRestartPolicy::Always => true,
            };
            failures.push(Failure {
                message: pod.describe_failure(),
                retryable,
            });
        } else if placed && pod.terminating && pod.bound && !pod.phase.is_terminal() {
            failures.push(Failure {
                message: format!("pod {name} was deleted while it ran"),
                retryable: policy != ReplicaRestartPolicy::Never,
            });
        }
    }
    let retryable = failures.first()?.retryable;
    let messages: Vec<String> = failures.into_iter().map(|f| f.message).collect();
    Some(Failure {
        message: messages.join("; "),
        retryable,
    })
}

/// Why the job succeeded, when its success policy is met.
fn success(
    job: &TrainingJob,
    by_name: &HashMap<&str, &ObservedPod>,
    expected: &[Replica<'_>],
) -> Option<String> {
    let group = job
        .spec
        .success_policy
        .as_ref()
        .filter(|p| p.type_ == SuccessPolicyType::Group)
        .and_then(|p| p.group.as_deref());
    let needed: Vec<&Replica<'_>> = expected
        .iter()
        .filter(|r| group.is_none_or(|g| r.group.name == g))
        .collect();
    let done = |r: &&Replica<'_>| {
        by_name
            .get(job.pod_name(&r.group.name, r.index).as_str())
            .is_some_and(|p| p.phase == PodPhase::Succeeded)
    };
    if needed.is_empty() || !needed.iter().all(done) {
        return None;
    }
    Some(match group {
        Some(group) => format!("every pod of group {group} succeeded"),
        None => format!("all {} pods succeeded", needed.len()),
    })
}

fn finish(
    type_: Type,
    reason: &str,
    message: String,
    pods: &[ObservedPod],
    now: Timestamp,
    plan: &mut Plan,
) {
    let event_type = match type_ {
        Type::Succeeded => EventType::Normal,
        _ => EventType::Warning,
    };
    let event_reason = match reason {
        "DeadlineExceeded" => "DeadlineExceeded",
        REASON_BACKOFF_LIMIT => REASON_BACKOFF_LIMIT,
        "Succeeded" => "Succeeded",
        _ => "Failed",
    };
    plan.event(event_type, event_reason, message.clone());
    let status = &mut plan.status;
    set(status, type_, true, reason, message.clone(), now);
    clear(status, Type::Running, reason, message.clone(), now);
    clear(status, Type::Restarting, reason, message.clone(), now);
    status.completion_time = Some(Time(now));
    status.reason = Some(reason.to_string());
    status.message = Some(message);
    stop_pods(pods, false, plan);
}

fn to_std(duration: SignedDuration) -> Duration {
    Duration::try_from(duration).unwrap_or_default()
}

#[cfg(test)]
mod tests;
