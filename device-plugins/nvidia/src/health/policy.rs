//! Which health events take a GPU out of service.
//!
//! Application XIDs (a kernel faulted, a bad memory access from user code)
//! say nothing about the GPU itself, so by default they are ignored, as in
//! NVIDIA's own device plugin: 13 (graphics engine exception), 31 (MMU
//! fault), 43 (GPU stopped processing), 45 (preemptive cleanup), 68 (video
//! processor exception) and 109 (context switch timeout). Every other XID and
//! every double-bit ECC error marks the GPU unhealthy.

use std::collections::BTreeSet;

use crate::gpu::HealthEventKind;

/// The XIDs ignored unless configured otherwise.
pub const DEFAULT_IGNORED_XIDS: &[u64] = &[13, 31, 43, 45, 68, 109];

/// Decides whether a health event makes a GPU unhealthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XidPolicy {
    ignored: BTreeSet<u64>,
}

impl Default for XidPolicy {
    fn default() -> Self {
        Self::ignoring(DEFAULT_IGNORED_XIDS.iter().copied())
    }
}

impl XidPolicy {
    /// A policy that ignores exactly these XIDs.
    pub fn ignoring(xids: impl IntoIterator<Item = u64>) -> Self {
        Self {
            ignored: xids.into_iter().collect(),
        }
    }

    /// The ignored XIDs, ascending.
    pub fn ignored(&self) -> impl Iterator<Item = u64> + '_ {
        self.ignored.iter().copied()
    }

    /// True when `event` makes the GPU unhealthy.
    pub fn is_critical(&self, event: HealthEventKind) -> bool {
        match event {
            HealthEventKind::Xid(xid) => !self.ignored.contains(&xid),
            HealthEventKind::UnknownXid | HealthEventKind::DoubleBitEcc => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_xids_are_ignored_by_default() {
        let p = XidPolicy::default();
        for xid in DEFAULT_IGNORED_XIDS {
            assert!(!p.is_critical(HealthEventKind::Xid(*xid)));
        }
        assert!(p.is_critical(HealthEventKind::Xid(79)));
        assert!(p.is_critical(HealthEventKind::Xid(48)));
        assert!(p.is_critical(HealthEventKind::DoubleBitEcc));
        assert!(p.is_critical(HealthEventKind::UnknownXid));
    }

    #[test]
    fn ignored_set_is_configurable() {
        let p = XidPolicy::ignoring([79]);
        assert!(!p.is_critical(HealthEventKind::Xid(79)));
        assert!(p.is_critical(HealthEventKind::Xid(13)));
    }
}
