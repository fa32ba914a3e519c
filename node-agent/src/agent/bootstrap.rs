//! Joining with a bootstrap token, as the kubelet's TLS bootstrap does: the agent makes its
//! own key, asks the API (over TLS, trusting the cluster CA, with the token) for a client
//! certificate with a `CertificateSigningRequest` for CN `system:node:<name>`, O
//! `system:nodes`, signer `kubernetes.io/kube-apiserver-client-kubelet`, waits until the
//! control plane approves and signs it, and keeps key and certificate in
//! `<root>/pki/node.{key,crt}` (mode 0600). A later start with them there needs no token.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use super::ServerTls;

/// How often the agent looks at its request while waiting for the certificate.
const POLL: Duration = Duration::from_millis(250);

/// Why the node could not get its certificate.
#[derive(Debug, thiserror::Error)]
#[error("joining with the bootstrap token: {0}")]
pub struct BootstrapError(String);

/// The node's TLS credentials under `dir`: loaded when there, else requested from the API
/// at `server` (an `https://` URL) with `token`, waiting at most `timeout` for the
/// signature.
pub async fn node_credentials(
    server: &str,
    ca_pem: &[u8],
    token: &str,
    node: &str,
    dir: &Path,
    timeout: Duration,
) -> Result<ServerTls, BootstrapError> {
    let (cert_path, key_path) = (dir.join("node.crt"), dir.join("node.key"));
    if let (Ok(cert_pem), Ok(key_pem)) = (std::fs::read(&cert_path), std::fs::read(&key_path)) {
        return Ok(ServerTls {
            ca_pem: ca_pem.to_vec(),
            cert_pem,
            key_pem,
        });
    }
    let fail = |what: &str, e: &dyn std::fmt::Display| BootstrapError(format!("{what}: {e}"));
    let key = rcgen::KeyPair::generate().map_err(|e| fail("making the node key", &e))?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("system:node:{node}"));
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    let request = params
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .map_err(|e| fail("making the certificate request", &e))?;
    let ca = reqwest::Certificate::from_pem(ca_pem).map_err(|e| fail("the CA file", &e))?;
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| fail("the HTTPS client", &e))?;
    let collection = format!(
        "{}/apis/certificates.k8s.io/v1/certificatesigningrequests",
        server.trim_end_matches('/')
    );
    let body = json!({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"generateName": "node-csr-"},
        "spec": {
            "request": base64::engine::general_purpose::STANDARD.encode(&request),
            "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
            "usages": ["digital signature", "client auth"],
        },
    });
    let created = send(http.post(&collection).bearer_auth(token).json(&body))
        .await
        .map_err(|e| fail("creating the certificate signing request", &e))?;
    let name = created["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    tracing::info!(csr = %name, "asked for the node's client certificate");
    let deadline = tokio::time::Instant::now() + timeout;
    let certificate = loop {
        let csr = send(http.get(format!("{collection}/{name}")).bearer_auth(token))
            .await
            .map_err(|e| fail(&format!("reading certificate signing request {name}"), &e))?;
        if let Some(encoded) = csr["status"]["certificate"].as_str() {
            break base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| fail("the issued certificate", &e))?;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(BootstrapError(format!(
                "certificate signing request {name} was not approved and signed within {timeout:?}"
            )));
        }
        tokio::time::sleep(POLL).await;
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(&dir.display().to_string(), &e))?;
    write_private(&key_path, key.serialize_pem().as_bytes())?;
    write_private(&cert_path, &certificate)?;
    tracing::info!(csr = %name, "node client certificate issued");
    Ok(ServerTls {
        ca_pem: ca_pem.to_vec(),
        cert_pem: certificate,
        key_pem: key.serialize_pem().into_bytes(),
    })
}

/// Sends a request; the JSON body of a 2xx, else the server's message.
async fn send(request: reqwest::RequestBuilder) -> Result<Value, String> {
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let message = body["message"].as_str().unwrap_or("no message");
        return Err(format!("{status}: {message}"));
    }
    Ok(body)
}

/// Writes `bytes` to `path` with mode 0600 through a synced temporary file.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), BootstrapError> {
    let fail = |e: std::io::Error| BootstrapError(format!("{}: {e}", path.display()));
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}
