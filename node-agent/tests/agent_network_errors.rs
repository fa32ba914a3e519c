//! Bad pod-network input through the agent daemon (in process, against an
//! in-process control plane, real runc and CNI plugins): an operator's conflist that
//! is broken, then names a plugin that is not installed, and a plugin that answers
//! with a CNI error object. Each shows in the pod's status as `NetworkSetupError`
//! with a message naming the file and field, or the plugin and what it said; the
//! agent keeps running other pods, picks up a fixed conflist without a restart, and
//! a failed ADD leaves no address behind.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::Harness;
use common::control_plane::{ControlPlane, eventually, phase, pod_ip, pod_reason, pod_when};
use common::node_state::{bridge_ports, reservations};
use coxswain_control_plane::nodeservice::NodeServiceConfig;
use coxswain_node_agent::AgentConfig;
use coxswain_node_agent::agent::{AgentDaemonConfig, NodeAgent, NodeNetworkConfig, worker_deps};
use coxswain_node_agent::runtime::RuntimeKind;
use kube::api::DeleteParams;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Deletes the test's bridge on drop.
struct Bridge(String);

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.0])
            .status();
    }
}

/// An agent running in this process, its pod network from `conf_dir`.
struct Agent {
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Agent {
    fn start(h: &Harness, url: &str, node: &str, conf_dir: &Path, cni_path: Vec<PathBuf>) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "info".into()),
            )
            .with_test_writer()
            .try_init();
        let mut config = AgentConfig::new(h.deps.config.root.clone());
        config.cgroup_root = h.cgroup_root.clone();
        config.backoff_initial = Duration::from_millis(500);
        config.backoff_max = Duration::from_secs(1);
        let shim = PathBuf::from(env!("CARGO_BIN_EXE_coxswain-shim"));
        let deps = worker_deps(&config, Some(h.kind), shim).unwrap();
        let mut daemon = AgentDaemonConfig::new(url, node);
        daemon.logs_listen = "127.0.0.1:0".parse().unwrap();
        let mut network = NodeNetworkConfig::new(&config.root);
        network.conf_dir = Some(conf_dir.to_path_buf());
        network.cni_path = Some(cni_path);
        daemon.network = Some(network);
        let agent = NodeAgent::new(daemon, deps);
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let task = tokio::spawn(async move { agent.run(stop).await.unwrap() });
        Self { shutdown, task }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
    }
}

/// A conflist for a bridge on `subnet` whose first plugin is `plugin` (the
/// bridge plugin itself, or a wrapper of it).
fn bridge_conflist(
    name: &str,
    plugin: &str,
    bridge: &str,
    subnet: &str,
    ipam_dir: &Path,
) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [{
            "type": plugin, "bridge": bridge, "isGateway": true, "ipMasq": false,
            "ipam": {
                "type": "host-local", "ranges": [[{"subnet": subnet}]],
                "routes": [{"dst": "0.0.0.0/0"}], "dataDir": ipam_dir,
            },
        }],
    })
    .to_string()
}

fn in_subnet(ip: IpAddr, subnet: &str) -> bool {
    let (base, prefix) = subnet.split_once('/').unwrap();
    let base: Ipv4Addr = base.parse().unwrap();
    let mask = u32::MAX << (32 - prefix.parse::<u32>().unwrap());
    matches!(ip, IpAddr::V4(v4) if u32::from(v4) & mask == u32::from(base) & mask)
}

/// A pod that runs `true` once.
fn once(host_network: bool) -> serde_json::Value {
    serde_json::json!({
        "restartPolicy": "Never", "hostNetwork": host_network,
        "containers": [{"name": "main", "image": "busybox", "command": ["true"]}],
    })
}

/// Waits for pod `name` to report NetworkSetupError with a message containing all
/// of `needles`; returns the message.
async fn network_error(cp: &ControlPlane, name: &str, needles: &[&str]) -> String {
    let what = format!("{name} to report NetworkSetupError mentioning {needles:?}");
    let pod = pod_when(cp, name, &what, |p| {
        let (reason, message) = pod_reason(p);
        reason == "NetworkSetupError" && needles.iter().all(|n| message.contains(n))
    })
    .await;
    assert_eq!(phase(&pod), "Pending");
    pod_reason(&pod).1
}

