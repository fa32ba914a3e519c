//! Per-cycle state shared by the plugins while one pod is being scheduled.
//!
//! Like kube-scheduler's `CycleState`: plugins store typed data under their own key in
//! PreFilter and read it back in Filter, Score and Reserve.
//!
//! Relaxation belongs to the framework: plugins that enforce a *preference* as a filter
//! (a gang's preferred topology domain, NVLink island alignment) register the level at
//! which it may be dropped ([`RELAX_TOPOLOGY`] first, [`RELAX_ISLAND`] last). When no
//! node passes, the framework reruns PreFilter and Filter one level more relaxed.

use std::any::Any;
use std::collections::HashMap;

/// Relaxation level that drops a gang's preferred topology domain.
pub const RELAX_TOPOLOGY: u8 = 1;
/// Relaxation level that drops NVLink-island alignment.
pub const RELAX_ISLAND: u8 = 2;

/// Typed scratch space for one scheduling cycle.
#[derive(Default)]
pub struct CycleState {
    data: HashMap<&'static str, Box<dyn Any + Send + Sync>>,
    levels: u8,
    level: u8,
}

impl CycleState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `value` under `key`, replacing what was there.
    pub fn write<T: Any + Send + Sync>(&mut self, key: &'static str, value: T) {
        self.data.insert(key, Box::new(value));
    }

    /// The value stored under `key`, if it has type `T`.
    pub fn read<T: Any + Send + Sync>(&self, key: &'static str) -> Option<&T> {
        self.data.get(key).and_then(|v| v.downcast_ref())
    }

    /// The value stored under `key`, mutably, if it has type `T`.
    pub fn read_mut<T: Any + Send + Sync>(&mut self, key: &'static str) -> Option<&mut T> {
        self.data.get_mut(key).and_then(|v| v.downcast_mut())
    }

    /// Declares that a preference enforced as a filter may be dropped at `level` (1..=7).
    pub fn allow_relaxing(&mut self, level: u8) {
        self.levels |= 1 << level.min(7);
    }

    /// Whether preferences of `level` are dropped in this pass.
    pub fn is_relaxed(&self, level: u8) -> bool {
        self.level >= level
    }

    /// Whether a more relaxed pass is possible.
    pub fn can_relax(&self) -> bool {
        self.levels >> (self.level + 1) != 0
    }

    /// Moves to the next registered relaxation level.
    pub fn relax(&mut self) {
        while self.can_relax() {
            self.level += 1;
            if self.levels & (1 << self.level) != 0 {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_read_write() {
        let mut s = CycleState::new();
        s.write("a", 5u32);
        assert_eq!(s.read::<u32>("a"), Some(&5));
        assert_eq!(s.read::<u64>("a"), None);
        *s.read_mut::<u32>("a").unwrap() = 6;
        assert_eq!(s.read::<u32>("a"), Some(&6));
    }

    #[test]
    fn relaxes_level_by_level() {
        let mut s = CycleState::new();
        assert!(!s.can_relax());
        s.allow_relaxing(RELAX_ISLAND);
        assert!(s.can_relax() && !s.is_relaxed(RELAX_TOPOLOGY));
        s.relax();
        assert!(s.is_relaxed(RELAX_ISLAND) && !s.can_relax());
        let mut s = CycleState::new();
        s.allow_relaxing(RELAX_TOPOLOGY);
        s.allow_relaxing(RELAX_ISLAND);
        s.relax();
        assert!(s.is_relaxed(RELAX_TOPOLOGY) && !s.is_relaxed(RELAX_ISLAND));
        s.relax();
        assert!(s.is_relaxed(RELAX_ISLAND));
    }
}
