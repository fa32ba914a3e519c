//! Client certificate rotation, as the kubelet's `--rotate-certificates`: once a jittered
//! 70–90 % of the certificate's lifetime (notBefore → notAfter) has passed, the agent asks
//! for a new one with a fresh key ([`super::node_csr`]), authenticated with its current
//! certificate, stores the pair ([`super::cert_files`]) and publishes it; the link to the
//! control plane then reconnects with it (pods keep running). A failed attempt (API
//! unreachable, no signature yet) is logged and retried with back-off; once the current
//! certificate has expired, the bootstrap token (when the agent was given one) asks instead.
//!
//! Only credentials the agent obtained itself under `<root>/pki` are rotated; an operator's
//! `--client-cert`/`--client-key` stay as given.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::ServerTls;
use super::backoff::Backoff;
use super::cert_files::{NodeCertificateFiles, validity};
use super::node_csr::{Requester, request_node_certificate};

/// The earliest point of the lifetime a rotation starts at (kubelet: 70 %).
const EARLIEST: f64 = 0.7;
/// The width of the jitter window (kubelet: up to 90 %).
const WINDOW: f64 = 0.2;
/// The longest single sleep, so that a changed wall clock is noticed.
const LONGEST_SLEEP: Duration = Duration::from_secs(60);
/// How long one attempt waits for its request to be signed.
const SIGNATURE_WAIT: Duration = Duration::from_secs(300);

/// Where and how the agent renews its client certificate.
#[derive(Debug, Clone)]
pub struct CertificateRotation {
    /// The directory of the pair (`<root>/pki`).
    pub dir: PathBuf,
    /// The bootstrap token, for when the certificate expired before it could be renewed.
    pub bootstrap_token: Option<String>,
    /// First delay between failed attempts.
    pub retry_initial: Duration,
    /// Largest delay between failed attempts.
    pub retry_max: Duration,
}

impl CertificateRotation {
    /// Rotation of the pair under `dir`, retrying after 1 s, doubling to a minute.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            bootstrap_token: None,
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
        }
    }
}

/// When to rotate a certificate valid from `not_before` to `not_after`: `jitter` (in
/// [0, 1)) picks a point between 70 % and 90 % of the lifetime, as the kubelet's
/// certificate manager does. A certificate that ends before it begins is due at once.
pub fn rotation_deadline(not_before: SystemTime, not_after: SystemTime, jitter: f64) -> SystemTime {
    let Ok(lifetime) = not_after.duration_since(not_before) else {
        return not_before;
    };
    let fraction = EARLIEST + WINDOW * jitter.clamp(0.0, 1.0);
    not_before + lifetime.mul_f64(fraction)
}

/// A number in [0, 1), different in every process and call (std's randomly keyed hasher;
/// the jitter only spreads nodes apart, it guards no secret).
fn jitter() -> f64 {
    use std::hash::BuildHasher;
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let bits = std::collections::hash_map::RandomState::new().hash_one(nanos);
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Renews the certificate in `credentials` before it expires, for ever (until
/// `shutdown`), publishing each new pair there. `server` is the API's `https://` URL.
pub async fn run(
    rotation: CertificateRotation,
    server: String,
    node: String,
    credentials: watch::Sender<ServerTls>,
    shutdown: CancellationToken,
) {
    let files = NodeCertificateFiles::new(&rotation.dir);
    let mut backoff = Backoff::new(rotation.retry_initial, rotation.retry_max);
    loop {
        let current = credentials.borrow().clone();
        let Some(valid) = validity(&current.cert_pem) else {
            tracing::error!("the node certificate cannot be read; it will not be rotated");
            return;
        };
        let deadline = rotation_deadline(valid.not_before, valid.not_after, jitter());
        tracing::info!(
            serial = %valid.serial,
            expires = %jiff::Timestamp::try_from(valid.not_after).map(|t| t.to_string()).unwrap_or_default(),
            rotates = %jiff::Timestamp::try_from(deadline).map(|t| t.to_string()).unwrap_or_default(),
            "node client certificate rotation scheduled"
        );
        if !sleep_until(deadline, &shutdown).await {
            return;
        }
        loop {
            let expired = SystemTime::now() >= valid.not_after;
            let requester = match (&rotation.bootstrap_token, expired) {
                (Some(token), true) => Requester::Token(token),
                _ => Requester::Certificate {
                    cert_pem: &current.cert_pem,
                    key_pem: &current.key_pem,
                },
            };
            let asked = tokio::time::Instant::now();
            let attempt = tokio::select! {
                issued = request_node_certificate(&server, &current.ca_pem, requester, &node, SIGNATURE_WAIT) => issued,
                () = shutdown.cancelled() => return,
            };
            let stored = attempt.map_err(|e| e.to_string()).and_then(|issued| {
                files
                    .store(&issued.pair)
                    .map(|()| issued)
                    .map_err(|e| format!("storing the new certificate: {e}"))
            });
            match stored {
                Ok(issued) => {
                    let serial = validity(&issued.pair.cert_pem).map(|v| v.serial);
                    tracing::info!(
                        csr = %issued.csr,
                        serial = %serial.unwrap_or_default(),
                        signed_in_ms = asked.elapsed().as_millis() as u64,
                        "node client certificate rotated"
                    );
                    credentials.send_replace(current.with_identity(&issued.pair));
                    backoff.reset();
                    break;
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        "rotating the node client certificate: {e}; retrying in {delay:?}"
                    );
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.cancelled() => return,
                    }
                }
            }
        }
    }
}

