//! Unit tests of the gang lifecycle decisions.

use std::time::Duration;

use coxswain_api::coxswain::{
    ReplicaRestartPolicy, RunPolicy, SuccessPolicy, SuccessPolicyType, TrainingJob,
    TrainingJobConditionType as Type,
};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::{EVENT_GANG_RESTART, REASON_BACKING_OFF, REASON_BACKOFF_LIMIT, REASON_RECREATED, plan};
use crate::controllers::ControllersConfig;
use crate::controllers::trainingjob::conditions::{get, is_true};
use crate::controllers::trainingjob::observe::{ObservedPod, PodPhase};
use crate::controllers::trainingjob::render::tests::{group, job};
use crate::events::EventType;

fn pod(name: &str, phase: PodPhase, bound: bool) -> ObservedPod {
    ObservedPod {
        name: name.into(),
        uid: format!("uid-{name}"),
        phase,
        terminating: false,
        bound,
        exit_code: (phase == PodPhase::Failed).then_some(1),
        reason: None,
    }
}

fn t(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

fn two_workers() -> TrainingJob {
    job(vec![group("worker", 2, None)])
}

/// Runs `plan` and stores its status on the job, like the controller's status write.
fn step(job: &mut TrainingJob, pods: &[ObservedPod], now: Timestamp) -> super::Plan {
    let plan = plan(job, pods, now, &ControllersConfig::default());
    job.status = Some(plan.status.clone());
    plan
}

#[test]
fn a_new_job_creates_its_gang_and_becomes_running() {
    let mut job = two_workers();
    let first = step(&mut job, &[], t(0));
    assert_eq!(
        first.create,
        vec![("worker".into(), 0), ("worker".into(), 1)]
    );
    assert!(is_true(&first.status, Type::Created));
    let pods = [
        pod("llm-worker-0", PodPhase::Pending, true),
        pod("llm-worker-1", PodPhase::Pending, false),
    ];
    let plan = step(&mut job, &pods, t(1));
    assert!(plan.create.is_empty());
    assert!(
        !is_true(&plan.status, Type::Scheduled),
        "one pod is unbound"
    );
    let pods = [
        pod("llm-worker-0", PodPhase::Running, true),
        pod("llm-worker-1", PodPhase::Running, true),
    ];
    let plan = step(&mut job, &pods, t(2));
    assert!(is_true(&plan.status, Type::Scheduled));
    assert!(is_true(&plan.status, Type::Running));
    assert_eq!(plan.status.start_time.as_ref().map(|t| t.0), Some(t(2)));
    assert_eq!(plan.status.replica_groups[0].active, 2);
}

#[test]
fn a_failure_backs_off_then_recreates_the_whole_gang() {
    let mut job = two_workers();
    let running = [
        pod("llm-worker-0", PodPhase::Running, true),
        pod("llm-worker-1", PodPhase::Running, true),
    ];
    step(&mut job, &running, t(0));
    let failed = [
        pod("llm-worker-0", PodPhase::Running, true),
        pod("llm-worker-1", PodPhase::Failed, true),
    ];
    let plan = step(&mut job, &failed, t(5));
    let restarting = get(&plan.status, Type::Restarting).unwrap();
    assert_eq!(restarting.reason, REASON_BACKING_OFF);
    assert!(
        restarting
            .message
            .contains("pod llm-worker-1 failed with exit code 1"),
        "{}",
        restarting.message
    );
    assert!(!is_true(&plan.status, Type::Running));
    let deleted: Vec<(&str, bool)> = plan
        .delete
        .iter()
        .map(|d| (d.name.as_str(), d.immediately))
        .collect();
    assert_eq!(
        deleted,
        vec![("llm-worker-0", false), ("llm-worker-1", true)]
    );
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(10)));
    let events: Vec<(EventType, &str)> = plan.events.iter().map(|e| (e.type_, e.reason)).collect();
    assert_eq!(events, vec![(EventType::Warning, EVENT_GANG_RESTART)]);
    assert!(
        plan.events[0]
            .message
            .contains("pod llm-worker-1 failed with exit code 1"),
        "the event names the failed pod and its exit: {}",
        plan.events[0].message
    );

    // While old pods remain, nothing is created.
    let mut terminating = failed[0].clone();
    terminating.terminating = true;
    let plan = step(&mut job, &[terminating], t(6));
    assert!(plan.create.is_empty() && plan.delete.is_empty());
    assert!(plan.events.is_empty(), "a transition is announced once");
    // Gone, but the back-off has not passed.
    let plan = step(&mut job, &[], t(8));
    assert!(plan.create.is_empty());
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(7)));
    // Back-off passed: the whole gang is recreated.
    let plan = step(&mut job, &[], t(15));
    assert_eq!(plan.create.len(), 2);
    assert_eq!(plan.status.restarts, 1);
    assert_eq!(
        get(&plan.status, Type::Restarting).unwrap().reason,
        REASON_RECREATED
    );
    assert_eq!(plan.events[0].reason, REASON_RECREATED);
    let plan = step(&mut job, &running, t(16));
    assert_eq!(plan.events[0].reason, "Running");
    assert!(!is_true(&plan.status, Type::Restarting));
    assert!(is_true(&plan.status, Type::Running));
    // The second failure waits twice as long.
    let plan = step(&mut job, &failed, t(20));
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(20)));
}

