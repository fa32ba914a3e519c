//! Watching containers: reading their state back from the runtime (exit codes,
//! OOM kills), restarting them under the restart policy with exponential back-off,
//! and re-adopting the containers a previous agent left behind.

use std::time::{Duration, Instant};

use super::PodWorker;
use super::record::{Checkpoint, ContainerRecord, Current, Termination, from_ns, to_ns};
use crate::runtime::Status;

/// How long a stopped container may lack its exit file before it is reported unknown
/// (the shim writes it right after the container's init is reaped).
const EXIT_FILE_WAIT: Duration = Duration::from_secs(5);

impl PodWorker {
    pub(super) fn record_mut(&mut self, init: bool, i: usize) -> &mut ContainerRecord {
        if init {
            &mut self.init[i]
        } else {
            &mut self.apps[i]
        }
    }

    pub(super) fn save_checkpoint(&self, rec: &ContainerRecord) {
        // Best effort: a lost checkpoint costs a restart count, never a container.
        let _ = Checkpoint::of(rec).save(&self.checkpoint_dir(), &rec.spec.name);
    }

    /// Reads a running container's state back; records its end.
    pub(super) fn observe(&mut self, init: bool, i: usize) {
        let rec = if init { &self.init[i] } else { &self.apps[i] };
        let Current::Running { started, .. } = rec.current.clone() else {
            return;
        };
        let id = rec.id.clone();
        let state = match self.deps.runtime.state(&id) {
            Ok(state) => state,
            Err(_) => return, // transient: look again next step
        };
        let now = self.deps.clock.now();
        let termination = match state {
            None => Termination {
                exit_code: 137,
                signal: None,
                reason: "ContainerStatusUnknown".into(),
                message: Some("the container could not be located when the pod was checked".into()),
                started_ns: Some(to_ns(started)),
                finished_ns: to_ns(now),
            },
            Some(s) if s.status != Status::Stopped => {
                let rec = self.record_mut(init, i);
                rec.current = Current::Running {
                    pid: s.pid,
                    started,
                };
                rec.stopped_since = None;
                return;
            }
            Some(s) => match s.exit {
                Some(exit) => {
                    let cgroup = self
                        .sandbox
                        .as_ref()
                        .map(|sb| format!("{}/{id}", sb.cgroup));
                    let oom = cgroup
                        .and_then(|c| self.deps.sandbox.cgroups().oom_kills(&c).ok())
                        .unwrap_or(0)
                        > 0;
                    let reason = if oom {
                        "OOMKilled"
                    } else if exit.code == 0 {
                        "Completed"
                    } else {
                        "Error"
                    };
                    Termination {
                        exit_code: exit.code,
                        signal: exit.signal,
                        reason: reason.into(),
                        message: None,
                        started_ns: Some(to_ns(started)),
                        finished_ns: to_ns(exit.finished_at),
                    }
                }
                None => {
                    let rec = self.record_mut(init, i);
                    let since = *rec.stopped_since.get_or_insert_with(Instant::now);
                    if since.elapsed() < EXIT_FILE_WAIT {
                        return;
                    }
                    Termination {
                        exit_code: 255,
                        signal: None,
                        reason: "Error".into(),
                        message: Some("exit status lost (shim gone)".into()),
                        started_ns: Some(to_ns(started)),
                        finished_ns: to_ns(now),
                    }
                }
            },
        };
        self.release(&id);
        let rec = self.record_mut(init, i);
        rec.current = Current::Terminated(termination);
        rec.stopped_since = None;
        let rec = rec.clone();
        self.save_checkpoint(&rec);
    }

    /// Deletes a container instance from the runtime, unmounts its rootfs and drops its
    /// bundle and writable layer (a restarted container starts from a fresh layer, as in
    /// Kubernetes). Best effort: leftovers are retried by pod removal and orphan cleanup.
    pub(super) fn release(&self, id: &str) {
        let dir = self.deps.config.container_dir(id);
        let deleted = self.deps.runtime.delete(id).is_ok();
        if deleted && self.deps.images.unmount_rootfs(&dir).is_ok() {
            let _ = super::cleanup::remove_dir(&dir);
        }
    }

    /// Starts a container that is not running, honouring the restart back-off.
    pub(super) fn maybe_start(&mut self, init: bool, i: usize) {
        if self.held {
            return;
        }
        let now = self.deps.clock.now();
        let (initial, max) = (
            self.deps.config.backoff_initial,
            self.deps.config.backoff_max,
        );
        let pod_name = self.pod.metadata.name.clone().unwrap_or_default();
        let rec = self.record_mut(init, i);
        if let Current::Terminated(t) = rec.current.clone() {
            let ran = t
                .started_ns
                .map(|s| Duration::from_nanos(t.finished_ns.saturating_sub(s)))
                .unwrap_or_default();
            if ran > max * 2 {
                rec.backoff = initial;
            }
            let delay = rec.backoff;
            rec.backoff = (delay * 2).min(max);
            rec.next_start = Some(now + delay);
            rec.current = Current::Waiting {
                reason: "CrashLoopBackOff".into(),
                message: Some(format!(
                    "back-off {}s restarting failed container={} pod={pod_name}",
                    delay.as_secs_f64(),
                    rec.spec.name
                )),
            };
            rec.last = Some(t);
            let rec = rec.clone();
            self.save_checkpoint(&rec);
            return;
        }
        if rec.next_start.is_some_and(|at| now < at) {
            // Between pull attempts Kubernetes reports ImagePullBackOff.
            if let Current::Waiting { reason, .. } = &mut rec.current
                && reason == "ErrImagePull"
            {
                *reason = "ImagePullBackOff".into();
            }
            return;
        }
        rec.next_start = None;
        self.start_container(init, i);
    }

    /// Restores records from checkpoints and adopts containers still known to the runtime.
    pub(super) fn adopt(&mut self) {
        let dir = self.checkpoint_dir();
        let now = self.deps.clock.now();
        for rec in self.init.iter_mut().chain(self.apps.iter_mut()) {
            if !matches!(rec.current, Current::Waiting { .. }) || rec.last.is_some() {
                continue; // this worker already knows the container
            }
            let checkpoint = Checkpoint::load(&dir, &rec.spec.name).unwrap_or_default();
            rec.restart_count = checkpoint.restart_count;
            rec.last = checkpoint.last.clone();
            if let Some(t) = checkpoint.terminated.clone() {
                rec.current = Current::Terminated(t);
            }
            let started = checkpoint.started_ns.map(from_ns).unwrap_or(now);
            match self.deps.runtime.state(&rec.id) {
                Ok(Some(s)) if s.status == Status::Created => {
                    // The previous agent died between create and start: start afresh.
                    let _ = self.deps.runtime.delete(&rec.id);
                }
                Ok(Some(s)) => {
                    rec.current = Current::Running {
                        pid: s.pid,
                        started,
                    }
                }
                _ => {}
            }
        }
    }
}

/// Whether a record may be counted as a restart when created (an earlier instance ended).
pub(super) fn is_restart(rec: &ContainerRecord) -> bool {
    rec.last.is_some()
}
