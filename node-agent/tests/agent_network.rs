//! The agent daemon with real networking against an in-process control plane (API
//! server, node service, scheduler runner): pods get addresses in the node's pod CIDR
//! from the CNI bridge plugin, reach each other by IP and by their
//! `<hostname>.<subdomain>.<ns>.svc.cluster.local` name through the node-local DNS
//! server on the bridge, and the host-gw route task follows the other nodes.
//!
//! Each test uses its own cluster CIDR and bridge so tests sharing the host don't
//! collide; the route task writes into a private network namespace.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Harness;
use coxswain_api::k8s::Pod;
use coxswain_control_plane::apiserver::ApiServer;
use coxswain_control_plane::client::in_process;
use coxswain_control_plane::nodeservice::{NodeService, NodeServiceConfig};
use coxswain_control_plane::scheduler::runner::{self, RunnerConfig};
use coxswain_control_plane::store::EmbeddedStore;
use coxswain_node_agent::AgentConfig;
use coxswain_node_agent::agent::{AgentDaemonConfig, NodeAgent, NodeNetworkConfig, worker_deps};
use coxswain_node_agent::network::routes::HostRoutes;
use coxswain_node_agent::runtime::RuntimeKind;
use coxswain_proto::node::v1alpha1::ContainerLogsRequest;
use coxswain_proto::node::v1alpha1::agent_service_client::AgentServiceClient;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams, PostParams};
use tokio_util::sync::CancellationToken;

/// An API server, node service and scheduler on 127.0.0.1:0.
struct ControlPlane {
    _dir: tempfile::TempDir,
    url: String,
    client: kube::Client,
    shutdown: CancellationToken,
}

impl ControlPlane {
    async fn start(cluster_cidr: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let shutdown = CancellationToken::new();
        let api = ApiServer::new(store, shutdown.clone()).await.unwrap();
        let client = in_process(&api);
        let config = NodeServiceConfig {
            cluster_cidr: cluster_cidr.parse().unwrap(),
            ..NodeServiceConfig::default()
        };
        let nodes = NodeService::new(client.clone(), config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(coxswain_control_plane::serve::serve(
            api,
            nodes,
            listener,
            shutdown.clone(),
        ));
        tokio::spawn(runner::run(
            client.clone(),
            RunnerConfig::default(),
            shutdown.clone(),
        ));
        Self {
            _dir: dir,
            url,
            client,
            shutdown,
        }
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A named network namespace with a veth "node network" 192.0.2.0/24, removed on drop.
struct RouteNamespace(String);

impl RouteNamespace {
    fn new(name: &str) -> Self {
        let _ = Command::new("ip").args(["netns", "del", name]).status();
        for args in [
            vec!["netns", "add", name],
            vec![
                "-n", name, "link", "add", "d0", "type", "veth", "peer", "name", "d1",
            ],
            vec!["-n", name, "addr", "add", "192.0.2.1/24", "dev", "d0"],
            vec!["-n", name, "link", "set", "d1", "up"],
            vec!["-n", name, "link", "set", "d0", "up"],
        ] {
            let ok = Command::new("ip").args(&args).status().unwrap().success();
            assert!(ok, "ip {args:?}");
        }
        Self(name.to_string())
    }
}

impl Drop for RouteNamespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Removes the test's bridge on drop (the agent leaves it for its pods).
struct Bridge(&'static str);

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", self.0]).status();
    }
}

/// Polls `check` until it returns `Some`; panics with `what` after a generous
/// hang guard (not a timing assertion).
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let limit = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn pod(name: &str, spec: serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }))
    .unwrap()
}

