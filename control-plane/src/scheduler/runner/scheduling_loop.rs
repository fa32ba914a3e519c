//! The scheduling thread: owns the [`Scheduler`], applies watch input between cycles,
//! runs cycles while pods are active, and sleeps until input or the next back-off or
//! Permit deadline.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::Duration;

use super::super::clock::Clock;
use super::super::{CycleResult, Scheduler};
use super::feed::{Feed, Input};
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
) {
    let mut feed = Feed::default();
    loop {
        loop {
            match rx.try_recv() {
                Ok(Message::Input(input)) => feed.apply(&mut scheduler, *input),
                Ok(Message::Stop) | Err(TryRecvError::Disconnected) => return,
                Err(TryRecvError::Empty) => break,
            }
        }
        scheduler.tick();
        if let Some(report) = scheduler.schedule_one() {
            for binding in &report.bound {
                status.send(scheduled(&binding.pod));
            }
            match &report.result {
                CycleResult::Unschedulable(s) if s.is_rejected() => {
                    let message = report
                        .failure
                        .clone()
                        .unwrap_or_else(|| s.reason.to_string());
                    status.send(unschedulable(&report.pod, message));
                }
                CycleResult::Preempting { .. } => {
                    let message = report.failure.clone().unwrap_or_default();
                    status.send(unschedulable(&report.pod, message));
                }
                _ => {}
            }
            continue;
        }
        let wait = scheduler
            .next_wakeup()
            .map_or(IDLE_WAIT, |at| at.saturating_sub(clock.now()))
            .min(IDLE_WAIT);
        match rx.recv_timeout(wait) {
            Ok(Message::Input(input)) => feed.apply(&mut scheduler, *input),
            Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
}
