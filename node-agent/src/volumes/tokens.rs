//! Where projected `serviceAccountToken` sources get their tokens: a [`TokenSource`] (the
//! agent's is `agent::sa_tokens::TokenManager`, which asks the control plane and caches),
//! and when a token is due to be replaced: kubelet's rule, once 80% of its lifetime has
//! passed or it is older than 24 hours.

use std::time::{Duration, SystemTime};

use coxswain_api::k8s::Pod;

/// What one `serviceAccountToken` source asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenRequest {
    /// The token's audience (the API server's when empty).
    pub audience: String,
    /// Its lifetime in seconds (kube's default 3600 when the source names none).
    pub expiration_seconds: i64,
}

/// Hands out service-account tokens for pods' projected volumes.
pub trait TokenSource: Send + Sync {
    /// A current token for `pod`'s service account; blocks (it may ask the control
    /// plane). The error says why none could be had.
    fn token(&self, pod: &Pod, request: &TokenRequest) -> Result<String, String>;

    /// The pod with `uid` is gone: its tokens are dropped.
    fn forget(&self, uid: &str);
}

/// Whether a token issued at `issued`, expiring at `expires`, is due for replacement at
/// `now`: 80% of its lifetime has passed, or 24 hours.
pub fn due(issued: SystemTime, expires: SystemTime, now: SystemTime) -> bool {
    let lifetime = expires.duration_since(issued).unwrap_or_default();
    let age = now.duration_since(issued).unwrap_or_default();
    age >= lifetime.mul_f64(0.8) || age > Duration::from_secs(24 * 3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_due_after_four_fifths_of_their_life_or_a_day() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |s| t0 + Duration::from_secs(s);
        assert!(!due(t0, at(3600), at(0)));
        assert!(!due(t0, at(3600), at(2879)));
        assert!(due(t0, at(3600), at(2880)));
        assert!(due(t0, at(3600), at(4000)), "expired");
        let two_days = 48 * 3600;
        assert!(!due(t0, at(two_days), at(24 * 3600)));
        assert!(due(t0, at(two_days), at(24 * 3600 + 1)));
        // A clock behind the issuer's: not due.
        assert!(!due(t0, at(3600), t0 - Duration::from_secs(5)));
    }
}