async fn pod_when(cp: &ControlPlane, name: &str, what: &str, done: impl Fn(&Pod) -> bool) -> Pod {
    let pods = cp.pods();
    eventually(what, || {
        let pods = pods.clone();
        let done = &done;
        async move {
            let pod = pods.get_opt(name).await.ok()??;
            done(&pod).then_some(pod)
        }
    })
    .await
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn pod_ip(pod: &Pod) -> Option<IpAddr> {
    pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
}

fn in_cidr(ip: IpAddr, cidr: &str) -> bool {
    let (base, prefix) = cidr.split_once('/').unwrap();
    let (IpAddr::V4(ip), Ok(base), Ok(prefix)) =
        (ip, base.parse::<Ipv4Addr>(), prefix.parse::<u32>())
    else {
        return false;
    };
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(base) & mask
}

async fn logs(cp: &ControlPlane, node: &str, pod: &str) -> String {
    let nodes: Api<Node> = Api::all(cp.client.clone());
    let node = nodes.get(node).await.unwrap();
    let port = node
        .status
        .unwrap()
        .daemon_endpoints
        .unwrap()
        .kubelet_endpoint
        .unwrap()
        .port;
    let mut client = AgentServiceClient::connect(format!("http://127.0.0.1:{port}"))
        .await
        .unwrap();
    let request = ContainerLogsRequest {
        namespace: "default".into(),
        pod: pod.into(),
        container: "main".into(),
        tail_lines: -1,
        ..Default::default()
    };
    let mut stream = client.container_logs(request).await.unwrap().into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        out.extend(chunk.data);
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pods_get_cidr_addresses_and_reach_each_other_by_ip_and_by_name() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_test_writer()
        .try_init();
    let h = Harness::new(RuntimeKind::Runc);
    let bridge = Bridge("coxwt-net0");
    let routes_ns = RouteNamespace::new("cox-wt-routes0");
    let cp = ControlPlane::start("10.97.0.0/16").await;
    let node = "net-node";

    let mut config = AgentConfig::new(h.deps.config.root.clone());
    config.cgroup_root = h.cgroup_root.clone();
    let shim = PathBuf::from(env!("CARGO_BIN_EXE_coxswain-shim"));
    let deps = worker_deps(&config, Some(h.kind), shim).unwrap();
    let mut daemon = AgentDaemonConfig::new(&cp.url, node);
    daemon.logs_listen = "127.0.0.1:0".parse().unwrap();
    let mut network = NodeNetworkConfig::new(&config.root);
    network.bridge = bridge.0.to_string();
    daemon.network = Some(network);
    daemon.host_routes = Some(HostRoutes::in_netns(&routes_ns.0));
    let agent = NodeAgent::new(daemon, deps);
    let mut cidr_rx = agent.pod_cidr();
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let task = tokio::spawn(async move { agent.run(stop).await.unwrap() });

    let cidr = cidr_rx
        .wait_for(Option::is_some)
        .await
        .unwrap()
        .clone()
        .unwrap();
    assert!(cidr.starts_with("10.97."), "{cidr}");

    // The server: a web page under a hostname and subdomain; no nodeName, so the
    // scheduler places it.
    let web = pod(
        "web",
        serde_json::json!({
            "hostname": "web", "subdomain": "grp",
            "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c",
                "mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 8080 -h /www"]}],
        }),
    );
    cp.pods()
        .create(&PostParams::default(), &web)
        .await
        .unwrap();
    let web = pod_when(&cp, "web", "web to run with an IP", |p| {
        phase(p) == "Running" && pod_ip(p).is_some()
    })
    .await;
    let web_ip = pod_ip(&web).unwrap();
    assert!(
        in_cidr(web_ip, &cidr),
        "web's IP {web_ip} is outside {cidr}"
    );
    assert_eq!(web.spec.as_ref().unwrap().node_name.as_deref(), Some(node));

    // The client fetches the page by IP, then looks the name up through the
    // resolv.conf the agent wrote (the node-local DNS server) and fetches by that.
    let name = "web.grp.default.svc.cluster.local";
    let script = format!(
        "set -e; cat /etc/resolv.conf; \
         for i in $(seq 1 50); do wget -q -O /tmp/byip http://{web_ip}:8080/index.html && break; sleep 0.2; done; \
         echo byip=$(cat /tmp/byip); \
         nslookup {name} > /tmp/ns; cat /tmp/ns; \
         addr=$(sed -n 's/^Address: *\\([0-9.]*\\)$/\\1/p' /tmp/ns | tail -n1); echo resolved=$addr; \
         wget -q -O /tmp/byname http://$addr:8080/index.html; echo byname=$(cat /tmp/byname)"
    );
    let client = pod(
        "client",
        serde_json::json!({
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", script]}],
        }),
    );
    cp.pods()
        .create(&PostParams::default(), &client)
        .await
        .unwrap();
    let client = pod_when(&cp, "client", "the client to finish", |p| {
        matches!(phase(p), "Succeeded" | "Failed")
    })
    .await;
    let out = logs(&cp, node, "client").await;
    assert_eq!(phase(&client), "Succeeded", "client output:\n{out}");
    let client_ip = pod_ip(&client).unwrap();
    assert!(
        in_cidr(client_ip, &cidr),
        "client's IP {client_ip} is outside {cidr}"
    );
    assert_ne!(client_ip, web_ip);
    let gateway = {
        let base: Ipv4Addr = cidr.split_once('/').unwrap().0.parse().unwrap();
        Ipv4Addr::from(u32::from(base) + 1)
    };
    assert!(out.contains(&format!("nameserver {gateway}")), "{out}");
    assert!(out.contains("search default.svc.cluster.local"), "{out}");
    assert!(out.contains("byip=hello-from-web"), "{out}");
    assert!(out.contains(&format!("resolved={web_ip}\n")), "{out}");
    assert!(out.contains("byname=hello-from-web"), "{out}");

    // host-gw: another node with a pod CIDR and an InternalIP gets a route, which
    // goes when the node does.
    let nodes: Api<Node> = Api::all(cp.client.clone());
    let other: Node = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "other-node"},
        "spec": {"podCIDR": "10.97.200.0/24"},
        "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.7"}]},
    }))
    .unwrap();
    let created = nodes.create(&PostParams::default(), &other).await.unwrap();
    if created
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .is_none()
    {
        // The API drops status on create: set it through the status subresource.
        let mut with_status = created.clone();
        with_status.status = other.status.clone();
        nodes
            .replace_status("other-node", &PostParams::default(), &with_status)
            .await
            .unwrap();
    }
    let host = HostRoutes::in_netns(&routes_ns.0);
    eventually("the route to other-node's pods", || {
        let host = host.clone();
        async move {
            let current = host.current().ok()?;
            (current.get("10.97.200.0/24") == Some(&"192.0.2.7".parse().unwrap())).then_some(())
        }
    })
    .await;
    nodes
        .delete("other-node", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the route to other-node's pods to go", || {
        let host = host.clone();
        async move { host.current().ok()?.is_empty().then_some(()) }
    })
    .await;

    for name in ["web", "client"] {
        cp.pods()
            .delete(name, &DeleteParams::default().grace_period(0))
            .await
            .unwrap();
    }
    eventually("the pods to leave the API", || {
        let pods = cp.pods();
        async move {
            let list = pods.list(&Default::default()).await.ok()?;
            list.items.is_empty().then_some(())
        }
    })
    .await;
    // The agent detaches them: their CNI results go from the cache.
    let results = config.root.join("cni/results");
    eventually("the pods' CNI attachments to be torn down", || {
        let results = results.clone();
        async move {
            let left = std::fs::read_dir(&results).ok()?.flatten().count();
            (left == 0).then_some(())
        }
    })
    .await;
    shutdown.cancel();
    task.await.unwrap();
}

