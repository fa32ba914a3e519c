//! The per-device health table. Writers (the monitor) change it; readers
//! (`ListAndWatch`, `Allocate`) read a snapshot or wait for the next change
//! through a `tokio::sync::watch` channel.

use std::collections::BTreeMap;
use std::time::Instant;

use tokio::sync::watch;

/// Health of one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Can be allocated.
    Healthy,
    /// Must not be allocated; `since` is the last critical event.
    Unhealthy {
        /// When the last critical event arrived.
        since: Instant,
    },
}

impl Health {
    /// True for [`Health::Healthy`].
    pub fn is_healthy(self) -> bool {
        matches!(self, Health::Healthy)
    }
}

/// Device ID → health, shared by the monitor and the gRPC services.
#[derive(Debug, Clone)]
pub struct HealthTable {
    tx: watch::Sender<BTreeMap<String, Health>>,
}

impl HealthTable {
    /// A table with every device healthy.
    pub fn new<'a>(ids: impl IntoIterator<Item = &'a str>) -> Self {
        let all = ids
            .into_iter()
            .map(|id| (id.to_string(), Health::Healthy))
            .collect();
        Self {
            tx: watch::Sender::new(all),
        }
    }

    /// The current health of every device.
    pub fn snapshot(&self) -> BTreeMap<String, Health> {
        self.tx.borrow().clone()
    }

    /// A receiver that wakes on every change.
    pub fn subscribe(&self) -> watch::Receiver<BTreeMap<String, Health>> {
        self.tx.subscribe()
    }

    /// Health of one device, `None` when unknown.
    pub fn get(&self, id: &str) -> Option<Health> {
        self.tx.borrow().get(id).copied()
    }

    /// Marks a device unhealthy (again); returns true when it was healthy.
    pub fn mark_unhealthy(&self, id: &str, now: Instant) -> bool {
        let mut was_healthy = false;
        self.tx.send_if_modified(|all| match all.get_mut(id) {
            Some(h) => {
                was_healthy = h.is_healthy();
                *h = Health::Unhealthy { since: now };
                was_healthy
            }
            None => false,
        });
        was_healthy
    }

    /// Marks a device healthy; returns true when it was unhealthy.
    pub fn mark_healthy(&self, id: &str) -> bool {
        self.tx.send_if_modified(|all| match all.get_mut(id) {
            Some(h) if !h.is_healthy() => {
                *h = Health::Healthy;
                true
            }
            _ => false,
        })
    }
}
