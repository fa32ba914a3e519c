//! The "no leaks" proof through the real agent daemon: pods are created and deleted
//! through the API (200 by default, in batches) on a node whose pod CIDR is a /28
//! (13 addresses for 10 pods at a time, so a leaked address soon starves the node),
//! while the agent — a child process running runc pods on the CNI bridge — is
//! SIGKILLed at random points between ADD and DEL and started again on the same
//! root, and once the host "reboots". Afterwards host-local's reservations are
//! exactly the live pods' addresses, and nothing of a deleted pod is left: no veth,
//! namespace, pod cgroup, runtime state, mount, CNI result or directory; DEL of a
//! deleted pod succeeds, twice.
//!
//! `COX_CHURN_PODS=N` churns N pods; `COX_CHURN_SEED=S` replays a run's kill points.
//! The agent's log (with its CNI ADD/DEL timings, which the test prints as p50/p99)
//! is `agent.log` in the test's tempdir.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Harness;
use common::agent_process::{AgentProcess, AgentSpec, child_main};
use common::control_plane::{ControlPlane, eventually, phase, pod_ip, pod_when, ready, restarts};
use common::node_state::{NodeState, simulate_reboot};
use coxswain_cni::{
    Attachment, Cni, DEFAULT_CNI_PATH, NetworkConfigList, ProcessExec, ResultCache,
    loopback_config_list, parse_cni_path,
};
use coxswain_control_plane::nodeservice::NodeServiceConfig;
use coxswain_node_agent::runtime::RuntimeKind;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams};

/// The helper test that is the agent process (see `common::agent_process`).
const HELPER: &str = "agent_process";

#[test]
#[ignore = "the agent process of the churn test; does nothing without COX_TEST_AGENT_PROCESS"]
fn agent_process() {
    child_main();
}

/// Pods alive through the whole run (and the host reboot).
const LONG_LIVED: usize = 2;
/// Pods created, then deleted, together.
const BATCH: usize = 8;

/// Where, between ADD and DEL, the agent is killed in a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kill {
    /// Not killed.
    Never,
    /// Right after the pods are created: inside sandbox set-up, CNI ADD or runc create.
    DuringSetup,
    /// While the pods run; they are deleted (gracefully or forced) while it is down.
    WhileDown,
    /// Right after the deletes: inside SIGTERM, runc delete, CNI DEL or unmounts.
    DuringTeardown,
    /// The host reboots while the pods run.
    Reboot,
}

/// xorshift64*, seeded from the clock (or `COX_CHURN_SEED`) and printed, so a run's
/// kill points can be replayed.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let seed = std::env::var("COX_CHURN_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64;
                nanos ^ u64::from(std::process::id())
            });
        eprintln!("churn: COX_CHURN_SEED={seed}");
        Self(seed.max(1))
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Deletes the test's bridge on drop.
struct Bridge(String);

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.0])
            .status();
    }
}

/// A container that exits on SIGTERM at once (sh as PID 1 ignores it otherwise).
fn sleeper(i: usize) -> serde_json::Value {
    let mut container = serde_json::json!({
        "name": "main", "image": "busybox",
        "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
    });
    // Guaranteed, Burstable and BestEffort pods: three places for the pod cgroup.
    match i % 3 {
        0 => {
            container["resources"] =
                serde_json::json!({"limits": {"cpu": "100m", "memory": "64Mi"}})
        }
        1 => container["resources"] = serde_json::json!({"requests": {"cpu": "10m"}}),
        _ => {}
    }
    serde_json::json!({"terminationGracePeriodSeconds": 2, "containers": [container]})
}

/// The node, its agent and what the test knows of it.
struct Churn {
    _harness: Harness,
    cp: ControlPlane,
    spec: AgentSpec,
    log: PathBuf,
    agent: Option<AgentProcess>,
    ipam_dir: PathBuf,
    rng: Rng,
    kills: usize,
    /// Gracefully deleted pods that left the API while something of them was still
    /// on the node.
    early: Vec<String>,
}

impl Churn {
    fn start_agent(&mut self) {
        assert!(self.agent.is_none());
        self.agent = Some(AgentProcess::spawn(HELPER, &self.spec, &self.log));
    }

    fn kill_agent(&mut self) {
        if let Some(agent) = self.agent.take() {
            agent.sigkill();
            self.kills += 1;
        }
    }

    fn state(&self) -> NodeState {
        NodeState::read(
            &self.spec.root,
            &self.spec.runtime,
            &self.spec.cgroup_root,
            &self.spec.bridge,
            &self.ipam_dir,
        )
    }

