//! Pod start-up as a user sees it, runc vs crun: from the create of a pod that is already
//! bound (`spec.nodeName` set) until a watcher on the API server sees it `Running`,
//! p50/p99, one pod at a time and 20 pods at once on one node; and the agent's resident
//! memory (VmRSS) idle and with 20 pods running.
//!
//! The control plane (embedded store, API server, node service) runs in this process on
//! a loopback port; the agent runs as a child process (this binary again, `--agent`) so
//! its RSS is its own, with this binary as its container shim too. Pods are one busybox
//! `sleep` (100m CPU, 32Mi limits) that exits on SIGTERM.
//!
//! Run as root, in release: `cargo run --release -p coxswain-node-agent --example
//! startup_bench` (`-- --single 30 --rounds 3` are the defaults).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coxswain_control_plane::apiserver::ApiServer;
use coxswain_control_plane::client::in_process;
use coxswain_control_plane::nodeservice::{NodeService, NodeServiceConfig};
use coxswain_control_plane::store::EmbeddedStore;
use coxswain_node_agent::AgentConfig;
use coxswain_node_agent::agent::{AgentDaemonConfig, NodeAgent, worker_deps};
use coxswain_node_agent::images::{ImageConfig, LocalImageStore, busybox};
use coxswain_node_agent::mounts::SystemMounter;
use coxswain_node_agent::runtime::RuntimeKind;
use coxswain_node_agent::sandbox::{CgroupVersion, cgroup};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The name this binary answers to as the container shim.
const SHIM_NAME: &str = "coxswain-shim";
/// Pods at once in the "20 pods" case.
const BATCH: usize = 20;

/// When the watcher first saw each pod `Running`.
#[derive(Default)]
struct Seen {
    running: Mutex<HashMap<String, Instant>>,
    changed: Notify,
}

fn main() {
    let mut args = std::env::args();
    let program = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    if Path::new(&program).file_name() == Some(SHIM_NAME.as_ref()) {
        std::process::exit(coxswain_node_agent::shim::main(&rest));
    }
    if rest.first().map(String::as_str) == Some("--agent") {
        run_agent(&rest[1..]);
        return;
    }
    let number = |flag: &str, default: usize| {
        rest.iter()
            .position(|a| a == flag)
            .and_then(|i| rest.get(i + 1))
            .map_or(default, |v| v.parse().expect("a number"))
    };
    let (single, rounds) = (number("--single", 30), number("--rounds", 3));
    tokio::runtime::Runtime::new()
        .expect("tokio runtime")
        .block_on(bench(single, rounds));
}

/// `--agent URL NODE ROOT RUNTIME CGROUP_ROOT`: the agent daemon, until SIGTERM.
fn run_agent(args: &[String]) {
    let [url, node, root, runtime, cgroup_root] = args else {
        panic!("--agent URL NODE ROOT RUNTIME CGROUP_ROOT");
    };
    let root = PathBuf::from(root);
    let shim = root.join("bin").join(SHIM_NAME);
    std::fs::create_dir_all(root.join("bin")).expect("bin dir");
    let _ = std::fs::remove_file(&shim);
    std::os::unix::fs::symlink(std::env::current_exe().expect("own path"), &shim)
        .expect("shim link");
    let mut config = AgentConfig::new(&root);
    config.cgroup_root = cgroup_root.clone();
    let kind = RuntimeKind::parse(runtime).expect("runc or crun");
    let deps = worker_deps(&config, Some(kind), shim).expect("worker deps");
    let mut daemon = AgentDaemonConfig::new(url.as_str(), node.as_str());
    daemon.logs_listen = "127.0.0.1:0".parse().expect("address");
    daemon.node_ip = Some("127.0.0.1".parse().expect("address"));
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            term.recv().await;
            stop.cancel();
        });
        NodeAgent::new(daemon, deps)
            .run(shutdown)
            .await
            .expect("agent runs");
    });
}

/// The agent child of one runtime.
struct AgentProcess {
    child: std::process::Child,
    node: String,
}

impl AgentProcess {
    fn start(url: &str, dir: &Path, kind: &str) -> Self {
        let node = format!("bench-{kind}");
        let root = dir.join(kind);
        let images = LocalImageStore::new(
            AgentConfig::new(&root).images_dir(),
            Arc::new(SystemMounter),
        );
        let rootfs = busybox::build_rootfs(Path::new(busybox::BUSYBOX), &dir.join("busybox"))
            .expect("busybox rootfs (install busybox-static)");
        images
            .import_rootfs_dir("busybox", &rootfs, ImageConfig::default())
            .expect("busybox image");
        let cgroup_root = format!("coxswain-bench-{}-{kind}", std::process::id());
        let log = std::fs::File::create(dir.join(format!("agent-{kind}.log"))).expect("log");
        let child = std::process::Command::new(std::env::current_exe().expect("own path"))
            .arg("--agent")
            .args([url, &node])
            .arg(&root)
            .args([kind, &cgroup_root])
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("agent process");
        Self { child, node }
    }

    /// VmRSS in KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("agent status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    fn stop(mut self) {
        // SIGTERM: the agent detaches its (already deleted) pods and exits.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

fn pod(name: &str, node: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": "main", "image": "busybox",
                "command": ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait"],
                "resources": {"limits": {"cpu": "100m", "memory": "32Mi"}},
            }],
        },
    }))
    .expect("pod")
}

