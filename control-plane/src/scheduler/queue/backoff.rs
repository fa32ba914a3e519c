//! Exponential back-off for pods that failed a scheduling attempt.

use std::time::Duration;

/// Back-off policy: `initial · 2^(attempts-1)`, capped at `max` (kube-scheduler: 1 s, 10 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Back-off after the first failed attempt.
    pub initial: Duration,
    /// Longest back-off.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// Back-off after `attempts` failed attempts (0 attempts: none).
    pub fn after(&self, attempts: u32) -> Duration {
        if attempts == 0 {
            return Duration::ZERO;
        }
        let shift = (attempts - 1).min(20);
        self.initial.saturating_mul(1 << shift).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let b = Backoff::default();
        assert_eq!(b.after(0), Duration::ZERO);
        assert_eq!(b.after(1), Duration::from_secs(1));
        assert_eq!(b.after(2), Duration::from_secs(2));
        assert_eq!(b.after(4), Duration::from_secs(8));
        assert_eq!(b.after(5), Duration::from_secs(10));
        assert_eq!(b.after(1000), Duration::from_secs(10));
    }
}