#[test]
fn the_backoff_limit_fails_the_job() {
    let mut job = two_workers();
    job.spec.run_policy = Some(RunPolicy {
        backoff_limit: Some(0),
        ..Default::default()
    });
    let failed = [
        pod("llm-worker-0", PodPhase::Running, true),
        pod("llm-worker-1", PodPhase::Failed, true),
    ];
    let plan = step(&mut job, &failed, t(0));
    let failed_condition = get(&plan.status, Type::Failed).unwrap();
    assert_eq!(failed_condition.reason, REASON_BACKOFF_LIMIT);
    assert_eq!(plan.status.reason.as_deref(), Some(REASON_BACKOFF_LIMIT));
    assert!(plan.status.completion_time.is_some());
    // The running pod is stopped; the failed one is kept for its logs.
    let deleted: Vec<&str> = plan.delete.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(deleted, vec!["llm-worker-0"]);
}

#[test]
fn restart_policy_never_and_exit_codes() {
    let mut never = two_workers();
    never.spec.replica_groups[0].restart_policy = Some(ReplicaRestartPolicy::Never);
    let failed = [
        pod("llm-worker-0", PodPhase::Running, true),
        pod("llm-worker-1", PodPhase::Failed, true),
    ];
    assert_eq!(
        get(&step(&mut never, &failed, t(0)).status, Type::Failed)
            .unwrap()
            .reason,
        "PodFailed"
    );

    let mut by_code = two_workers();
    by_code.spec.replica_groups[0].restart_policy = Some(ReplicaRestartPolicy::ExitCode);
    let mut killed = failed.clone();
    killed[1].exit_code = Some(137);
    assert!(is_true(
        &step(&mut by_code.clone(), &killed, t(0)).status,
        Type::Restarting
    ));
    assert!(is_true(
        &step(&mut by_code, &failed, t(0)).status,
        Type::Failed
    ));
}

#[test]
fn a_pod_lost_after_placement_restarts_the_gang() {
    let mut job = two_workers();
    let running = [
        pod("llm-worker-0", PodPhase::Running, true),
        pod("llm-worker-1", PodPhase::Running, true),
    ];
    step(&mut job, &running, t(0));
    let plan = step(&mut job, &running[..1], t(1));
    assert!(
        plan.create.is_empty(),
        "a lost pod is not silently replaced"
    );
    assert!(
        get(&plan.status, Type::Restarting)
            .unwrap()
            .message
            .contains("llm-worker-1 disappeared")
    );
}

