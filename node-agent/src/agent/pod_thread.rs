//! One dedicated thread per pod drives its [`PodWorker`]: `step` blocks (it execs
//! runc and mounts), so it never runs on the async runtime. The thread requeues
//! the worker after each [`Action`], wakes early on a command, publishes the pod's
//! status (as JSON, only when it changed) into a `watch`, and says when it ends.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::worker::{Action, PodWorker};

/// What the agent tells a pod's thread.
#[derive(Debug)]
pub enum PodCommand {
    /// The pod object changed: step now.
    Changed,
    /// Newer secrets, configMaps, claims and volumes of the pod (from a later pod event).
    Data(Box<crate::volumes::PodData>),
    /// Stop the pod's containers (SIGTERM, SIGKILL after the grace period) and remove it.
    Terminate(Duration),
    /// The pod's phase in the API is terminal: start nothing again; stop and remove
    /// the pod when a container still runs or when the control plane ended it
    /// (`disrupted`: its node was lost), keep a pod that finished here (its logs).
    Ended {
        /// The pod's grace period.
        grace: Duration,
        /// Whether the API status carries the `DisruptionTarget` condition.
        disrupted: bool,
    },
    /// The agent is stopping: leave the pod running and end the thread.
    Detach,
}

/// How a pod's thread ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodThreadExit {
    /// The pod's uid.
    pub uid: String,
    /// True when the pod was terminated and everything of it removed; false
    /// when the thread was detached and the pod left running.
    pub removed: bool,
}

/// Runs `worker` until it is removed after a [`PodCommand::Terminate`] or told to
/// [`PodCommand::Detach`]; then sends its exit on `exits`.
pub fn run_pod_thread(
    mut worker: PodWorker,
    commands: Receiver<PodCommand>,
    status: watch::Sender<Option<Vec<u8>>>,
    exits: mpsc::UnboundedSender<PodThreadExit>,
) {
    let uid = worker.uid().to_string();
    let mut terminating = false;
    let removed = loop {
        let action = worker.step();
        publish_status(&worker, &status);
        if terminating && worker.is_removed() {
            break true;
        }
        let command = match action {
            Action::Requeue(delay) => match commands.recv_timeout(delay) {
                Ok(command) => Some(command),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => Some(PodCommand::Detach),
            },
            Action::Wait => Some(commands.recv().unwrap_or(PodCommand::Detach)),
        };
        // Apply this command and any queued behind it before stepping again.
        let pending = command
            .into_iter()
            .chain(std::iter::from_fn(|| commands.try_recv().ok()));
        let mut detach = false;
        for command in pending {
            match command {
                PodCommand::Changed => {}
                PodCommand::Data(data) => worker.update_data(*data),
                PodCommand::Terminate(grace) => {
                    terminating = true;
                    worker.terminate(grace);
                }
                PodCommand::Ended { grace, disrupted } => {
                    worker.hold();
                    if disrupted || worker.has_running_containers() {
                        terminating = true;
                        worker.terminate(grace);
                    }
                }
                PodCommand::Detach => detach = true,
            }
        }
        if detach {
            break false;
        }
    };
    let _ = exits.send(PodThreadExit { uid, removed });
}

fn publish_status(worker: &PodWorker, status: &watch::Sender<Option<Vec<u8>>>) {
    let Ok(json) = serde_json::to_vec(&worker.status()) else {
        return;
    };
    status.send_if_modified(|current| {
        if current.as_deref() == Some(json.as_slice()) {
            false
        } else {
            *current = Some(json);
            true
        }
    });
}
