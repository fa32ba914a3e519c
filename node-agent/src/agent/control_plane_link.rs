//! The agent's link to the control plane: connect (HTTP/2 over plain TCP or a Unix socket) with
//! exponential back-off, register the Node, renew its Lease, follow the pod
//! stream, and start again from connecting whenever any of it fails — or when the
//! node's client certificate was rotated ([`super::cert_rotation`]): the next session
//! dials with the new one (pods keep running; registering again only refreshes the
//! Node). The channel of the current session is published in a `watch` for the status
//! reporters; the pod CIDR the control plane assigned, in another.

use std::collections::BTreeMap;
use std::time::Duration;

use coxswain_proto::node::v1alpha1::node_service_client::NodeServiceClient;
use coxswain_proto::node::v1alpha1::{RegisterRequest, RenewLeaseRequest, WatchPodsRequest};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use super::backoff::Backoff;
use super::node_network::NodeNetwork;
use super::pod_thread::PodThreadExit;
use super::pods::PodSupervisor;
use super::server_endpoint::{ServerEndpoint, ServerTls};
use crate::logs::rfc3339_nano;

/// Longest wait for a unary call (register, lease) before the session is given up.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a session with the control plane ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("connecting: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("{call}: {status}")]
    Call {
        call: &'static str,
        status: Box<tonic::Status>,
    },
    #[error("{0}: no answer within {CALL_TIMEOUT:?}")]
    Timeout(&'static str),
    #[error("the pod stream ended")]
    StreamEnded,
    #[error("register: the node in the answer is not a Node: {0}")]
    BadNode(serde_json::Error),
}

fn call_error(call: &'static str) -> impl FnOnce(tonic::Status) -> SessionError {
    move |status| SessionError::Call {
        call,
        status: Box::new(status),
    }
}

/// Everything a session needs that outlives it.
pub struct ControlPlaneLink {
    /// Where the control plane is.
    pub endpoint: ServerEndpoint,
    /// The node's rotating TLS credentials; each new value ends the session and the next
    /// one dials with it. `None`: the endpoint's credentials never change.
    pub credentials: Option<watch::Receiver<ServerTls>>,
    /// Whether the session ended for a rotated certificate (logged once registered).
    pub rotated: bool,
    /// This node's name.
    pub node_name: String,
    /// The Node as the agent reports it.
    pub node: Value,
    /// How often the lease is renewed.
    pub lease_interval: Duration,
    /// Delays between connection attempts.
    pub backoff: Backoff,
    /// The current session's channel, `None` between sessions.
    pub channel: watch::Sender<Option<Channel>>,
    /// The node's pod CIDR, once assigned.
    pub pod_cidr: watch::Sender<Option<String>>,
    /// The pod network, configured from the first Register answer; `None` when
    /// the agent's pods stay on loopback.
    pub network: Option<NodeNetwork>,
    /// The node IDs of the CSI drivers reached so far (announced on the Node as
    /// `csi.volume.kubernetes.io/nodeid`); a change registers again.
    pub csi_node_ids: Option<watch::Receiver<BTreeMap<String, String>>>,
}

impl ControlPlaneLink {
    /// Runs sessions until `shutdown`, reconnecting after each failure.
    pub async fn run(
        &mut self,
        pods: &mut PodSupervisor,
        exits: &mut mpsc::UnboundedReceiver<PodThreadExit>,
        shutdown: &CancellationToken,
    ) {
        let url = self.endpoint.url().to_string();
        while !shutdown.is_cancelled() {
            if let Some(credentials) = &mut self.credentials {
                // Marked seen: only a later rotation ends the session it starts.
                let tls = credentials.borrow_and_update().clone();
                match ServerEndpoint::parse(&url, Some(&tls)) {
                    Ok(endpoint) => self.endpoint = endpoint,
                    Err(e) => tracing::error!("the rotated node certificate: {e}"),
                }
            }
            let result = self.session(pods, exits, shutdown).await;
            self.channel.send_replace(None);
            if let Err(e) = result {
                let delay = self.backoff.next_delay();
                tracing::warn!("control plane {url}: {e}; reconnecting in {delay:?}");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
        }
    }

    async fn session(
        &mut self,
        pods: &mut PodSupervisor,
        exits: &mut mpsc::UnboundedReceiver<PodThreadExit>,
        shutdown: &CancellationToken,
    ) -> Result<(), SessionError> {
        let channel = tokio::select! {
            channel = self.endpoint.connect() => channel?,
            _ = shutdown.cancelled() => return Ok(()),
        };
        let mut client = NodeServiceClient::new(channel.clone());
        annotate_csi(&mut self.node, self.csi_node_ids.as_ref());
        let (lease_seconds, cluster_domain) =
            register(&mut client, &mut self.node, &self.pod_cidr).await?;
        tracing::info!(node = %self.node_name, "registered with the control plane");
        if std::mem::take(&mut self.rotated) {
            tracing::info!(node = %self.node_name, "reconnected with the rotated client certificate");
        }
        if let Some(network) = &mut self.network {
            // Before the pod stream: workers must find the network configured.
            let cidr = self.pod_cidr.borrow().clone();
            network.registered(cidr.as_deref(), &cluster_domain).await;
        }
        self.channel.send_replace(Some(channel));
        self.backoff.reset();
        let mut stream = client
            .watch_pods(WatchPodsRequest {
                node_name: self.node_name.clone(),
            })
            .await
            .map_err(call_error("watch pods"))?
            .into_inner();
        pods.begin_snapshot();
        let interval = match lease_seconds {
            s if s > 0 => self.lease_interval.min(Duration::from_secs(s as u64)),
            _ => self.lease_interval,
        };
        let mut node = self.node.clone();
        let mut csi_ids = self.csi_node_ids.clone();
        let mut register_client = client.clone();
        let lease = renew_lease(client, &self.node_name, &mut node, &self.pod_cidr, interval);
        tokio::pin!(lease);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                result = &mut lease => return result,
                Ok(()) = csi_changed(&mut csi_ids) => {
                    // A CSI driver came up: announce it on the Node.
                    annotate_csi(&mut self.node, csi_ids.as_ref());
                    register(&mut register_client, &mut self.node, &self.pod_cidr).await?;
                }
                message = stream.message() => match message.map_err(call_error("pod stream"))? {
                    Some(event) => pods.handle(event).await,
                    None => return Err(SessionError::StreamEnded),
                },
                Some(exit) = exits.recv() => pods.thread_exited(exit),
                () = rotated(&mut self.credentials) => {
                    tracing::info!(node = %self.node_name, "client certificate rotated; reconnecting with it");
                    self.rotated = true;
                    return Ok(());
                }
            }
        }
    }
}

