//! The health monitor: a blocking loop (its own thread, never a tokio worker)
//! that turns backend events into health changes through the [`XidPolicy`],
//! and re-checks unhealthy GPUs so that a GPU that recovers is advertised
//! again instead of staying out of service until the plugin restarts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::state::Health;
use super::{HealthTable, XidLog, XidPolicy};
use crate::gpu::{GpuBackend, HealthEvent, HealthEventKind};

/// How long one wait for a backend event lasts, so cancellation is noticed.
const EVENT_WAIT: Duration = Duration::from_millis(200);

/// Feeds a [`HealthTable`] from a [`GpuBackend`].
pub struct HealthMonitor {
    /// Where events come from and re-checks go.
    pub backend: Arc<dyn GpuBackend>,
    /// The table to update.
    pub table: HealthTable,
    /// Where every XID is recorded, critical or not.
    pub xids: XidLog,
    /// Which events are critical.
    pub policy: XidPolicy,
    /// A GPU is re-checked once it has been unhealthy this long without a
    /// new critical event, and again every interval after that.
    pub recheck_after: Duration,
}

impl HealthMonitor {
    /// Applies one event; returns true when it marked the GPU unhealthy.
    pub fn apply(&self, event: &HealthEvent) -> bool {
        if let HealthEventKind::Xid(xid) = event.kind
            && self.table.get(&event.device_id).is_some()
        {
            self.xids.record(&event.device_id, xid);
        }
        if !self.policy.is_critical(event.kind) {
            tracing::info!(device = %event.device_id, event = ?event.kind, "ignored health event (application XID)");
            return false;
        }
        if self.table.get(&event.device_id).is_none() {
            tracing::warn!(device = %event.device_id, event = ?event.kind, "health event for a device not advertised");
            return false;
        }
        if self.table.mark_unhealthy(&event.device_id, Instant::now()) {
            tracing::warn!(device = %event.device_id, event = ?event.kind, "device unhealthy");
        }
        true
    }

    /// Re-checks the GPUs that have been unhealthy long enough.
    pub fn recheck_due(&self, now: Instant) {
        for (id, health) in self.table.snapshot() {
            let Health::Unhealthy { since } = health else {
                continue;
            };
            if now.duration_since(since) < self.recheck_after {
                continue;
            }
            match self.backend.recheck(&id) {
                Ok(true) => {
                    if self.table.mark_healthy(&id) {
                        tracing::info!(device = %id, "device recovered, healthy again");
                    }
                }
                Ok(false) => {
                    // Start the hold-down again so the next check is one interval away.
                    self.table.mark_unhealthy(&id, now);
                }
                Err(e) => tracing::warn!(device = %id, error = %e, "health re-check failed"),
            }
        }
    }

    /// Runs until `cancel` fires. Blocking: call from `spawn_blocking` or a
    /// thread of its own.
    pub fn run(self, cancel: CancellationToken) {
        let mut next_recheck = Instant::now() + self.recheck_after;
        while !cancel.is_cancelled() {
            match self.backend.next_event(EVENT_WAIT) {
                Ok(Some(event)) => {
                    self.apply(&event);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "waiting for GPU health events failed");
                    std::thread::sleep(EVENT_WAIT);
                }
            }
            let now = Instant::now();
            if now >= next_recheck {
                self.recheck_due(now);
                next_recheck = now + self.recheck_after.min(Duration::from_secs(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::backend::SimulatedBackend;
    use crate::device_nodes::RecordingNodeMaker;
    use crate::gpu::HealthEventKind;
    use crate::topology::Topology;

    fn monitor() -> (HealthMonitor, Arc<SimulatedBackend>, Vec<String>) {
        let backend = Arc::new(
            SimulatedBackend::create(
                Topology::Pcie4x,
                Path::new("/sim"),
                &RecordingNodeMaker::default(),
            )
            .unwrap(),
        );
        let ids: Vec<String> = backend
            .discover()
            .unwrap()
            .into_iter()
            .map(|g| g.id)
            .collect();
        let m = HealthMonitor {
            backend: backend.clone(),
            table: HealthTable::new(ids.iter().map(String::as_str)),
            xids: XidLog::default(),
            policy: XidPolicy::default(),
            recheck_after: Duration::from_secs(30),
        };
        (m, backend, ids)
    }

    fn xid(id: &str, xid: u64) -> HealthEvent {
        HealthEvent {
            device_id: id.to_string(),
            kind: HealthEventKind::Xid(xid),
        }
    }

    #[test]
    fn critical_events_mark_unhealthy_and_application_xids_do_not() {
        let (m, _, ids) = monitor();
        let mut changes = m.table.subscribe();
        changes.borrow_and_update();
        assert!(!m.apply(&xid(&ids[0], 43)));
        assert!(!changes.has_changed().unwrap());
        assert!(m.apply(&xid(&ids[0], 79)));
        assert!(changes.has_changed().unwrap());
        assert!(!m.table.get(&ids[0]).unwrap().is_healthy());
        assert!(m.table.get(&ids[1]).unwrap().is_healthy());
        assert!(!m.apply(&xid("GPU-unknown", 79)));
        // Both XIDs are on record, the ignored one too; the unknown device's is not.
        assert_eq!(m.xids.get(&ids[0]).last, Some(79));
        assert_eq!(m.xids.get(&ids[0]).counts.len(), 2);
        assert_eq!(m.xids.get("GPU-unknown").last, None);
    }

    #[test]
    fn recheck_waits_for_the_hold_down_and_for_recovery() {
        let (m, backend, ids) = monitor();
        backend.inject_xid(&ids[2], 48).unwrap();
        let event = backend
            .next_event(Duration::from_millis(10))
            .unwrap()
            .unwrap();
        m.apply(&event);
        let Some(Health::Unhealthy { since }) = m.table.get(&ids[2]) else {
            panic!("not unhealthy")
        };
        // Recovered, but the hold-down has not passed: still unhealthy.
        backend.recover(&ids[2]).unwrap();
        m.recheck_due(since + Duration::from_secs(29));
        assert!(!m.table.get(&ids[2]).unwrap().is_healthy());
        m.recheck_due(since + Duration::from_secs(30));
        assert!(m.table.get(&ids[2]).unwrap().is_healthy());
    }

    #[test]
    fn a_gpu_still_faulted_stays_unhealthy_and_restarts_its_hold_down() {
        let (m, backend, ids) = monitor();
        backend.inject_xid(&ids[1], 79).unwrap();
        m.apply(
            &backend
                .next_event(Duration::from_millis(10))
                .unwrap()
                .unwrap(),
        );
        let Some(Health::Unhealthy { since }) = m.table.get(&ids[1]) else {
            panic!("not unhealthy")
        };
        let later = since + Duration::from_secs(31);
        m.recheck_due(later);
        assert_eq!(
            m.table.get(&ids[1]),
            Some(Health::Unhealthy { since: later })
        );
    }
}
