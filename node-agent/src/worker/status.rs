//! The pod's status in Kubernetes' terms: phase, conditions, init and app container
//! statuses (state, last state, exit codes and reasons, times, restart counts), QoS.

use std::time::SystemTime;

use coxswain_api::k8s::{PodStatus, Time};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, PodCondition, PodIP,
};
use k8s_openapi::jiff::Timestamp;

use super::record::{ContainerRecord, Current, Termination, from_ns};
use super::{PodWorker, State};
use crate::sandbox::qos;

fn time(t: SystemTime) -> Time {
    Time(
        Timestamp::from_nanosecond(super::record::to_ns(t) as i128)
            .unwrap_or(Timestamp::UNIX_EPOCH),
    )
}

fn terminated(t: &Termination, container_id: &str) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            container_id: Some(container_id.to_string()),
            exit_code: t.exit_code,
            signal: t.signal,
            reason: Some(t.reason.clone()),
            message: t.message.clone(),
            started_at: t.started_ns.map(|n| time(from_ns(n))),
            finished_at: Some(time(from_ns(t.finished_ns))),
        }),
        ..Default::default()
    }
}

/// A container's status; `problem` is the pod-level (reason, message) that keeps
/// a container that never started waiting (it becomes the waiting message).
fn container_status(
    rec: &ContainerRecord,
    runtime: &str,
    problem: Option<&(String, String)>,
) -> ContainerStatus {
    let container_id = format!("{runtime}://{}", rec.id);
    let state = match &rec.current {
        Current::Waiting { reason, message } => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: message.clone().or_else(|| {
                    problem
                        .filter(|_| reason == "ContainerCreating")
                        .map(|(_, m)| m.clone())
                }),
            }),
            ..Default::default()
        },
        Current::Running { started, .. } => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(time(*started)),
            }),
            ..Default::default()
        },
        Current::Terminated(t) => terminated(t, &container_id),
    };
    ContainerStatus {
        name: rec.spec.name.clone(),
        image: rec.spec.image.clone().unwrap_or_default(),
        image_id: String::new(),
        container_id: matches!(
            rec.current,
            Current::Running { .. } | Current::Terminated(_)
        )
        .then_some(container_id.clone()),
        ready: rec.is_running(),
        started: Some(rec.is_running()),
        restart_count: rec.restart_count as i32,
        state: Some(state),
        last_state: rec.last.as_ref().map(|t| terminated(t, &container_id)),
        ..Default::default()
    }
}

fn condition(kind: &str, ok: bool, reason: Option<&str>, now: SystemTime) -> PodCondition {
    PodCondition {
        type_: kind.to_string(),
        status: if ok { "True" } else { "False" }.to_string(),
        reason: if ok { None } else { reason.map(String::from) },
        last_transition_time: Some(time(now)),
        ..Default::default()
    }
}

/// Kubernetes' pod phase for the worker's current knowledge.
fn phase(w: &PodWorker) -> &'static str {
    let init_failed = w
        .init
        .iter()
        .any(|c| c.terminated().is_some_and(|t| t.exit_code != 0));
    let never = w.restart_policy() == "Never";
    if init_failed && never {
        return "Failed";
    }
    if w.state == State::Finished || matches!(w.state, State::Terminating { .. } | State::Removed) {
        let done: Vec<_> = w.apps.iter().filter_map(|c| c.terminated()).collect();
        if done.len() == w.apps.len() && !w.apps.is_empty() {
            return if done.iter().all(|t| t.exit_code == 0) {
                "Succeeded"
            } else {
                "Failed"
            };
        }
    }
    let inits_done = w
        .init
        .iter()
        .all(|c| c.terminated().is_some_and(|t| t.exit_code == 0));
    let apps_started = w
        .apps
        .iter()
        .any(|c| c.is_running() || c.terminated().is_some() || c.last.is_some());
    if inits_done && apps_started {
        "Running"
    } else {
        "Pending"
    }
}

/// The worker's pod status.
pub fn pod_status(w: &PodWorker) -> PodStatus {
    let now = w.deps.clock.now();
    let runtime = w.deps.runtime.name();
    let inits_done = w
        .init
        .iter()
        .all(|c| c.terminated().is_some_and(|t| t.exit_code == 0));
    let ready = !w.apps.is_empty() && w.apps.iter().all(ContainerRecord::is_running);
    let not_ready = if inits_done {
        "ContainersNotReady"
    } else {
        "ContainersNotInitialized"
    };
    let spec = w.pod.spec.clone().unwrap_or_default();
    let conditions = vec![
        condition(
            "PodReadyToStartContainers",
            w.sandbox.is_some(),
            Some("SandboxNotReady"),
            now,
        ),
        condition(
            "Initialized",
            inits_done,
            Some("ContainersNotInitialized"),
            now,
        ),
        condition("Ready", ready, Some(not_ready), now),
        condition("ContainersReady", ready, Some(not_ready), now),
        condition("PodScheduled", true, None, now),
    ];
    let ips = w.pod_ips().cloned().unwrap_or_default();
    let host_ip = ips.host_ip.or(w.deps.network.host_ip());
    PodStatus {
        pod_ip: ips.ips.first().map(ToString::to_string),
        pod_ips: (!ips.ips.is_empty()).then(|| {
            ips.ips
                .iter()
                .map(|ip| PodIP { ip: ip.to_string() })
                .collect()
        }),
        host_ip: host_ip.map(|ip| ip.to_string()),
        host_ips: host_ip.map(|ip| vec![HostIP { ip: ip.to_string() }]),
        phase: Some(phase(w).to_string()),
        conditions: Some(conditions),
        reason: w.problem.as_ref().map(|(r, _)| r.clone()),
        message: w.problem.as_ref().map(|(_, m)| m.clone()),
        start_time: w.start_time.map(time),
        qos_class: Some(qos::qos_class(&spec).as_str().to_string()),
        init_container_statuses: (!w.init.is_empty()).then(|| {
            w.init
                .iter()
                .map(|c| container_status(c, runtime, w.problem.as_ref()))
                .collect()
        }),
        container_statuses: Some(
            w.apps
                .iter()
                .map(|c| container_status(c, runtime, w.problem.as_ref()))
                .collect(),
        ),
        ..Default::default()
    }
}
