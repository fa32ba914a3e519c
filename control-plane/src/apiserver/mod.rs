//! The Kubernetes-compatible REST API server.
//!
//! [`ApiServer`] serves discovery, OpenAPI and every kind in the registry over any
//! [`Store`]: namespaced and cluster-scoped paths, GET/LIST/WATCH/POST/PUT/PATCH/DELETE, the
//! `status` subresource, server-side `Table`s, and Kubernetes `Status` errors.
//!
//! - [`router`]: paths to handlers; [`request`]: path and query parsing;
//!   [`negotiate`]: media types in and out; [`status_error`]: errors as `Status` objects.
//! - [`handlers`]: one file per verb; [`admission`]: decode, default, validate;
//!   [`strategic_merge`] and [`apply`]: the patch flavours beyond RFC 7386/6902;
//!   [`priority`]: pods' `priorityClassName` → `priority` (Kubernetes' Priority admission);
//!   [`pod_security`]: Pod Security admission (baseline by default, namespace labels).
//! - [`discovery`], [`openapi`], [`table`], [`selectors`], [`kubeconfig`].
//! - [`auth`]: the TLS listener's PKI, authentication and authorization.
//! - [`resource_metrics`]: `metrics.k8s.io` for `kubectl top`; [`node_proxy`]:
//!   `nodes/{name}/proxy` to the agent; [`agent_address`]: where a node's agent listens.

pub mod admission;
pub mod agent_address;
pub mod apply;
pub mod auth;
pub mod csr_approval;
pub mod discovery;
pub mod handlers;
pub mod kubeconfig;
pub mod negotiate;
pub mod node_proxy;
pub mod objects;
pub mod openapi;
pub mod openapi_schemas;
pub mod pod_security;
pub mod priority;
pub mod protobuf_wire;
pub mod request;
pub mod resource_metrics;
pub mod router;
pub mod selectors;
pub mod service_account;
pub mod status_error;
pub mod strategic_merge;
pub mod table;

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::store::{Store, StoreError};

pub use status_error::ApiError;

/// Namespaces that exist from the start.
pub const INITIAL_NAMESPACES: &[&str] = &["default", "kube-system", "coxswain-system"];

/// The pod-security enforce level an initial namespace is created with: `kube-system` and
/// `coxswain-system` run node-level components (host network, host paths), `default` gets
/// the cluster default (baseline) with no label.
fn initial_enforce_level(namespace: &str) -> Option<&'static str> {
    matches!(namespace, "kube-system" | "coxswain-system").then_some("privileged")
}

/// What every request handler shares.
#[derive(Clone)]
pub struct ApiState {
    /// The object store.
    pub store: Arc<dyn Store>,
    /// Cancelled when the server shuts down; open watches end.
    pub shutdown: CancellationToken,
    /// Decoded objects and encoded event lines shared by all watches.
    pub watch_cache: Arc<handlers::watch_cache::WatchCache>,
    /// Where requests are metered and `/metrics` is served from, when set.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// The agents' last two resource scrapes, behind `metrics.k8s.io`.
    pub resource_metrics: Arc<resource_metrics::samples::ScrapeCache>,
    /// Whether new pods go through [`service_account`] admission (the server issues
    /// service-account tokens).
    pub service_accounts: bool,
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The store failed while bootstrapping.
    #[error("bootstrapping the store: {0}")]
    Store(#[from] StoreError),
    /// The listener failed.
    #[error("serving on {addr}: {source}")]
    Io {
        /// The address served.
        addr: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A plain (no TLS, no authentication) listen address that is not loopback.
    #[error(
        "refusing to listen on {0}: this listener has no TLS or authentication, so it only \
         listens on loopback (use 127.0.0.1:<port> or [::1]:<port>; --secure-listen serves \
         TLS with authentication on any address)"
    )]
    NotLoopback(SocketAddr),
}

/// Refuses listen addresses other than loopback.
pub fn check_listen_address(addr: &SocketAddr) -> Result<(), ServeError> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(ServeError::NotLoopback(*addr))
    }
}

/// The API server over one store.
pub struct ApiServer {
    state: ApiState,
}

impl ApiServer {
    /// A server over `store` that stops when `shutdown` is cancelled; creates the initial
    /// namespaces when they are missing.
    pub async fn new(
        store: Arc<dyn Store>,
        shutdown: CancellationToken,
    ) -> Result<Self, ServeError> {
        for name in INITIAL_NAMESPACES {
            let key = format!("/registry/core/namespaces/{name}");
            if store.get(&key).await?.is_some() {
                continue;
            }
            let mut labels = json!({"kubernetes.io/metadata.name": name});
            if let Some(level) = initial_enforce_level(name) {
                labels[pod_security::ENFORCE_LABEL] = json!(level);
            }
            let namespace = json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": name,
                    "uid": objects::new_uid(),
                    "creationTimestamp": objects::now(),
                    "labels": labels,
                },
                "spec": {},
                "status": {"phase": "Active"},
            });
            match store.create(&key, objects::to_store(&namespace)).await {
                Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        priority::ensure_system_classes(&*store).await?;
        auth::rbac::ensure_default_roles(&*store).await?;
        Ok(ApiServer {
            state: ApiState {
                store,
                shutdown,
                watch_cache: Arc::default(),
                metrics: None,
                resource_metrics: Arc::default(),
                service_accounts: false,
            },
        })
    }

    /// Meters every request into `metrics` and serves them at `/metrics` (see
    /// [`crate::metrics`]); routers and in-process clients made afterwards are metered.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.state.metrics = Some(metrics);
        self
    }

    /// Gives new pods a service account and its token volume ([`service_account`]
    /// admission), for a server that issues service-account tokens.
    pub fn with_service_accounts(mut self) -> Self {
        self.state.service_accounts = true;
        self
    }

    /// The store the server reads and writes.
    pub fn store(&self) -> Arc<dyn Store> {
        self.state.store.clone()
    }

    /// Starts the scraper that fills `metrics.k8s.io` (see [`resource_metrics::scraper`]):
    /// it lists the nodes through `client` and scrapes their agents every
    /// `config.resolution` until the server's shutdown.
    pub fn spawn_resource_metrics(
        &self,
        client: kube::Client,
        config: resource_metrics::scraper::ScraperConfig,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(resource_metrics::scraper::run(
            client,
            self.state.resource_metrics.clone(),
            config,
            self.state.shutdown.clone(),
        ))
    }

    /// The HTTP service, to serve or to test with.
    pub fn router(&self) -> axum::Router {
        router::router(self.state.clone())
    }

    /// Serves on `listener` until the shutdown token is cancelled, then drains.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> Result<(), ServeError> {
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let shutdown = self.state.shutdown.clone();
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .map_err(|source| ServeError::Io { addr, source })
    }
}