/// Sleeps until the wall clock reaches `deadline`; `false` when `shutdown` came first.
async fn sleep_until(deadline: SystemTime, shutdown: &CancellationToken) -> bool {
    loop {
        let Ok(left) = deadline.duration_since(SystemTime::now()) else {
            return true;
        };
        if left.is_zero() {
            return true;
        }
        tokio::select! {
            () = tokio::time::sleep(left.min(LONGEST_SLEEP)) => {}
            () = shutdown.cancelled() => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    /// Equal to the microsecond (the fraction is a float).
    fn same(a: SystemTime, b: SystemTime) -> bool {
        let gap = a
            .duration_since(b)
            .or_else(|_| b.duration_since(a))
            .unwrap();
        gap < Duration::from_micros(1)
    }

    #[test]
    fn the_deadline_falls_between_70_and_90_percent_of_the_lifetime() {
        // Valid 1000 s from t=10 000: due between 10 700 and 10 900.
        let (from, to) = (at(10_000), at(11_000));
        assert!(same(rotation_deadline(from, to, 0.0), at(10_700)));
        assert!(same(rotation_deadline(from, to, 0.5), at(10_800)));
        let late = rotation_deadline(from, to, 0.999_999);
        assert!(late < at(10_900) && late > at(10_899), "{late:?}");
        // Out-of-range jitter stays inside the window.
        assert!(same(rotation_deadline(from, to, -1.0), at(10_700)));
        assert!(same(rotation_deadline(from, to, 7.0), at(10_900)));
        // From notBefore, not from now: a certificate backdated 4 s and valid 40 s after
        // issue (t=4) is due at 35.2 s, 31.2 s after issue.
        assert!(same(
            rotation_deadline(at(0), at(44), 0.5),
            at(0) + Duration::from_millis(35_200)
        ));
        // Upside down: due at once.
        assert_eq!(rotation_deadline(to, from, 0.5), to);
    }

    #[test]
    fn jitter_stays_in_the_unit_interval_and_varies() {
        let draws: Vec<f64> = (0..64).map(|_| jitter()).collect();
        assert!(draws.iter().all(|j| (0.0..1.0).contains(j)), "{draws:?}");
        let first = draws[0];
        assert!(draws.iter().any(|j| *j != first), "{draws:?}");
        for j in draws {
            let d = rotation_deadline(at(0), at(100), j);
            assert!(d >= at(70) && d < at(90), "{d:?}");
        }
    }

    /// An unreachable API (connections accepted and dropped) makes attempt after attempt,
    /// each logged, and the task lives on with the old credentials until shutdown.
    #[tokio::test]
    async fn failed_attempts_are_retried_without_ending_the_task() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = format!("https://{}", listener.local_addr().unwrap());
        let (attempts, mut seen) = watch::channel(0usize);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                drop(tcp);
                attempts.send_modify(|n| *n += 1);
            }
        });
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["n".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let cert = params.self_signed(&key).unwrap().pem().into_bytes();
        let tls = ServerTls {
            ca_pem: cert.clone(),
            cert_pem: cert,
            key_pem: key.serialize_pem().into_bytes(),
        };
        let dir = tempfile::tempdir().unwrap();
        let mut rotation = CertificateRotation::new(dir.path());
        rotation.retry_initial = Duration::from_millis(5);
        rotation.retry_max = Duration::from_millis(20);
        let (credentials, current) = watch::channel(tls.clone());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(
            rotation,
            server,
            "n".into(),
            credentials,
            shutdown.clone(),
        ));
        let waited = tokio::time::timeout(Duration::from_secs(30), seen.wait_for(|n| *n >= 3));
        assert!(waited.await.is_ok(), "three attempts");
        assert!(!task.is_finished(), "the rotation task goes on");
        assert_eq!(current.borrow().cert_pem, tls.cert_pem);
        assert!(!dir.path().join("node.crt").exists());
        shutdown.cancel();
        task.await.unwrap();
    }

    /// The sleep ends at the deadline, or at once for one in the past.
    #[tokio::test]
    async fn a_past_deadline_is_due_at_once_and_shutdown_ends_the_wait() {
        let shutdown = CancellationToken::new();
        assert!(sleep_until(SystemTime::now() - Duration::from_secs(5), &shutdown).await);
        shutdown.cancel();
        assert!(!sleep_until(SystemTime::now() + Duration::from_secs(3600), &shutdown).await);
    }
}
