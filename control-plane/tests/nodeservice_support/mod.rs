//! The node-service test harness: an API server and the node service on one loopback
//! listener, a gRPC client, and helpers for nodes and pods.

#![allow(dead_code, unused_imports)]

pub use std::collections::BTreeSet;
pub use std::net::SocketAddr;
pub use std::sync::Arc;
pub use std::time::Duration;

pub use coxswain_control_plane::apiserver::{ApiServer, ServeError};
pub use coxswain_control_plane::client::in_process;
pub use coxswain_control_plane::nodeservice::{NodeService, NodeServiceConfig, lifecycle};
pub use coxswain_control_plane::serve::serve;
pub use coxswain_control_plane::store::EmbeddedStore;
pub use coxswain_proto::node::v1alpha1 as pb;
pub use coxswain_proto::node::v1alpha1::node_service_client::NodeServiceClient;
pub use coxswain_proto::node::v1alpha1::pod_event::Type as PodEventType;
pub use coxswain_proto::node::v1alpha1::route_event::Type as RouteEventType;
pub use k8s_openapi::api::coordination::v1::Lease;
pub use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret, Service};
pub use k8s_openapi::api::resource::v1::ResourceSlice;
pub use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
pub use serde_json::{Value, json};
pub use tokio_util::sync::CancellationToken;
pub use tonic::transport::Channel;

pub struct Cluster {
    pub _dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub client: kube::Client,
    pub grpc: NodeServiceClient<Channel>,
    pub shutdown: CancellationToken,
    pub served: Option<tokio::task::JoinHandle<Result<(), ServeError>>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn start() -> Cluster {
    start_with(NodeServiceConfig::default()).await
}

pub async fn start_with(config: NodeServiceConfig) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let shutdown = CancellationToken::new();
    let api = ApiServer::new(store, shutdown.clone()).await.unwrap();
    let client = in_process(&api);
    let service = NodeService::new(client.clone(), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = tokio::spawn(serve(api, service, listener, shutdown.clone()));
    let grpc = NodeServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    Cluster {
        _dir: dir,
        addr,
        client,
        grpc,
        shutdown,
        served: Some(served),
    }
}

pub fn node_json(name: &str, ip: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {
            "addresses": [{"type": "InternalIP", "address": ip}],
            "capacity": {"cpu": "8", "memory": "16Gi", "pods": "110"},
            "allocatable": {"cpu": "8", "memory": "16Gi", "pods": "110"},
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        }
    })
}

pub async fn register(cluster: &Cluster, name: &str, ip: &str) -> Node {
    let response = cluster
        .grpc
        .clone()
        .register(pb::RegisterRequest {
            node: serde_json::to_vec(&node_json(name, ip)).unwrap(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.cluster_domain, "cluster.local");
    assert!(response.lease_duration_seconds > 0);
    serde_json::from_slice(&response.node).unwrap()
}

pub fn pod_cidr(node: &Node) -> String {
    node.spec
        .as_ref()
        .and_then(|s| s.pod_cidr.clone())
        .unwrap_or_default()
}

pub async fn stored_cidr(cluster: &Cluster, name: &str) -> String {
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    pod_cidr(&nodes.get(name).await.unwrap())
}

pub fn ready_status(node: &Node) -> (String, Option<String>) {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .expect("a Ready condition");
    (ready.status.clone(), ready.reason.clone())
}

pub fn pod_ready(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

pub async fn create_pod(client: &kube::Client, pod: Value) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(pod).unwrap(),
    )
    .await
    .unwrap()
}

pub fn pod_on(name: &str, node: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
    })
}

pub async fn next_pod_event(
    stream: &mut tonic::Streaming<pb::PodEvent>,
) -> (PodEventType, Option<Pod>, pb::PodEvent) {
    let event = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a pod event within 10 s")
        .unwrap()
        .expect("the stream stays open");
    let kind = PodEventType::try_from(event.r#type).unwrap();
    let pod = (!event.pod.is_empty()).then(|| serde_json::from_slice(&event.pod).unwrap());
    (kind, pod, event)
}