#[test]
fn success_policies() {
    let mut job = two_workers();
    let one_done = [
        pod("llm-worker-0", PodPhase::Succeeded, true),
        pod("llm-worker-1", PodPhase::Running, true),
    ];
    assert!(!is_true(
        &step(&mut job, &one_done, t(0)).status,
        Type::Succeeded
    ));
    let all_done = [
        pod("llm-worker-0", PodPhase::Succeeded, true),
        pod("llm-worker-1", PodPhase::Succeeded, true),
    ];
    let plan = step(&mut job, &all_done, t(1));
    assert!(is_true(&plan.status, Type::Succeeded));
    assert_eq!(
        plan.status.completion_time.as_ref().map(|t| t.0),
        Some(t(1))
    );
    assert_eq!(plan.status.replica_groups[0].succeeded, 2);

    let mut with_master = job_with_master();
    let master_done = [
        pod("llm-master-0", PodPhase::Succeeded, true),
        pod("llm-worker-0", PodPhase::Running, true),
    ];
    let plan = step(&mut with_master, &master_done, t(0));
    assert!(is_true(&plan.status, Type::Succeeded));
    let deleted: Vec<&str> = plan.delete.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(deleted, vec!["llm-worker-0"], "leftovers are stopped");
}

fn job_with_master() -> TrainingJob {
    let mut job = job(vec![group("master", 1, None), group("worker", 1, None)]);
    job.spec.success_policy = Some(SuccessPolicy {
        type_: SuccessPolicyType::Group,
        group: Some("master".into()),
    });
    job
}

#[test]
fn suspend_stops_pods_and_resume_recreates_them() {
    let mut job = two_workers();
    let running = [
        pod("llm-worker-0", PodPhase::Running, true),
        pod("llm-worker-1", PodPhase::Running, true),
    ];
    step(&mut job, &running, t(0));
    job.spec.run_policy = Some(RunPolicy {
        suspend: Some(true),
        ..Default::default()
    });
    let plan = step(&mut job, &running, t(1));
    assert_eq!(plan.delete.len(), 2);
    assert!(is_true(&plan.status, Type::Suspended));
    assert!(!is_true(&plan.status, Type::Running));
    let plan = step(&mut job, &[], t(2));
    assert!(plan.create.is_empty(), "a suspended job creates nothing");
    job.spec.run_policy = None;
    let mut lingering = running[0].clone();
    lingering.terminating = true;
    let plan = step(&mut job, &[lingering], t(3));
    assert!(!is_true(&plan.status, Type::Suspended));
    assert!(
        !is_true(&plan.status, Type::Restarting),
        "a pod stopped by the suspension is no failure"
    );
    assert_eq!(plan.create, vec![("worker".into(), 1)]);
}

#[test]
fn ttl_deletes_the_finished_job() {
    let mut job = two_workers();
    job.spec.run_policy = Some(RunPolicy {
        ttl_seconds_after_finished: Some(60),
        ..Default::default()
    });
    let done = [
        pod("llm-worker-0", PodPhase::Succeeded, true),
        pod("llm-worker-1", PodPhase::Succeeded, true),
    ];
    step(&mut job, &done, t(0));
    let plan = step(&mut job, &done, t(10));
    assert!(!plan.delete_job);
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(50)));
    assert!(step(&mut job, &done, t(60)).delete_job);
}

#[test]
fn the_active_deadline_fails_the_job() {
    let mut job = two_workers();
    job.spec.run_policy = Some(RunPolicy {
        active_deadline_seconds: Some(30),
        ..Default::default()
    });
    let running = [
        pod("llm-worker-0", PodPhase::Running, true),
        pod("llm-worker-1", PodPhase::Running, true),
    ];
    step(&mut job, &running, t(0));
    let plan = step(
        &mut job,
        &running,
        t(0).saturating_add(SignedDuration::from_secs(31)).unwrap(),
    );
    assert_eq!(
        get(&plan.status, Type::Failed).unwrap().reason,
        "DeadlineExceeded"
    );
    assert_eq!(plan.delete.len(), 2);
}
