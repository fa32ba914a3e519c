//! Joining with a bootstrap token, as the kubelet's TLS bootstrap does: the agent makes its
//! own key, asks the API (over TLS, trusting the cluster CA, with the token) for a client
//! certificate with a `CertificateSigningRequest` ([`super::node_csr`]), waits until the
//! control plane approves and signs it, and keeps key and certificate in
//! `<root>/pki/node.{key,crt}` (mode 0600, [`super::cert_files`]). A later start with them
//! there needs no token; one whose certificate has expired joins again with the token
//! when it has one. [`super::cert_rotation`] renews the pair while the agent runs.

use std::path::Path;
use std::time::{Duration, SystemTime};

use super::ServerTls;
use super::cert_files::{NodeCertificateFiles, validity};
use super::node_csr::{Requester, request_node_certificate};

/// Why the node could not get its certificate.
#[derive(Debug, thiserror::Error)]
#[error("joining with the bootstrap token: {0}")]
pub struct BootstrapError(String);

/// The node's TLS credentials under `dir`: loaded when there and unexpired, else requested
/// from the API at `server` (an `https://` URL) with `token`, waiting at most `timeout`
/// for the signature.
pub async fn node_credentials(
    server: &str,
    ca_pem: &[u8],
    token: Option<&str>,
    node: &str,
    dir: &Path,
    timeout: Duration,
) -> Result<ServerTls, BootstrapError> {
    let files = NodeCertificateFiles::new(dir);
    let stored = files
        .load()
        .map_err(|e| BootstrapError(format!("reading the node certificate: {e}")))?;
    if let Some(pair) = stored {
        let not_after = validity(&pair.cert_pem).map(|v| v.not_after);
        if not_after.is_some_and(|t| t > SystemTime::now()) {
            return Ok(ServerTls {
                ca_pem: ca_pem.to_vec(),
                cert_pem: pair.cert_pem,
                key_pem: pair.key_pem,
            });
        }
        let when = not_after
            .and_then(|t| jiff::Timestamp::try_from(t).ok())
            .map(|t| format!("expired at {t}"))
            .unwrap_or_else(|| "cannot be read".into());
        if token.is_none() {
            return Err(BootstrapError(format!(
                "the node certificate {} {when}; give --bootstrap-token to join again",
                files.cert_path().display()
            )));
        }
        tracing::warn!(cert = %files.cert_path().display(), "the node certificate {when}; joining again with the bootstrap token");
    }
    let Some(token) = token else {
        return Err(BootstrapError(format!(
            "there is no node certificate in {} and no bootstrap token (--bootstrap-token) to ask for one",
            dir.display()
        )));
    };
    let issued = request_node_certificate(server, ca_pem, Requester::Token(token), node, timeout)
        .await
        .map_err(|e| BootstrapError(e.to_string()))?;
    files
        .store(&issued.pair)
        .map_err(|e| BootstrapError(e.to_string()))?;
    tracing::info!(csr = %issued.csr, "node client certificate issued");
    Ok(ServerTls {
        ca_pem: ca_pem.to_vec(),
        cert_pem: issued.pair.cert_pem,
        key_pem: issued.pair.key_pem,
    })
}
