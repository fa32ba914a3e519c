//! The scheduling thread: owns the [`Scheduler`], applies watch input between cycles,
//! runs cycles while pods are active, and sleeps until input or the next back-off or
//! Permit deadline.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use super::super::clock::Clock;
use super::super::{CycleReport, CycleResult, Scheduler};
use super::feed::{Feed, Input};
use super::metering::Meter;
use super::notices::Notices;
use super::pod_status::{StatusUpdates, scheduled, unschedulable};

/// Longest sleep without input, so parked pods are retried after `max_unschedulable`.
const IDLE_WAIT: Duration = Duration::from_secs(5);

/// What the thread receives.
#[derive(Debug)]
pub(super) enum Message {
    /// A change from a watch (boxed: a node or pod is large next to `Stop`).
    Input(Box<Input>),
    /// Shut down.
    Stop,
}

/// Runs until [`Message::Stop`] or until every sender is gone.
pub(super) fn run(
    mut scheduler: Scheduler,
    clock: Arc<dyn Clock>,
    rx: Receiver<Message>,
    status: StatusUpdates,
    notices: Notices,
    mut meter: Meter,
) {
    let mut feed = Feed::default();
    loop {
        loop {
            match rx.try_recv() {
                Ok(Message::Input(input)) => {
                    meter.input(&input);
                    feed.apply(&mut scheduler, *input);
                }
                Ok(Message::Stop) | Err(TryRecvError::Disconnected) => return,
                Err(TryRecvError::Empty) => break,
            }
        }
        scheduler.tick();
        let started = Instant::now();
        if let Some(report) = scheduler.schedule_one() {
            meter.cycle(&scheduler, &report, started.elapsed());
            meter.gauges(&scheduler, false);
            tell(&scheduler, &report, &status, &notices);
            continue;
        }
        meter.gauges(&scheduler, false);
        let wait = scheduler
            .next_wakeup()
            .map_or(IDLE_WAIT, |at| at.saturating_sub(clock.now()))
            .min(IDLE_WAIT);
        match rx.recv_timeout(wait) {
            Ok(Message::Input(input)) => {
                meter.input(&input);
                feed.apply(&mut scheduler, *input);
            }
            Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => meter.gauges(&scheduler, true),
        }
    }
}

/// Writes what a cycle did to the pods' `PodScheduled` conditions and as Events.
fn tell(scheduler: &Scheduler, report: &CycleReport, status: &StatusUpdates, notices: &Notices) {
    for binding in &report.bound {
        status.send(scheduled(&binding.pod, &binding.node));
        notices.scheduled(&binding.pod, &binding.node);
    }
    match &report.result {
        CycleResult::Unschedulable(s) => {
            let message = report
                .failure
                .clone()
                .unwrap_or_else(|| s.reason.to_string());
            if s.is_rejected() {
                status.send(unschedulable(&report.pod, message.clone()));
                if let Some((group, text)) = gang_message(scheduler, report, &message) {
                    notices.gang_unschedulable(&group, text);
                }
                notices.failed(&report.pod, message);
            } else {
                // A bind or internal error: kube-scheduler reports these as
                // FailedScheduling too; the pod is retried after back-off.
                let message = if s.plugin == "Bind" {
                    format!("Binding rejected: {}", s.reason)
                } else {
                    message
                };
                notices.failed(&report.pod, message);
            }
        }
        CycleResult::Preempting { node, victims } => {
            let message = report.failure.clone().unwrap_or_default();
            for victim in victims {
                notices.preempted(victim, &report.pod, node);
            }
            status.send(unschedulable(&report.pod, message.clone()).nominating(node));
            notices.failed(&report.pod, message);
        }
        _ => {}
    }
}

/// For a gang member that could not be placed: its group and
/// `pod group ns/g: 2/4 members placeable: <why>` — the members bound or reserved until
/// this failure (the reserved ones were just released) out of `minMember`.
fn gang_message(
    scheduler: &Scheduler,
    report: &CycleReport,
    why: &str,
) -> Option<(super::super::model::PodKey, String)> {
    let snapshot = scheduler.snapshot();
    let group_key = snapshot.pod(&report.pod)?.group.clone()?;
    let group = snapshot.group(&group_key)?;
    let min = group.spec.as_ref()?.min_member;
    let released = report
        .released
        .iter()
        .filter(|k| group.members.contains(*k))
        .count();
    let placeable = group.placed.len() + released;
    let text = format!("pod group {group_key}: {placeable}/{min} members placeable: {why}");
    Some((group_key, text))
}