    async fn sleep_ms(&mut self, below: u64) {
        let ms = self.rng.below(below);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    /// Waits until every pod in `names` runs, ready, with an address (and, when
    /// `min_restarts` is set, after that many restarts); returns name → (uid, ip).
    async fn running(
        &self,
        names: &[String],
        min_restarts: &BTreeMap<String, i32>,
    ) -> BTreeMap<String, (String, IpAddr)> {
        let mut out = BTreeMap::new();
        for name in names {
            let least = min_restarts.get(name).copied().unwrap_or(0);
            let pod = pod_when(&self.cp, name, &format!("{name} to run"), |p| {
                phase(p) == "Running" && ready(p) && pod_ip(p).is_some() && restarts(p) >= least
            })
            .await;
            out.insert(
                name.clone(),
                (pod.metadata.uid.clone().unwrap(), pod_ip(&pod).unwrap()),
            );
        }
        out
    }

    /// Waits until `names` have left the API. For `graceful` pods (deleted with a
    /// grace period, the agent running throughout), checks as each one goes that
    /// the agent had already removed everything of it: the API may only lose such a
    /// pod through the agent's PodTerminated.
    async fn gone(
        &mut self,
        names: &[String],
        uids: &BTreeMap<String, String>,
        graceful: &BTreeSet<String>,
    ) {
        let pods = self.cp.pods();
        let mut left: BTreeSet<String> = names.iter().cloned().collect();
        let limit = Instant::now() + Duration::from_secs(180);
        while !left.is_empty() {
            let mut went = Vec::new();
            for name in &left {
                if matches!(pods.get_opt(name).await, Ok(None)) {
                    went.push(name.clone());
                }
            }
            if went.iter().any(|n| graceful.contains(n)) {
                let state = self.state();
                for name in went.iter().filter(|n| graceful.contains(*n)) {
                    let uid = &uids[name];
                    let live: BTreeSet<String> = BTreeSet::new();
                    let mine: Vec<String> = state
                        .leaks(&live)
                        .into_iter()
                        .filter(|l| l.contains(uid.as_str()))
                        .collect();
                    if !mine.is_empty() {
                        self.early.push(format!("{name} ({uid}): {mine:?}"));
                    }
                }
            }
            for name in went {
                left.remove(&name);
            }
            assert!(
                Instant::now() < limit,
                "timed out waiting for {left:?} to leave the API"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until nothing is left on the node but what the pods in `live` (uid →
    /// ip) own, and their addresses are exactly the reserved ones; panics with
    /// what is left after the hang guard.
    async fn converge(&self, live: &BTreeMap<String, IpAddr>) -> NodeState {
        let uids: BTreeSet<String> = live.keys().cloned().collect();
        let ips: BTreeSet<IpAddr> = live.values().copied().collect();
        let limit = Instant::now() + Duration::from_secs(120);
        loop {
            let state = self.state();
            let leaks = state.leaks(&uids);
            if leaks.is_empty() && state.reserved_ips() == ips {
                return state;
            }
            assert!(
                Instant::now() < limit,
                "the node kept state of deleted pods: {leaks:#?}\nreserved {:?}, live pods' IPs {ips:?}",
                state.reservations
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        // The tempdir goes with the harness: keep the agent's log of a failed run.
        if std::thread::panicking() {
            let kept =
                std::env::temp_dir().join(format!("cox-churn-agent-{}.log", std::process::id()));
            if std::fs::copy(&self.log, &kept).is_ok() {
                eprintln!("churn: the agent's log is kept in {}", kept.display());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pod_churn_with_agent_kills_and_a_reboot_leaks_nothing() {
    let h = Harness::new(RuntimeKind::Runc);
    let tag = std::process::id() % 250;
    let bridge = Bridge(format!("coxch{tag}"));
    let cluster = format!("10.91.{tag}.0/24");
    let config = NodeServiceConfig {
        cluster_cidr: cluster.parse().unwrap(),
        node_cidr_prefix: 28,
        ..NodeServiceConfig::default()
    };
    let cp = ControlPlane::start(config).await;
    let root = h.deps.config.root.clone();
    let node = "churn-node";
    let spec = AgentSpec {
        server: cp.url.clone(),
        node: node.into(),
        root: root.clone(),
        cgroup_root: h.cgroup_root.clone(),
        runtime: "runc".into(),
        bridge: bridge.0.clone(),
        dns_port: Some(53),
        log_filter: "info,coxswain_node_agent::network::cni=debug".into(),
        device_plugin_dir: None,
    };
    let log = h.dir.path().join("agent.log");
    eprintln!("churn: agent log {}", log.display());
    let mut churn = Churn {
        ipam_dir: root.join("cni/ipam"),
        _harness: h,
        cp,
        spec,
        log,
        agent: None,
        rng: Rng::new(),
        kills: 0,
        early: Vec::new(),
    };
    churn.start_agent();

    let nodes: Api<Node> = Api::all(churn.cp.client.clone());
    let pod_cidr = eventually("the node's pod CIDR", || {
        let nodes = nodes.clone();
        async move { nodes.get_opt(node).await.ok()??.spec?.pod_cidr }
    })
    .await;
    assert_eq!(pod_cidr, format!("10.91.{tag}.0/28"), "the node gets a /28");

    let keep: Vec<String> = (0..LONG_LIVED).map(|i| format!("keep-{i}")).collect();
    for (i, name) in keep.iter().enumerate() {
        churn.cp.create_pod(name, node, sleeper(i)).await;
    }
    let mut kept = churn.running(&keep, &BTreeMap::new()).await;

    let total: usize = std::env::var("COX_CHURN_PODS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let rounds = total.div_ceil(BATCH);
    let reboot_round = rounds / 2;
    let started = Instant::now();
    let mut churned = 0;
    let mut deleted_uids = Vec::new();
    for round in 0..rounds {
        let n = BATCH.min(total - churned);
        let names: Vec<String> = (0..n).map(|i| format!("c{round}-{i}")).collect();
        let kill = if round == reboot_round {
            Kill::Reboot
        } else {
            match churn.rng.below(6) {
                0 => Kill::DuringSetup,
                1 => Kill::WhileDown,
                2 => Kill::DuringTeardown,
                _ => Kill::Never,
            }
        };
        let mut uids = BTreeMap::new();
        for (i, name) in names.iter().enumerate() {
            let uid = churn.cp.create_pod(name, node, sleeper(i)).await;
            uids.insert(name.clone(), uid);
        }
        if kill == Kill::DuringSetup {
            churn.sleep_ms(1500).await;
            churn.kill_agent();
            churn.start_agent();
        }
        let mut running = churn.running(&names, &BTreeMap::new()).await;
        if kill == Kill::Reboot {
            churn.kill_agent();
            simulate_reboot(&root, &churn.spec.cgroup_root, &churn.spec.bridge);
            churn.start_agent();
            // Every pod comes back: new namespaces and addresses, containers restarted.
            let all: Vec<String> = keep.iter().chain(&names).cloned().collect();
            let least = all.iter().map(|n| (n.clone(), 1)).collect();
            let back = churn.running(&all, &least).await;
            for name in &keep {
                kept.insert(name.clone(), back[name].clone());
            }
            for name in &names {
                running.insert(name.clone(), back[name].clone());
            }
        }
        let live_ips: Vec<IpAddr> = kept
            .values()
            .chain(running.values())
            .map(|(_, ip)| *ip)
            .collect();
        let distinct: BTreeSet<IpAddr> = live_ips.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            live_ips.len(),
            "two live pods share an address: {live_ips:?}"
        );
        if kill == Kill::WhileDown {
            churn.kill_agent();
        }
        let mut graceful = BTreeSet::new();
        for (i, name) in names.iter().enumerate() {
            let params = if i % 2 == 0 {
                if kill == Kill::Never {
                    graceful.insert(name.clone());
                }
                DeleteParams::default()
            } else {
                DeleteParams::default().grace_period(0)
            };
            churn.cp.pods().delete(name, &params).await.unwrap();
        }
        match kill {
            Kill::WhileDown => churn.start_agent(),
            Kill::DuringTeardown => {
                churn.sleep_ms(800).await;
                churn.kill_agent();
                churn.start_agent();
            }
            _ => {}
        }
        churn.gone(&names, &uids, &graceful).await;
        deleted_uids.extend(uids.into_values());
        churned += n;
        eprintln!("churn: round {round}: {n} pods, kill {kill:?}");
    }
    let elapsed = started.elapsed();

    // Everything of the deleted pods goes; the live pods keep exactly their own.
    let live: BTreeMap<String, IpAddr> = kept.values().cloned().collect();
    let state = churn.converge(&live).await;
    for uid in live.keys() {
        // The inspection sees the live pods' state (so its silence about the
        // deleted ones means something).
        assert!(
            state.namespace_files.contains(&format!("netns/{uid}")),
            "{state:#?}"
        );
        assert!(state.cgroups.contains_key(uid), "{state:#?}");
        assert!(
            state.containers.iter().any(|c| c.starts_with(uid.as_str())),
            "{state:#?}"
        );
        assert!(
            state
                .mounts
                .iter()
                .any(|m| m.to_string_lossy().contains(uid.as_str())),
            "{state:#?}"
        );
    }
    assert_eq!(state.veths.len(), LONG_LIVED, "{state:#?}");
    assert!(
        churn.early.is_empty(),
        "gracefully deleted pods left the API before the agent removed them: {:#?}",
        churn.early
    );

    // The long-lived pods go too, and with them every address.
    for name in &keep {
        churn
            .cp
            .pods()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    let keep_uids: BTreeMap<String, String> = kept
        .iter()
        .map(|(n, (uid, _))| (n.clone(), uid.clone()))
        .collect();
    let graceful: BTreeSet<String> = keep.iter().cloned().collect();
    churn.gone(&keep, &keep_uids, &graceful).await;
    let state = churn.converge(&BTreeMap::new()).await;
    assert!(state.reservations.is_empty(), "{state:#?}");
    assert!(churn.early.is_empty(), "{:#?}", churn.early);

    // DEL of a deleted pod succeeds, twice (the CNI library, as the agent runs it).
    let cni = Cni::new(
        std::sync::Arc::new(ProcessExec::default()),
        parse_cni_path(DEFAULT_CNI_PATH),
        ResultCache::new(root.join("cni/results")),
    );
    let net = NetworkConfigList::load_file(&root.join("cni/net.d/10-coxswain.conflist")).unwrap();
    let gone_uid = &keep_uids["keep-0"];
    let netns = root.join("netns").join(gone_uid);
    for _ in 0..2 {
        cni.del(&net, &Attachment::new(gone_uid.as_str(), &netns, "eth0"))
            .expect("DEL of a deleted pod");
        cni.del(
            &loopback_config_list(),
            &Attachment::new(gone_uid.as_str(), &netns, "lo"),
        )
        .expect("loopback DEL of a deleted pod");
    }
    assert!(churn.state().reservations.is_empty());
    churn.kill_agent();

    let pods = churned + LONG_LIVED;
    eprintln!(
        "churn: {churned} pods churned in {rounds} rounds in {:.1} s ({:.2} pods/s), {} agent SIGKILLs, 1 reboot, {} pods deleted",
        elapsed.as_secs_f64(),
        churned as f64 / elapsed.as_secs_f64(),
        churn.kills,
        deleted_uids.len() + LONG_LIVED,
    );
    report_cni_timings(&churn.log, pods);
}

/// Prints p50/p99 of the agent's CNI ADD, DEL and ADD+DEL per pod from its log.
fn report_cni_timings(log: &Path, pods: usize) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut adds: BTreeMap<String, f64> = BTreeMap::new();
    let mut pairs: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    let mut dels = Vec::new();
    for line in text.lines() {
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .map(|v| v.trim_matches('"').to_string())
        };
        let (Some(uid), Some(ms)) = (
            field("pod="),
            field("ms=").and_then(|m| m.parse::<f64>().ok()),
        ) else {
            continue;
        };
        if line.contains("CNI ADD done") {
            adds.insert(uid, ms);
        } else if line.contains("CNI DEL done") {
            dels.push(ms);
            if let Some(add) = adds.remove(&uid) {
                pairs.entry(uid).or_insert((add, ms));
            }
        }
    }
    let pct = |mut v: Vec<f64>, p: f64| -> f64 {
        if v.is_empty() {
            return f64::NAN;
        }
        v.sort_by(f64::total_cmp);
        v[((v.len() as f64 - 1.0) * p).round() as usize]
    };
    let add: Vec<f64> = pairs.values().map(|(a, _)| *a).collect();
    let del: Vec<f64> = pairs.values().map(|(_, d)| *d).collect();
    let both: Vec<f64> = pairs.values().map(|(a, d)| a + d).collect();
    eprintln!(
        "churn: CNI timings from the agent log, {} of {pods} pods with an ADD and its DEL",
        both.len()
    );
    for (what, v) in [
        ("ADD", add),
        ("DEL", del),
        ("ADD+DEL", both),
        ("every DEL call", dels),
    ] {
        eprintln!(
            "churn:   {what:<15} p50 {:7.1} ms  p99 {:7.1} ms  (n={})",
            pct(v.clone(), 0.5),
            pct(v.clone(), 0.99),
            v.len()
        );
    }
}
