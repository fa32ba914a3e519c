//! Time as the scheduler sees it: back-off, gang Permit timeouts and bench latencies.
//!
//! The scheduler never reads the wall clock directly, so tests drive timeouts with a
//! [`FakeClock`] (or [`TokioClock`] under `tokio::time::pause()`) instead of sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A monotonic clock: time since some fixed start.
pub trait Clock: Send + Sync {
    /// Time elapsed since the clock's start.
    fn now(&self) -> Duration;
}

/// A clock that moves only when told to.
#[derive(Debug, Clone, Default)]
pub struct FakeClock {
    nanos: Arc<AtomicU64>,
}

impl FakeClock {
    /// A clock at time zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.nanos.fetch_add(by.as_nanos() as u64, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
}

/// Tokio's clock, which `tokio::time::pause()` freezes and `advance` moves.
#[derive(Debug, Clone)]
pub struct TokioClock {
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock starting now.
    pub fn new() -> Self {
        TokioClock {
            start: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}

/// The process's monotonic clock, for production and benchmarks.
#[derive(Debug, Clone)]
pub struct SystemClock {
    start: std::time::Instant,
}

impl SystemClock {
    /// A clock starting now.
    pub fn new() -> Self {
        SystemClock {
            start: std::time::Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_clock_moves_only_when_told() {
        let c = FakeClock::new();
        assert_eq!(c.now(), Duration::ZERO);
        c.clone().advance(Duration::from_secs(3));
        assert_eq!(c.now(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_pause() {
        let c = TokioClock::new();
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(c.now() >= Duration::from_secs(5));
    }
}
