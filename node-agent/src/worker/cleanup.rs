//! Stopping and removing a pod (SIGTERM, grace period, SIGKILL, then containers,
//! root filesystems, volumes, sandbox, the pod directory and its devices), and removing what pods
//! no longer wanted left behind, found by listing the runtime, the agent's
//! directories and the sandboxes.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::SystemTime;

use super::{Action, POLL, PodWorker, State, WorkerDeps};

/// SIGTERM and SIGKILL.
const SIGTERM: i32 = 15;
const SIGKILL: i32 = 9;

/// Removes `dir` if present; refuses while anything is still mounted below it, so a
/// failed unmount can never make us delete through a mount.
pub(super) fn remove_dir(dir: &Path) -> std::io::Result<()> {
    if let Some(mount) = crate::mounts::mounts_under(dir).first() {
        return Err(std::io::Error::other(format!(
            "{} is still mounted",
            mount.display()
        )));
    }
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl PodWorker {
    pub(super) fn step_terminating(
        &mut self,
        deadline: SystemTime,
        term_sent: bool,
        kill_sent: bool,
    ) -> (State, Action) {
        for i in 0..self.init.len() {
            self.observe(true, i);
        }
        for i in 0..self.apps.len() {
            self.observe(false, i);
        }
        let running: Vec<String> = self
            .containers()
            .filter(|c| c.is_running())
            .map(|c| c.id.clone())
            .collect();
        if running.is_empty() {
            return match self.remove_everything() {
                Ok(()) => (State::Removed, Action::Wait),
                Err(message) => {
                    self.problem = Some(("KillPodError".into(), message));
                    (
                        State::Terminating {
                            deadline,
                            term_sent,
                            kill_sent,
                        },
                        Action::Requeue(POLL),
                    )
                }
            };
        }
        let past_deadline = self.deps.clock.now() >= deadline;
        let signal = match (term_sent, kill_sent, past_deadline) {
            (false, _, false) => Some(SIGTERM),
            (_, false, true) => Some(SIGKILL),
            _ => None,
        };
        if let Some(signal) = signal {
            for id in &running {
                let _ = self.deps.runtime.kill(id, signal);
            }
        }
        let next = State::Terminating {
            deadline,
            term_sent: term_sent || signal == Some(SIGTERM),
            kill_sent: kill_sent || signal == Some(SIGKILL),
        };
        (next, Action::Requeue(POLL))
    }

    fn remove_everything(&mut self) -> Result<(), String> {
        let ids: Vec<String> = self.containers().map(|c| c.id.clone()).collect();
        for id in &ids {
            self.deps.runtime.delete(id).map_err(|e| e.to_string())?;
            let dir = self.deps.config.container_dir(id);
            self.deps
                .images
                .unmount_rootfs(&dir)
                .map_err(|e| e.to_string())?;
            remove_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        self.deps
            .volumes
            .teardown(&self.pod_dir())
            .map_err(|e| e.to_string())?;
        self.teardown_network()?;
        self.deps
            .sandbox
            .remove(&self.uid)
            .map_err(|e| e.to_string())?;
        remove_dir(&self.pod_dir()).map_err(|e| format!("{}: {e}", self.pod_dir().display()))?;
        self.deps.devices.release_pod(&self.uid);
        Ok(())
    }
}

/// Removes every container, rootfs, volume, sandbox and pod directory whose pod uid
/// is not in `keep`; returns the uids it cleaned. Containers are killed first.
pub fn remove_orphans(
    deps: &WorkerDeps,
    keep: &BTreeSet<String>,
) -> Result<BTreeSet<String>, String> {
    let mut removed = BTreeSet::new();
    let orphan = |id: &str| {
        id.split_once('_')
            .map(|(uid, _)| uid.to_string())
            .filter(|uid| !keep.contains(uid))
    };
    let mut ids: BTreeSet<String> = deps
        .runtime
        .list()
        .map_err(|e| e.to_string())?
        .into_iter()
        .collect();
    if let Ok(entries) = std::fs::read_dir(deps.config.root.join("containers")) {
        ids.extend(
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned()),
        );
    }
    for id in ids {
        let Some(uid) = orphan(&id) else { continue };
        let _ = deps.runtime.kill(&id, SIGKILL);
        deps.runtime.delete(&id).map_err(|e| e.to_string())?;
        let dir = deps.config.container_dir(&id);
        deps.images
            .unmount_rootfs(&dir)
            .map_err(|e| e.to_string())?;
        remove_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        removed.insert(uid);
    }
    let mut uids = deps.sandbox.list().map_err(|e| e.to_string())?;
    uids.extend(deps.network.attached().map_err(|e| e.to_string())?);
    if let Ok(entries) = std::fs::read_dir(deps.config.root.join("pods")) {
        uids.extend(
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned()),
        );
    }
    // One pod that cannot be cleaned (its CSI driver not up yet) must not keep
    // the others' leftovers: go on, and report the first failure.
    let mut first_error = None;
    for uid in uids.into_iter().filter(|u| !keep.contains(u)) {
        let pod_dir = deps.config.pod_dir(&uid);
        let cleaned = deps
            .volumes
            .teardown(&pod_dir)
            .map_err(|e| e.to_string())
            .and_then(|()| super::pod_network::teardown(deps, &uid))
            .and_then(|()| deps.sandbox.remove(&uid).map_err(|e| e.to_string()))
            .and_then(|()| remove_dir(&pod_dir).map_err(|e| format!("{}: {e}", pod_dir.display())));
        match cleaned {
            Ok(()) => {
                removed.insert(uid);
            }
            Err(e) => {
                first_error.get_or_insert(format!("pod {uid}: {e}"));
            }
        }
    }
    deps.devices.retain_pods(keep);
    match first_error {
        Some(e) => Err(e),
        None => Ok(removed),
    }
}