/// `cox-nvidia-plugin` next to this test binary (`cargo build -p coxswain-nvidia-plugin`).
fn plugin_binary() -> PathBuf {
    std::env::current_exe()
        .unwrap()
        .ancestors()
        .map(|dir| dir.join("cox-nvidia-plugin"))
        .find(|p| p.is_file())
        .expect("cox-nvidia-plugin is not built: run `cargo build -p coxswain-nvidia-plugin`")
}

/// Kills the plugin on drop.
struct Plugin(std::process::Child);

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simulated_gpus_are_reported_scheduled_and_handed_to_the_container() {
    let h = Harness::new(RuntimeKind::Runc);
    let cp = ControlPlane::start("10.98.0.0/16").await;
    let node = "gpu-node";
    let root = h.deps.config.root.clone();
    let plugin_dir = root.join("device-plugins");

    let mut config = AgentConfig::new(root.clone());
    config.cgroup_root = h.cgroup_root.clone();
    let shim = PathBuf::from(env!("CARGO_BIN_EXE_coxswain-shim"));
    let deps = worker_deps(&config, Some(h.kind), shim).unwrap();
    let mut daemon = AgentDaemonConfig::new(&cp.url, node);
    daemon.logs_listen = "127.0.0.1:0".parse().unwrap();
    daemon.device_plugin_dir = Some(plugin_dir.clone());
    let agent = NodeAgent::new(daemon, deps);
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let task = tokio::spawn(async move { agent.run(stop).await.unwrap() });

    // The plugin waits for kubelet.sock, then registers with the agent.
    let kubelet_sock = plugin_dir.join("kubelet.sock");
    eventually("kubelet.sock", || {
        let exists = kubelet_sock.exists();
        async move { exists.then_some(()) }
    })
    .await;
    let _plugin = Plugin(
        Command::new(plugin_binary())
            .arg("--plugin-dir")
            .arg(&plugin_dir)
            .arg("--simulated-dev-dir")
            .arg(root.join("simulated-dev"))
            .args(["--simulate", "pcie-8x-nvlink-pairs"])
            .spawn()
            .unwrap(),
    );

    let nodes: Api<Node> = Api::all(cp.client.clone());
    eventually("8 allocatable GPUs on the node", || {
        let nodes = nodes.clone();
        async move {
            let n = nodes.get_opt(node).await.ok()??;
            let gpus = n.status?.allocatable?.get("nvidia.com/gpu")?.0.clone();
            (gpus == "8").then_some(())
        }
    })
    .await;
    let slices: Api<coxswain_api::k8s::ResourceSlice> = Api::all(cp.client.clone());
    let listed = slices.list(&Default::default()).await.unwrap();
    let ours: Vec<_> = listed
        .items
        .iter()
        .filter(|s| s.spec.node_name.as_deref() == Some(node))
        .collect();
    assert_eq!(ours.len(), 1, "{:?}", listed.items);
    assert_eq!(ours[0].spec.devices.as_ref().map(Vec::len), Some(8));

    let gpu_pod = pod(
        "trainer",
        serde_json::json!({
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox",
                "command": ["sh", "-c", "echo visible=$NVIDIA_VISIBLE_DEVICES"],
                "resources": {"limits": {"nvidia.com/gpu": "2"}}}],
        }),
    );
    cp.pods()
        .create(&PostParams::default(), &gpu_pod)
        .await
        .unwrap();
    let done = pod_when(&cp, "trainer", "the GPU pod to finish", |p| {
        matches!(phase(p), "Succeeded" | "Failed")
    })
    .await;
    let out = logs(&cp, node, "trainer").await;
    assert_eq!(phase(&done), "Succeeded", "{out} {:?}", done.status);
    assert_eq!(done.spec.as_ref().unwrap().node_name.as_deref(), Some(node));
    let annotations = done.metadata.annotations.clone().unwrap_or_default();
    let recorded = annotations
        .get("coxswain.dev/gpu-devices")
        .unwrap_or_else(|| panic!("no devices annotation: {annotations:?}"));
    let visible = out
        .trim()
        .strip_prefix("visible=")
        .unwrap_or_else(|| panic!("{out}"));
    let ids: Vec<&str> = visible.split(',').filter(|s| !s.is_empty()).collect();
    assert_eq!(ids.len(), 2, "{out}");
    for id in ids {
        assert!(
            recorded.contains(id),
            "{id} not in the annotation {recorded}"
        );
    }
    shutdown.cancel();
    task.await.unwrap();
}
