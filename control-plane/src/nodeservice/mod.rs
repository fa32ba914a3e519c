//! The node service: the gRPC API node agents speak to the control plane
//! (`coxswain.node.v1alpha1.NodeService`, proto/proto/coxswain/node/v1alpha1/node.proto).
//!
//! Every RPC reads and writes through a [`kube::Client`] (the in-process API), so admission,
//! validation and watches apply to an agent's writes as to kubectl's.
//!
//! - [`register`]: Register (the Node, its pod CIDR from [`cidr`], its Lease via [`lease`]).
//! - [`lease`]: RenewLease and the Lease objects in `kube-node-lease`.
//! - [`pods`]: WatchPods, with the secrets and configMaps each pod references.
//! - [`pod_status`]: UpdatePodStatus and PodTerminated.
//! - [`devices`]: ReportDevices (ResourceSlices and extended resources).
//! - [`routes`]: WatchRoutes; [`resolve`]: Resolve (cluster DNS names).
//! - [`events`]: RecordEvent (Events about the agent's Node and its pods).
//! - [`volumes`]: WatchVolumes, ReportProvisioning, ReportVolumeDeleted (the node's CSI
//!   drivers provision claims selected for the node and delete its released volumes).
//! - [`tokens`]: ServiceAccountToken (pod-bound service-account tokens for projected
//!   volumes).
//! - [`lifecycle`]: the loop that marks nodes with an expired lease NotReady.

pub(crate) mod cas;
pub mod cidr;
pub mod devices;
pub mod events;
mod identity;
pub mod lease;
pub mod lifecycle;
pub mod pod_status;
pub mod pods;
pub mod register;
pub mod resolve;
pub mod routes;
pub mod tokens;
pub mod volumes;

use std::net::Ipv4Addr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use coxswain_proto::node::v1alpha1 as pb;
use futures::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::apiserver::auth::service_accounts::ServiceAccountTokens;
use cidr::Ipv4Cidr;

/// How the node service assigns addresses and judges leases.
#[derive(Debug, Clone)]
pub struct NodeServiceConfig {
    /// The range node pod CIDRs are carved from (default 10.244.0.0/16).
    pub cluster_cidr: Ipv4Cidr,
    /// The prefix length of each node's pod CIDR (default 24).
    pub node_cidr_prefix: u8,
    /// The cluster DNS domain (default `cluster.local`).
    pub cluster_domain: String,
    /// How old a node's lease may get before the node is marked NotReady (default 40 s).
    pub lease_grace: Duration,
}

impl Default for NodeServiceConfig {
    fn default() -> Self {
        NodeServiceConfig {
            cluster_cidr: Ipv4Cidr::new(Ipv4Addr::new(10, 244, 0, 0), 16)
                .expect("10.244.0.0/16 is a valid CIDR"),
            node_cidr_prefix: 24,
            cluster_domain: "cluster.local".to_string(),
            lease_grace: Duration::from_secs(40),
        }
    }
}

impl NodeServiceConfig {
    /// How often an agent should renew its lease: a quarter of the grace period, at least 1 s
    /// (a kubelet renews a 40 s lease every 10 s).
    pub fn renew_interval(&self) -> Duration {
        (self.lease_grace / 4).max(Duration::from_secs(1))
    }
}

/// The node service over one API client.
#[derive(Clone)]
pub struct NodeService {
    client: kube::Client,
    config: Arc<NodeServiceConfig>,
    /// Serialises pod CIDR allocation within this control plane, so concurrent registrations
    /// never pick the same free range.
    cidr_lock: Arc<tokio::sync::Mutex<()>>,
    /// Cancelled when the server shuts down; open streams end.
    shutdown: CancellationToken,
    /// The signer of pods' service-account tokens (only with a TLS listener).
    service_accounts: Option<ServiceAccountTokens>,
}

impl NodeService {
    /// A node service that reads and writes through `client`.
    pub fn new(client: kube::Client, config: NodeServiceConfig) -> Self {
        NodeService {
            client,
            config: Arc::new(config),
            cidr_lock: Arc::default(),
            shutdown: CancellationToken::new(),
            service_accounts: None,
        }
    }

    /// Issues pods' service-account tokens with `signer` (ServiceAccountToken refuses
    /// without one).
    pub fn with_service_account_tokens(mut self, signer: ServiceAccountTokens) -> Self {
        self.service_accounts = Some(signer);
        self
    }

    /// Ends the service's streams (WatchPods, WatchRoutes) when `shutdown` is cancelled, so a
    /// draining server is not held open by agents' watches.
    pub fn with_shutdown(mut self, shutdown: CancellationToken) -> Self {
        self.shutdown = shutdown;
        self
    }

    /// The service's configuration.
    pub fn config(&self) -> &NodeServiceConfig {
        &self.config
    }

    /// The client the service reads and writes through.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The tonic server for this service, to mount on a router.
    pub fn into_server(self) -> pb::node_service_server::NodeServiceServer<Self> {
        pb::node_service_server::NodeServiceServer::new(self)
    }
}

/// A server stream of the node service.
pub type EventStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// How many events wait for a slow agent before a stream's producer pauses.
const STREAM_BUFFER: usize = 64;

