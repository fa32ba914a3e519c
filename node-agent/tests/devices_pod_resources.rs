//! The kubelet's PodResources API served by the agent, read by real clients: a tonic
//! client over the socket (List, GetAllocatableResources, Get) and `cox-nvidia-plugin
//! --simulate --pod-resources-socket`, whose dcgm-exporter-style GPU series then name the
//! pod, namespace and container holding each GPU — the way dcgm-exporter labels them on
//! a kubelet node. Real control plane, agent, runc pod with 2 of 8 simulated GPUs.

mod common;
mod devices_support;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::Duration;

use common::Harness;
use common::control_plane::{ControlPlane, eventually, phase, pod_when, ready};
use coxswain_api::k8s::Node;
use coxswain_control_plane::nodeservice::NodeServiceConfig;
use coxswain_node_agent::AgentConfig;
use coxswain_node_agent::agent::{AgentDaemonConfig, NodeAgent, worker_deps};
use coxswain_node_agent::runtime::RuntimeKind;
use coxswain_proto::podresources::v1 as pb;
use coxswain_proto::podresources::v1::pod_resources_lister_client::PodResourcesListerClient;
use devices_support::{Plugin, connect, require_root};
use kube::api::Api;
use tokio_util::sync::CancellationToken;

const NODE: &str = "gpu-node";

async fn allocatable_gpus(client: &kube::Client) -> Option<String> {
    let node = Api::<Node>::all(client.clone())
        .get_opt(NODE)
        .await
        .ok()??;
    Some(node.status?.allocatable?.get("nvidia.com/gpu")?.0.clone())
}

/// One plain HTTP GET of `/metrics` at `addr`.
async fn scrape(addr: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await.ok()?;
    Some(body)
}

/// The `UUID` labels of the `DCGM_FI_DEV_GPU_UTIL` series that carry `pod="<pod>"`.
fn gpus_labelled_with(scrape: &str, pod: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| l.starts_with("DCGM_FI_DEV_GPU_UTIL{"))
        .filter(|l| {
            l.contains(&format!("pod=\"{pod}\""))
                && l.contains("namespace=\"default\"")
                && l.contains("container=\"main\"")
        })
        .filter_map(|l| {
            let start = l.find("UUID=\"")? + 6;
            let end = start + l[start..].find('"')?;
            Some(l[start..end].to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_plugins_gpu_metrics_name_the_pod_through_the_agents_pod_resources_api() {
    require_root();
    let h = Harness::new(RuntimeKind::Runc);
    let cp = ControlPlane::start(NodeServiceConfig::default()).await;
    cp.allow_host_pods().await; // its pods use hostNetwork
    let plugin_dir = h.dir.path().join("device-plugins");
    let socket: PathBuf = h.dir.path().join("pod-resources").join("kubelet.sock");
    let metrics_addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().to_string()
    };
    let _plugin = Plugin::spawn_with(
        &plugin_dir,
        "dgx-h100",
        &[
            OsStr::new("--metrics-listen"),
            OsStr::new(&metrics_addr),
            OsStr::new("--pod-resources-socket"),
            socket.as_os_str(),
        ],
    );

    let mut config = AgentConfig::new(h.deps.config.root.clone());
    config.cgroup_root = h.cgroup_root.clone();
    let shim = PathBuf::from(env!("CARGO_BIN_EXE_coxswain-shim"));
    let deps = worker_deps(&config, Some(h.kind), shim).unwrap();
    let mut daemon = AgentDaemonConfig::new(&cp.url, NODE);
    daemon.logs_listen = "127.0.0.1:0".parse().unwrap();
    daemon.device_plugin_dir = Some(plugin_dir.clone());
    daemon.pod_resources_socket = Some(socket.clone());
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let agent = tokio::spawn(async move { NodeAgent::new(daemon, deps).run(stop).await.unwrap() });
    eventually("8 allocatable GPUs", || async {
        (allocatable_gpus(&cp.client).await.as_deref() == Some("8")).then_some(())
    })
    .await;

    cp.create_pod(
        "trainer",
        NODE,
        serde_json::json!({
            "hostNetwork": true,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main", "image": "busybox",
                "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
                "resources": {"limits": {"nvidia.com/gpu": "2"}},
            }],
        }),
    )
    .await;
    pod_when(&cp, "trainer", "trainer to run", |p| {
        phase(p) == "Running" && ready(p)
    })
    .await;

    // The API over its socket, as any kubelet client reads it.
    let mut client = PodResourcesListerClient::new(connect(socket.clone()).await);
    let list = client
        .list(pb::ListPodResourcesRequest {})
        .await
        .unwrap()
        .into_inner();
    let pod = list
        .pod_resources
        .iter()
        .find(|p| p.name == "trainer" && p.namespace == "default")
        .expect("the pod is listed");
    assert_eq!(pod.containers.len(), 1);
    let container = &pod.containers[0];
    assert_eq!(container.name, "main");
    assert_eq!(container.devices.len(), 1);
    assert_eq!(container.devices[0].resource_name, "nvidia.com/gpu");
    let held: BTreeSet<String> = container.devices[0].device_ids.iter().cloned().collect();
    assert_eq!(held.len(), 2, "{held:?}");

    let allocatable = client
        .get_allocatable_resources(pb::AllocatableResourcesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(allocatable.devices.len(), 1);
    assert_eq!(allocatable.devices[0].device_ids.len(), 8);
    assert!(
        held.iter()
            .all(|id| allocatable.devices[0].device_ids.contains(id))
    );

    let one = client
        .get(pb::GetPodResourcesRequest {
            pod_name: "trainer".into(),
            pod_namespace: "default".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.pod_resources.as_ref(), Some(pod));
    let missing = client
        .get(pb::GetPodResourcesRequest {
            pod_name: "nobody".into(),
            pod_namespace: "default".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    // The plugin's GPU series for exactly those GPUs name the pod.
    let labelled = eventually("the plugin's series to name the pod", || async {
        let text = scrape(&metrics_addr).await?;
        let found = gpus_labelled_with(&text, "trainer");
        (!found.is_empty()).then_some(found)
    })
    .await;
    assert_eq!(labelled, held, "only the pod's GPUs carry its labels");

    cp.pods()
        .delete("trainer", &Default::default())
        .await
        .unwrap();
    eventually("the pod to leave the API", || async {
        cp.pods()
            .get_opt("trainer")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), agent).await;
}