/// Creates the pods `names` at once; returns each one's create → seen-Running time.
async fn start_pods(pods: &Api<Pod>, seen: &Seen, node: &str, names: &[String]) -> Vec<Duration> {
    let creates = names.iter().map(|name| {
        let pods = pods.clone();
        let pod = pod(name, node);
        async move {
            let t0 = Instant::now();
            pods.create(&PostParams::default(), &pod)
                .await
                .expect("pod created");
            t0
        }
    });
    let started: Vec<Instant> = futures::future::join_all(creates).await;
    let limit = Instant::now() + Duration::from_secs(120);
    loop {
        let notified = seen.changed.notified();
        {
            let running = seen.running.lock().expect("lock");
            if names.iter().all(|n| running.contains_key(n)) {
                return names
                    .iter()
                    .zip(&started)
                    .map(|(n, t0)| running[n].saturating_duration_since(*t0))
                    .collect();
            }
        }
        assert!(Instant::now() < limit, "pods never ran: {names:?}");
        let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
    }
}

async fn delete_pods(pods: &Api<Pod>, names: &[String]) {
    for name in names {
        pods.delete(name, &DeleteParams::default())
            .await
            .expect("pod deleted");
    }
    let limit = Instant::now() + Duration::from_secs(120);
    for name in names {
        while pods.get_opt(name).await.expect("get").is_some() {
            assert!(Instant::now() < limit, "pod {name} never went");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

async fn bench(single: usize, rounds: usize) {
    if cgroup::detect().version() == CgroupVersion::V1 {
        cgroup::v1::release_unified_controllers(Path::new("/sys/fs/cgroup"))
            .expect("hybrid cgroup host");
    }
    let dir = tempfile::Builder::new()
        .prefix("cox-startup-bench-")
        .tempdir_in("/var/tmp")
        .expect("temp dir");
    let store = Arc::new(EmbeddedStore::open(dir.path().join("store")).expect("store"));
    let shutdown = CancellationToken::new();
    let api = ApiServer::new(store, shutdown.clone())
        .await
        .expect("api server");
    let client = in_process(&api);
    let nodes = NodeService::new(client.clone(), NodeServiceConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listener");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(coxswain_control_plane::serve::serve(
        api,
        nodes,
        listener,
        shutdown.clone(),
    ));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let seen = Arc::new(Seen::default());
    let watch_seen = seen.clone();
    let watch_pods = pods.clone();
    tokio::spawn(async move {
        let mut events = watcher(watch_pods, watcher::Config::default()).boxed();
        while let Some(event) = events.next().await {
            let (watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) = (match event {
                Ok(event) => event,
                Err(_) => continue,
            }) else {
                continue;
            };
            let now = Instant::now();
            let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            if running && let Some(name) = pod.metadata.name {
                watch_seen
                    .running
                    .lock()
                    .expect("lock")
                    .entry(name)
                    .or_insert(now);
                watch_seen.changed.notify_waiters();
            }
        }
    });

    println!(
        "pod start-up: create (bound) -> Running seen by a watcher; load average {}",
        load_average()
    );
    println!("| runtime | case | samples | p50 | p99 |");
    println!("|---|---|---|---|---|");
    let mut memory = Vec::new();
    for kind in ["runc", "crun"] {
        let agent = AgentProcess::start(&url, dir.path(), kind);
        let node_api: Api<Node> = Api::all(client.clone());
        let limit = Instant::now() + Duration::from_secs(60);
        while node_api.get_opt(&agent.node).await.expect("get").is_none() {
            assert!(Instant::now() < limit, "agent {kind} never registered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // One warm-up pod (first exec of the runtime, page cache), not counted.
        let warm = vec![format!("{kind}-warm")];
        start_pods(&pods, &seen, &agent.node, &warm).await;
        delete_pods(&pods, &warm).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle = agent.rss_kib();

        let mut one = Vec::new();
        for i in 0..single {
            let names = vec![format!("{kind}-one-{i}")];
            one.extend(start_pods(&pods, &seen, &agent.node, &names).await);
            delete_pods(&pods, &names).await;
        }
        let mut batch = Vec::new();
        let mut loaded = 0;
        for round in 0..rounds {
            let names: Vec<String> = (0..BATCH)
                .map(|i| format!("{kind}-batch-{round}-{i}"))
                .collect();
            batch.extend(start_pods(&pods, &seen, &agent.node, &names).await);
            loaded = loaded.max(agent.rss_kib());
            delete_pods(&pods, &names).await;
        }
        for (case, samples) in [("1 pod", &mut one), ("20 pods at once", &mut batch)] {
            println!(
                "| {kind} | {case} | {} | {} ms | {} ms |",
                samples.len(),
                percentile(samples, 50.0).as_millis(),
                percentile(samples, 99.0).as_millis()
            );
        }
        memory.push((kind, idle, loaded));
        agent.stop();
    }
    println!();
    println!("| runtime | agent VmRSS idle | agent VmRSS with 20 pods |");
    println!("|---|---|---|");
    for (kind, idle, loaded) in memory {
        println!(
            "| {kind} | {:.1} MiB | {:.1} MiB |",
            idle as f64 / 1024.0,
            loaded as f64 / 1024.0
        );
    }
    println!("load average at the end: {}", load_average());
    shutdown.cancel();
}
