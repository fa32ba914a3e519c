//! The HTTP client the kubectl-like verbs (`get`, `apply`, `delete`, `describe`, `logs`,
//! `top`) share: reaches the server of a kubeconfig ([`super::kubeconfig`]) over plain HTTP
//! or TLS (trusting the kubeconfig's CA, presenting its client certificate or bearer
//! token), builds resource URLs, and turns error `Status` objects into one-line errors.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use coxswain_api::registry::{self, KindInfo};
use serde_json::Value;

/// Where the API is and which namespace to use.
#[derive(Args, Clone)]
pub struct Target {
    /// The kubeconfig to use (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The namespace (default: the kubeconfig context's, else `default`).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

/// A client of one API server.
pub struct ApiClient {
    base: String,
    /// The namespace requests use when none is given.
    pub namespace: String,
    http: reqwest::Client,
    token: Option<String>,
}

/// A response: status code and JSON body.
pub struct Reply {
    /// The HTTP status.
    pub status: reqwest::StatusCode,
    /// The body as JSON (a string when it was not JSON).
    pub body: Value,
}

impl ApiClient {
    /// A client for the kubeconfig `target` names.
    pub fn new(target: &Target) -> anyhow::Result<Self> {
        let path = match &target.kubeconfig {
            Some(path) => path.clone(),
            None => match std::env::var_os("KUBECONFIG") {
                Some(path) if !path.is_empty() => PathBuf::from(path),
                _ => {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".kube/config")
                }
            },
        };
        let config = super::kubeconfig::read(&path)?;
        let http = http_client(&path, &config)?;
        Ok(ApiClient {
            base: config.server.trim_end_matches('/').to_string(),
            namespace: target.namespace.clone().unwrap_or(config.namespace),
            http,
            token: config.token,
        })
    }

    /// A request to `url` with the kubeconfig's bearer token, if any.
    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, url);
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends one request; `body` is sent as `content_type`.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        accept: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> anyhow::Result<Reply> {
        let url = format!("{}{path}", self.base);
        let mut request = self.request(method, &url).header("accept", accept);
        if let Some((content_type, bytes)) = body {
            request = request.header("content-type", content_type).body(bytes);
        }
        let response = request.send().await.with_context(|| {
            format!("{url}: cannot reach the API server (is `cox server` running?)")
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .with_context(|| format!("{url}: reading the response"))?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Reply { status, body })
    }

    /// Starts a streaming GET (a watch) and fails unless the server accepted it.
    pub async fn stream(&self, path: &str, accept: &str) -> anyhow::Result<reqwest::Response> {
        let url = format!("{}{path}", self.base);
        let response = self
            .request(reqwest::Method::GET, &url)
            .header("accept", accept)
            .send()
            .await
            .with_context(|| {
                format!("{url}: cannot reach the API server (is `cox server` running?)")
            })?;
        if !response.status().is_success() {
            let status = response.status();
            let body = serde_json::from_str(&response.text().await.unwrap_or_default())
                .unwrap_or(Value::Null);
            bail!("{}", status_message(&Reply { status, body }));
        }
        Ok(response)
    }

    /// Sends a request and fails with the server's message unless it succeeded.
    pub async fn ok(
        &self,
        method: reqwest::Method,
        path: &str,
        accept: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> anyhow::Result<Value> {
        let reply = self.send(method, path, accept, body).await?;
        if !reply.status.is_success() {
            bail!("{}", status_message(&reply));
        }
        Ok(reply.body)
    }
}

/// The message of an error reply.
pub fn status_message(reply: &Reply) -> String {
    if reply.status == reqwest::StatusCode::UNAUTHORIZED {
        return "Unauthorized: the server did not accept the kubeconfig's credentials (a \
                missing, unknown or expired token or client certificate)"
            .to_string();
    }
    match reply.body.get("message").and_then(Value::as_str) {
        Some(message) => message.to_string(),
        None => format!("the server answered {}: {}", reply.status, reply.body),
    }
}

/// The HTTP client for `config`: rustls trusting only the kubeconfig's CA (or nothing, with
/// `insecure-skip-tls-verify`), presenting its client certificate when it has one.
fn http_client(
    path: &Path,
    config: &super::kubeconfig::Kubeconfig,
) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().use_rustls_tls();
    if let Some(ca) = &config.ca_pem {
        let certificates = reqwest::Certificate::from_pem_bundle(ca).with_context(|| {
            format!(
                "{}: certificate-authority: not a PEM certificate",
                path.display()
            )
        })?;
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    } else if config.insecure {
        builder = builder.danger_accept_invalid_certs(true);
    } else if config.server.starts_with("https://") {
        bail!(
            "{}: the cluster at {} has no certificate-authority-data or certificate-authority \
             (cox trusts only the CA the kubeconfig names)",
            path.display(),
            config.server
        );
    }
    if let Some(pem) = &config.identity_pem {
        let identity = reqwest::Identity::from_pem(pem).with_context(|| {
            format!(
                "{}: client-certificate and client-key: not a PEM certificate and key",
                path.display()
            )
        })?;
        builder = builder.identity(identity);
    }
    builder
        .build()
        .with_context(|| format!("{}: building the HTTPS client", path.display()))
}

/// The kind a user means by `name` (`po`, `pods`, `tj`, `trainingjobs.coxswain.dev`).
pub fn resolve_kind(name: &str) -> anyhow::Result<&'static KindInfo> {
    registry::resolve(name).with_context(|| {
        format!("the server doesn't have a resource type {name:?} (try pods, nodes, jobs, trainingjobs/tj, podgroups/pg, queues/q)")
    })
}

/// The URL path of `kind`'s collection (`namespace` ignored for cluster-scoped kinds; `None` for
/// a namespaced kind means all namespaces), or of object `name` in it.
pub fn resource_path(kind: &KindInfo, namespace: Option<&str>, name: Option<&str>) -> String {
    let mut path = if kind.group.is_empty() {
        format!("/api/{}", kind.version)
    } else {
        format!("/apis/{}/{}", kind.group, kind.version)
    };
    if let (true, Some(ns)) = (kind.namespaced, namespace) {
        path.push_str(&format!("/namespaces/{ns}"));
    }
    path.push('/');
    path.push_str(kind.plural);
    if let Some(name) = name {
        path.push('/');
        path.push_str(name);
    }
    path
}

/// `pod`, `trainingjob.coxswain.dev`: how kubectl names a kind in its output.
pub fn kind_label(kind: &KindInfo) -> String {
    if kind.group.is_empty() {
        kind.singular.to_string()
    } else {
        format!("{}.{}", kind.singular, kind.group)
    }
}

/// Runs a future on a fresh runtime (the verbs are one-shot commands).
pub fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(
    future: F,
) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?
        .block_on(future)
}
