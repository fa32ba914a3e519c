//! Where controllers read the time.
//!
//! Conditions, `completionTime`, TTLs and restart back-off are wall-clock timestamps; the
//! [`TokioClock`] derives them from tokio's clock so tests can run them under
//! `tokio::time::pause()` and advance hours in an instant.

use std::fmt::Debug;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// A source of the current time.
pub trait Clock: Send + Sync + Debug {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// The wall-clock time at creation plus the time tokio's clock has advanced since, so a
/// paused tokio runtime moves it too.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    wall: Timestamp,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock that reads the wall-clock time now and follows tokio's clock from here.
    pub fn new() -> Self {
        Self {
            wall: Timestamp::now(),
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
    fn now(&self) -> Timestamp {
        let elapsed = SignedDuration::try_from(self.start.elapsed()).unwrap_or(SignedDuration::MAX);
        self.wall.saturating_add(elapsed).unwrap_or(self.wall)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let clock = TokioClock::new();
        let before = clock.now();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        let elapsed = clock.now().duration_since(before);
        assert_eq!(elapsed, SignedDuration::from_secs(3600));
    }
}