/// Serves a stream for `node_name`: `produce(client, node, sender)` runs until it ends,
/// the agent hangs up or the server shuts down.
pub(crate) fn server_stream<T, Fut>(
    service: &NodeService,
    node_name: String,
    produce: impl FnOnce(kube::Client, String, tokio::sync::mpsc::Sender<Result<T, Status>>) -> Fut,
) -> Result<EventStream<T>, Status>
where
    T: Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    require_node_name(&node_name)?;
    let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER);
    let hung_up = tx.clone();
    let shutdown = service.shutdown.clone();
    let work = produce(service.client.clone(), node_name, tx);
    tokio::spawn(async move {
        tokio::select! {
            _ = work => {}
            _ = shutdown.cancelled() => {}
            _ = hung_up.closed() => {}
        }
    });
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}

#[tonic::async_trait]
impl pb::node_service_server::NodeService for NodeService {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        identity::check_caller(&request, &identity::registering_node(request.get_ref()))?;
        register::register(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn renew_lease(
        &self,
        request: Request<pb::RenewLeaseRequest>,
    ) -> Result<Response<pb::RenewLeaseResponse>, Status> {
        identity::check_caller(&request, &request.get_ref().node_name)?;
        lease::renew(self, request.into_inner())
            .await
            .map(Response::new)
    }

    type WatchPodsStream = EventStream<pb::PodEvent>;

    async fn watch_pods(
        &self,
        request: Request<pb::WatchPodsRequest>,
    ) -> Result<Response<Self::WatchPodsStream>, Status> {
        identity::check_caller(&request, &request.get_ref().node_name)?;
        pods::watch(self, request.into_inner()).map(Response::new)
    }

    async fn update_pod_status(
        &self,
        request: Request<pb::UpdatePodStatusRequest>,
    ) -> Result<Response<pb::UpdatePodStatusResponse>, Status> {
        identity::check_caller(&request, &request.get_ref().node_name)?;
        pod_status::update(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn pod_terminated(
        &self,
        request: Request<pb::PodTerminatedRequest>,
    ) -> Result<Response<pb::PodTerminatedResponse>, Status> {
        identity::check_caller(&request, &request.get_ref().node_name)?;
        pod_status::terminated(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn report_devices(
        &self,
        request: Request<pb::ReportDevicesRequest>,
    ) -> Result<Response<pb::ReportDevicesResponse>, Status> {
        identity::check_caller(&request, &request.get_ref().node_name)?;
        devices::report(self, request.into_inner())
            .await
            .map(Response::new)
    }

    type WatchRoutesStream = EventStream<pb::RouteEvent>;

    async fn watch_routes(
        &self,
        request: Request<pb::WatchRoutesRequest>,
    ) -> Result<Response<Self::WatchRoutesStream>, Status> {
        identity::check_caller(&request, &request.get_ref().node_name)?;
        routes::watch(self, request.into_inner()).map(Response::new)
    }

    async fn resolve(
        &self,
        request: Request<pb::ResolveRequest>,
    ) -> Result<Response<pb::ResolveResponse>, Status> {
        resolve::resolve(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn record_event(
        &self,
        request: Request<pb::RecordEventRequest>,
    ) -> Result<Response<pb::RecordEventResponse>, Status> {
        identity::check_caller(&request, &request.get_ref().node_name)?;
        events::record(self, request.into_inner())
            .await
            .map(Response::new)
    }

    type WatchVolumesStream = EventStream<pb::VolumeEvent>;

    async fn watch_volumes(
        &self,
        request: Request<pb::WatchVolumesRequest>,
    ) -> Result<Response<Self::WatchVolumesStream>, Status> {
        identity::check_caller(&request, &request.get_ref().node_name)?;
        volumes::watch(self, request.into_inner()).map(Response::new)
    }

    async fn report_provisioning(
        &self,
        request: Request<pb::ReportProvisioningRequest>,
    ) -> Result<Response<pb::ReportProvisioningResponse>, Status> {
        identity::check_caller(&request, &request.get_ref().node_name)?;
        volumes::report_provisioning(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn report_volume_deleted(
        &self,
        request: Request<pb::ReportVolumeDeletedRequest>,
    ) -> Result<Response<pb::ReportVolumeDeletedResponse>, Status> {
        identity::check_caller(&request, &request.get_ref().node_name)?;
        volumes::report_deleted(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn service_account_token(
        &self,
        request: Request<pb::ServiceAccountTokenRequest>,
    ) -> Result<Response<pb::ServiceAccountTokenResponse>, Status> {
        identity::check_caller(&request, &request.get_ref().node_name)?;
        tokens::issue(self, request.into_inner())
            .await
            .map(Response::new)
    }
}

/// An API error as a gRPC status; `what` says which object the call was about.
pub(crate) fn api_status(what: &str, error: kube::Error) -> Status {
    match &error {
        kube::Error::Api(status) => {
            let message = format!("{what}: {}", status.message);
            match status.code {
                400 | 422 => Status::invalid_argument(message),
                404 => Status::not_found(message),
                409 => Status::aborted(message),
                403 | 401 => Status::permission_denied(message),
                _ => Status::internal(message),
            }
        }
        _ => Status::unavailable(format!("{what}: {error}")),
    }
}

/// Whether `error` is the API's 404.
pub(crate) fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == 404)
}

/// Whether `error` is the API's 409 (a conflict or an existing object).
pub(crate) fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == 409)
}

/// How many times a read-modify-write retries on a resourceVersion conflict.
pub(crate) const CONFLICT_RETRIES: usize = 16;

/// Checks that a request names its node.
pub(crate) fn require_node_name(node_name: &str) -> Result<(), Status> {
    if node_name.is_empty() {
        return Err(Status::invalid_argument("node_name: required"));
    }
    Ok(())
}
