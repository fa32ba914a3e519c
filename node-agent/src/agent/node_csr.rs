//! Asking the API for a node client certificate, as the kubelet's TLS bootstrap and its
//! certificate manager do: a fresh key, a `CertificateSigningRequest` for CN
//! `system:node:<name>`, O `system:nodes`, signer
//! `kubernetes.io/kube-apiserver-client-kubelet`, sent over HTTPS trusting the cluster CA —
//! authenticated with the bootstrap token when joining, with the node's current certificate
//! when renewing — and polled until the control plane has approved and signed it.

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use super::ServerTls;
use super::cert_files::KeyAndCertificate;

/// How often the agent looks at its request while waiting for the certificate.
const POLL: Duration = Duration::from_millis(250);

/// Longest wait for one HTTP answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why no certificate came back.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CsrError(String);

/// Who the request is sent as.
#[derive(Debug, Clone, Copy)]
pub enum Requester<'a> {
    /// A bootstrap token (`system:bootstrappers`): a joining node.
    Token(&'a str),
    /// The node's current key and certificate: a renewal.
    Certificate {
        /// The certificate (PEM).
        cert_pem: &'a [u8],
        /// Its key (PEM).
        key_pem: &'a [u8],
    },
}

/// A signed certificate and the key made for it.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The new private key (PKCS#8 PEM) and the certificate the control plane signed.
    pub pair: KeyAndCertificate,
    /// The name of the request, for logs.
    pub csr: String,
}

/// Makes a key and asks the API at `server` (`https://`) for node `node`'s client
/// certificate as `requester`, waiting at most `timeout` for the signature.
pub async fn request_node_certificate(
    server: &str,
    ca_pem: &[u8],
    requester: Requester<'_>,
    node: &str,
    timeout: Duration,
) -> Result<Issued, CsrError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| CsrError(format!("{what}: {e}"));
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
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .timeout(REQUEST_TIMEOUT);
    let token = match requester {
        Requester::Token(token) => Some(token),
        Requester::Certificate { cert_pem, key_pem } => {
            let pem = [cert_pem, b"\n", key_pem].concat();
            let identity = reqwest::Identity::from_pem(&pem)
                .map_err(|e| fail("the node's current certificate", &e))?;
            builder = builder.identity(identity);
            None
        }
    };
    let http = builder.build().map_err(|e| fail("the HTTPS client", &e))?;
    let authorized = |request: reqwest::RequestBuilder| match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
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
    let created = send(authorized(http.post(&collection).json(&body)))
        .await
        .map_err(|e| fail("creating the certificate signing request", &e))?;
    let name = created["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    tracing::info!(csr = %name, "asked for the node's client certificate");
    let deadline = tokio::time::Instant::now() + timeout;
    let certificate = loop {
        let csr = send(authorized(http.get(format!("{collection}/{name}"))))
            .await
            .map_err(|e| fail(&format!("reading certificate signing request {name}"), &e))?;
        if let Some(encoded) = csr["status"]["certificate"].as_str() {
            break base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| fail("the issued certificate", &e))?;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(CsrError(format!(
                "certificate signing request {name} was not approved and signed within {timeout:?}"
            )));
        }
        tokio::time::sleep(POLL).await;
    };
    Ok(Issued {
        pair: KeyAndCertificate {
            key_pem: key.serialize_pem().into_bytes(),
            cert_pem: certificate,
        },
        csr: name,
    })
}

impl ServerTls {
    /// The same CA with another key and certificate.
    pub(crate) fn with_identity(&self, pair: &KeyAndCertificate) -> Self {
        Self {
            ca_pem: self.ca_pem.clone(),
            cert_pem: pair.cert_pem.clone(),
            key_pem: pair.key_pem.clone(),
        }
    }
}

/// Sends a request; the JSON body of a 2xx, else the server's message.
async fn send(request: reqwest::RequestBuilder) -> Result<Value, String> {
    let response = request.send().await.map_err(|e| with_causes(&e))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let message = body["message"].as_str().unwrap_or("no message");
        return Err(format!("{status}: {message}"));
    }
    Ok(body)
}

/// An error and its causes on one line (reqwest's own message leaves out why).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(&format!(": {e}"));
        cause = e.source();
    }
    text
}