/// Resolves when new credentials were published; never without rotation (or once the
/// rotation task is gone).
async fn rotated(credentials: &mut Option<watch::Receiver<ServerTls>>) {
    if let Some(receiver) = credentials {
        if receiver.changed().await.is_ok() {
            return;
        }
        *credentials = None;
    }
    std::future::pending().await
}

/// Puts the CSI drivers' node IDs on `node` as kubelet does.
fn annotate_csi(node: &mut Value, ids: Option<&watch::Receiver<BTreeMap<String, String>>>) {
    let Some(ids) = ids else {
        return;
    };
    let value = crate::csi::drivers::node_id_annotation(&ids.borrow());
    if let Some(meta) = node.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Default::default()));
        annotations[crate::csi::NODE_ID_ANNOTATION] = Value::String(value);
    }
}

/// Resolves when the CSI node IDs changed; never when there are no CSI drivers.
async fn csi_changed(
    ids: &mut Option<watch::Receiver<BTreeMap<String, String>>>,
) -> Result<(), watch::error::RecvError> {
    match ids {
        Some(ids) => ids.changed().await,
        None => std::future::pending().await,
    }
}

/// Registers `node` (with a fresh heartbeat time); publishes the assigned pod CIDR.
/// Returns the lease duration the control plane asked for and the cluster domain.
async fn register(
    client: &mut NodeServiceClient<Channel>,
    node: &mut Value,
    pod_cidr: &watch::Sender<Option<String>>,
) -> Result<(i32, String), SessionError> {
    let now = heartbeat_time();
    if let Some(Value::Array(conditions)) = node.pointer_mut("/status/conditions") {
        for condition in conditions {
            condition["lastHeartbeatTime"] = Value::String(now.clone());
        }
    }
    let request = RegisterRequest {
        node: serde_json::to_vec(node).unwrap_or_default(),
    };
    let answer = tokio::time::timeout(CALL_TIMEOUT, client.register(request))
        .await
        .map_err(|_| SessionError::Timeout("register"))?
        .map_err(call_error("register"))?
        .into_inner();
    let stored: Value = serde_json::from_slice(&answer.node).map_err(SessionError::BadNode)?;
    let cidr = stored
        .pointer("/spec/podCIDR")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    pod_cidr.send_if_modified(|current| {
        if *current != cidr && cidr.is_some() {
            *current = cidr.clone();
            true
        } else {
            false
        }
    });
    Ok((answer.lease_duration_seconds, answer.cluster_domain))
}

/// Renews the lease every `interval`; registers again when the control plane no
/// longer knows the node. Returns only on an error.
async fn renew_lease(
    mut client: NodeServiceClient<Channel>,
    node_name: &str,
    node: &mut Value,
    pod_cidr: &watch::Sender<Option<String>>,
    interval: Duration,
) -> Result<(), SessionError> {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let request = RenewLeaseRequest {
            node_name: node_name.to_string(),
        };
        let answer = tokio::time::timeout(CALL_TIMEOUT, client.renew_lease(request))
            .await
            .map_err(|_| SessionError::Timeout("renew lease"))?
            .map_err(call_error("renew lease"))?
            .into_inner();
        if !answer.registered {
            tracing::warn!(node = %node_name, "the control plane lost the node; registering again");
            register(&mut client, node, pod_cidr).await?;
        }
    }
}

/// Now, as the RFC 3339 seconds Kubernetes writes in conditions.
pub fn heartbeat_time() -> String {
    let nano = rfc3339_nano(std::time::SystemTime::now());
    format!("{}Z", &nano[..19])
}