/// Creates pod `name`, waits for its NetworkSetupError mentioning `needles`, deletes
/// it with its grace period (the agent stops it and reports it terminated) and waits
/// for it to leave the API.
async fn delete_after_error(cp: &ControlPlane, node: &str, name: &str, needles: &[&str]) {
    cp.create_pod(name, node, once(false)).await;
    network_error(cp, name, needles).await;
    cp.pods()
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
    let pods = cp.pods();
    eventually(&format!("{name} to leave the API"), || {
        let pods = pods.clone();
        async move { matches!(pods.get_opt(name).await, Ok(None)).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broken_conflist_and_a_missing_plugin_are_named_in_the_pod_status_until_fixed() {
    let h = Harness::new(RuntimeKind::Runc);
    let tag = std::process::id() % 250;
    let bridge = Bridge(format!("coxer{tag}"));
    let cp = ControlPlane::start(NodeServiceConfig::default()).await;
    cp.allow_host_pods().await; // pod "host-net" uses hostNetwork
    let node = "errors-node-a";
    let conf_dir = h.dir.path().join("net.d");
    let ipam_dir = h.dir.path().join("ipam");
    std::fs::create_dir_all(&conf_dir).unwrap();
    let conflist = conf_dir.join("10-ops.conflist");
    // A plugin without a type.
    std::fs::write(
        &conflist,
        r#"{"cniVersion": "1.0.0", "name": "ops", "plugins": [{"bridge": "x"}]}"#,
    )
    .unwrap();
    let agent = Agent::start(&h, &cp.url, node, &conf_dir, vec!["/usr/lib/cni".into()]);

    cp.create_pod("victim", node, once(false)).await;
    let message = network_error(&cp, "victim", &["10-ops.conflist", "plugins[0].type"]).await;
    eprintln!("broken conflist: {message}");
    // A pod that never got a network can still be deleted (gracefully: through the agent).
    delete_after_error(&cp, node, "doomed-a", &["10-ops.conflist"]).await;

    // The agent keeps running pods that need no pod network.
    cp.create_pod("host-net", node, once(true)).await;
    pod_when(&cp, "host-net", "the hostNetwork pod to succeed", |p| {
        phase(p) == "Succeeded"
    })
    .await;

    // The operator fixes the file but names a plugin that is not installed.
    let subnet = format!("10.92.{tag}.0/28");
    let missing = bridge_conflist("ops", "cox-no-such-plugin", &bridge.0, &subnet, &ipam_dir);
    std::fs::write(&conflist, missing).unwrap();
    let message = network_error(&cp, "victim", &["cox-no-such-plugin", "/usr/lib/cni"]).await;
    eprintln!("missing plugin: {message}");
    delete_after_error(&cp, node, "doomed-b", &["cox-no-such-plugin"]).await;

    // Then installs a working one: the pod runs, no agent restart.
    let good = bridge_conflist("ops", "bridge", &bridge.0, &subnet, &ipam_dir);
    std::fs::write(&conflist, good).unwrap();
    let done = pod_when(&cp, "victim", "the victim to succeed", |p| {
        phase(p) == "Succeeded"
    })
    .await;
    let ip = pod_ip(&done).expect("the pod has an address");
    assert!(in_subnet(ip, &subnet), "{ip} outside {subnet}");
    assert_eq!(pod_reason(&done).0, "", "the problem is cleared");

    for name in ["victim", "host-net"] {
        cp.pods()
            .delete(name, &DeleteParams::default().grace_period(0))
            .await
            .unwrap();
    }
    eventually("the victim's address to be released", || {
        let left = reservations(&ipam_dir);
        async move { left.is_empty().then_some(()) }
    })
    .await;
    agent.stop().await;
}

/// A CNI plugin that is the bridge plugin, except that for pods named `bad-*` it
/// lets the bridge plugin attach them and then fails ADD with an error object, as
/// a plugin failing half-way does.
const ERROR_PLUGIN: &str = r#"#!/bin/sh
if [ "$CNI_COMMAND" = ADD ]; then
  case ";$CNI_ARGS;" in
    *";K8S_POD_NAME=bad-"*)
      input=$(cat)
      printf '%s' "$input" | /usr/lib/cni/bridge >/dev/null
      echo '{"cniVersion": "1.0.0", "code": 999, "msg": "cox-test refuses bad pods", "details": "the pod name starts with bad-"}'
      exit 1;;
  esac
fi
exec /usr/lib/cni/bridge
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_plugin_error_object_is_named_in_the_pod_status_and_other_pods_run() {
    let h = Harness::new(RuntimeKind::Runc);
    let tag = std::process::id() % 250;
    let bridge = Bridge(format!("coxep{tag}"));
    let cp = ControlPlane::start(NodeServiceConfig::default()).await;
    let node = "errors-node-b";
    let plugins = h.dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let plugin = plugins.join("cox-test-errplug");
    std::fs::write(&plugin, ERROR_PLUGIN).unwrap();
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let conf_dir = h.dir.path().join("net.d");
    let ipam_dir = h.dir.path().join("ipam");
    std::fs::create_dir_all(&conf_dir).unwrap();
    let subnet = format!("10.93.{tag}.0/28");
    std::fs::write(
        conf_dir.join("10-errnet.conflist"),
        bridge_conflist("errnet", "cox-test-errplug", &bridge.0, &subnet, &ipam_dir),
    )
    .unwrap();
    let agent = Agent::start(
        &h,
        &cp.url,
        node,
        &conf_dir,
        vec![plugins, "/usr/lib/cni".into()],
    );

    cp.create_pod("bad-pod", node, once(false)).await;
    cp.create_pod("good-pod", node, once(false)).await;
    let message = network_error(
        &cp,
        "bad-pod",
        &["cox-test-errplug", "999", "cox-test refuses bad pods"],
    )
    .await;
    eprintln!("plugin error: {message}");
    let good = pod_when(&cp, "good-pod", "the good pod to succeed", |p| {
        phase(p) == "Succeeded"
    })
    .await;
    let good_ip = pod_ip(&good).expect("the good pod has an address");
    assert!(in_subnet(good_ip, &subnet), "{good_ip} outside {subnet}");

    // The half-made attachments of the failed ADDs are undone: once the bad pod is
    // gone only the good pod holds an address and a veth.
    cp.pods()
        .delete("bad-pod", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    eventually("only the good pod to hold an address", || {
        let left: Vec<IpAddr> = reservations(&ipam_dir).into_keys().collect();
        let ports = bridge_ports(&bridge.0);
        async move { (left == [good_ip] && ports.len() == 1).then_some(()) }
    })
    .await;
    cp.pods()
        .delete("good-pod", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    eventually("every address to be released", || {
        let left = reservations(&ipam_dir);
        let ports = bridge_ports(&bridge.0);
        async move { (left.is_empty() && ports.is_empty()).then_some(()) }
    })
    .await;
    agent.stop().await;
}
