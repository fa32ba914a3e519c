//! Pod networking with Debian's real CNI plugins (root): addresses, pod-to-pod
//! reachability, teardown (also after a simulated agent crash), leaks over many
//! cycles, the node-local DNS server answering busybox `nslookup` from a pod,
//! host-gw routes between two "hosts", and a runc pod end to end.
//!
//! Each test owns a "host" network namespace (`cox-net-h…`) and runs the plugins
//! inside it through wrapper scripts in a private CNI_PATH, so bridges, veth host
//! ends and iptables rules exist only there and vanish with it. Pod sandboxes are
//! the agent's real `unshare` namespaces under a tempdir. Without root, the plugins,
//! iproute2 or busybox the tests fail saying so; they never skip silently.

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use coxswain_api::k8s::Pod;
use coxswain_node_agent::mounts::SystemMounter;
use coxswain_node_agent::network::dns::{DnsServer, ResolveAnswer, ResolveError, Resolver};
use coxswain_node_agent::network::routes::{HostRoutes, ROUTE_PROTOCOL};
use coxswain_node_agent::network::{
    CniNetwork, CniNetworkConfig, NetworkSource, PodIps, PodNetwork,
};
use coxswain_node_agent::runtime::RuntimeKind;
use coxswain_node_agent::sandbox::{NamespaceOps, PodNamespaces, UnshareNamespaces};

const SYSTEM_CNI_DIR: &str = "/usr/lib/cni";
const BUSYBOX: &str = "/bin/busybox";

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique() -> u32 {
    COUNTER.fetch_add(1, Ordering::SeqCst)
}

fn require_environment() {
    common::require_environment();
    for plugin in ["bridge", "host-local", "portmap", "loopback"] {
        let path = Path::new(SYSTEM_CNI_DIR).join(plugin);
        assert!(
            path.exists(),
            "{} is missing: run scripts/setup.sh as root (installs containernetworking-plugins)",
            path.display()
        );
    }
    assert!(
        Command::new("iptables-save").output().is_ok(),
        "iptables is missing: run scripts/setup.sh as root"
    );
}

/// Runs a command; returns (success, stdout+stderr).
fn run(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A named network namespace, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn create(prefix: &str) -> Self {
        let name = format!("{prefix}{:x}-{}", std::process::id(), unique());
        let (ok, text) = run("ip", &["netns", "add", &name]);
        assert!(ok, "ip netns add {name}: {text}");
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    fn path(&self) -> PathBuf {
        Path::new("/var/run/netns").join(&self.name)
    }

    /// `ip -n <ns> args`, which must succeed.
    fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        let (ok, text) = run("ip", &full);
        assert!(ok, "ip {full:?}: {text}");
        text
    }

    fn exec(&self, args: &[&str]) -> (bool, String) {
        let mut full = vec!["netns", "exec", &self.name];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    fn veths(&self) -> usize {
        self.ip(&["-o", "link", "show", "type", "veth"])
            .lines()
            .count()
    }

    /// iptables rules (not chain declarations) in this namespace.
    fn iptables_rules(&self) -> Vec<String> {
        let (ok, text) = self.exec(&["iptables-save"]);
        assert!(ok, "iptables-save: {text}");
        text.lines()
            .filter(|l| l.starts_with("-A"))
            .map(String::from)
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// A node: a host namespace, plugin wrappers running there, an agent root.
struct Node {
    host: Netns,
    dir: tempfile::TempDir,
    config: CniNetworkConfig,
    namespaces: UnshareNamespaces,
    sandboxes: Vec<PodNamespaces>,
}

impl Node {
    fn new(prefix_len: u8) -> Self {
        require_environment();
        let host = Netns::create("cox-net-h");
        let dir = tempfile::Builder::new()
            .prefix("cox-net-it-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let wrappers = dir.path().join("cni-bin");
        std::fs::create_dir_all(&wrappers).unwrap();
        for plugin in ["bridge", "host-local", "portmap", "loopback"] {
            let path = wrappers.join(plugin);
            let script = format!(
                "#!/bin/sh\nexec ip netns exec {} {SYSTEM_CNI_DIR}/{plugin}\n",
                host.name
            );
            std::fs::write(&path, script).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let n = unique() % 200;
        let cidr = format!("10.{}.{n}.0/{prefix_len}", 200 + std::process::id() % 50);
        let mut config = CniNetworkConfig::for_pod_cidr(&dir.path().join("agent"), cidr.clone());
        config.source = NetworkSource::PodCidr {
            cidr,
            bridge: format!("coxn{n}"),
        };
        config.cni_path = vec![wrappers];
        Self {
            host,
            dir,
            config,
            namespaces: UnshareNamespaces::new(Box::new(SystemMounter)),
            sandboxes: Vec::new(),
        }
    }

    fn network(&self) -> CniNetwork {
        CniNetwork::new(self.config.clone()).unwrap()
    }

    /// A real pod sandbox network namespace.
    fn sandbox(&mut self, uid: &str) -> PathBuf {
        let ns = PodNamespaces::at(&self.dir.path().join("agent"), uid);
        self.namespaces.create(&ns, uid).unwrap();
        self.sandboxes.push(ns.clone());
        ns.net
    }

    fn remove_sandbox(&mut self, netns: &Path) {
        if let Some(i) = self.sandboxes.iter().position(|n| n.net == netns) {
            let ns = self.sandboxes.remove(i);
            self.namespaces.remove(&ns).unwrap();
        }
    }

    fn reservations(&self) -> Vec<String> {
        let dir = self.config.ipam_dir().join("coxswain");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| name.parse::<IpAddr>().is_ok())
            .collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        for ns in std::mem::take(&mut self.sandboxes) {
            let _ = self.namespaces.remove(&ns);
        }
    }
}

fn pod(uid: &str, host_port: Option<u16>) -> Pod {
    let ports = match host_port {
        Some(p) => serde_json::json!([{"containerPort": 80, "hostPort": p}]),
        None => serde_json::json!([]),
    };
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("p-{uid}"), "namespace": "shop", "uid": uid},
        "spec": {"containers": [{"name": "c", "image": "busybox", "ports": ports}]},
    }))
    .unwrap()
}

fn uid() -> String {
    format!("net{:x}-{}", std::process::id(), unique())
}

/// busybox in the pod's network namespace.
fn in_pod(netns: &Path, args: &[&str]) -> (bool, String) {
    let mut full = vec![format!("--net={}", netns.display()), BUSYBOX.to_string()];
    full.extend(args.iter().map(|s| s.to_string()));
    let full: Vec<&str> = full.iter().map(String::as_str).collect();
    run("nsenter", &full)
}

fn v4(ips: &PodIps) -> String {
    ips.ips
        .iter()
        .find(|ip| ip.is_ipv4())
        .expect("an IPv4 pod address")
        .to_string()
}

#[test]
fn two_pods_get_distinct_addresses_and_reach_each_other() {
    let mut node = Node::new(28);
    let net = node.network();
    let (a, b) = (uid(), uid());
    let (na, nb) = (node.sandbox(&a), node.sandbox(&b));
    let ips_a = net.setup(&pod(&a, Some(18080)), &na).unwrap();
    let ips_b = net.setup(&pod(&b, None), &nb).unwrap();
    let (ip_a, ip_b) = (v4(&ips_a), v4(&ips_b));
    assert_ne!(ip_a, ip_b);
    assert_eq!(node.reservations().len(), 2);
    // Both inside the small pod CIDR, neither the gateway.
    let gateway = net.gateway().unwrap().to_string();
    for ip in [&ip_a, &ip_b] {
        assert_ne!(*ip, gateway);
        let prefix = gateway.rsplit_once('.').unwrap().0;
        assert!(ip.starts_with(prefix), "{ip} not in the pod CIDR");
    }
    let (ok, text) = in_pod(&na, &["ping", "-c1", "-W5", &ip_b]);
    assert!(ok, "pod a cannot ping pod b ({ip_b}): {text}");
    let (ok, text) = in_pod(&nb, &["ping", "-c1", "-W5", &ip_a]);
    assert!(ok, "pod b cannot ping pod a ({ip_a}): {text}");
    // The hostPort became portmap rules in the host namespace.
    let rules = node.host.iptables_rules().join("\n");
    assert!(rules.contains("18080"), "no portmap rule: {rules}");
    // setup is idempotent: the same address, no new reservation.
    assert_eq!(net.setup(&pod(&a, Some(18080)), &na).unwrap(), ips_a);
    assert_eq!(node.reservations().len(), 2);
    assert_eq!(net.attached().unwrap().len(), 2);
    net.teardown(&a, &na).unwrap();
    net.teardown(&b, &nb).unwrap();
}

#[test]
fn teardown_releases_the_address_and_is_idempotent() {
    let mut node = Node::new(28);
    let net = node.network();
    let a = uid();
    let na = node.sandbox(&a);
    let ips = net.setup(&pod(&a, Some(18081)), &na).unwrap();
    assert_eq!(node.reservations(), vec![v4(&ips)]);
    assert_eq!(node.host.veths(), 1);
    net.teardown(&a, &na).unwrap();
    assert!(node.reservations().is_empty(), "{:?}", node.reservations());
    assert_eq!(node.host.veths(), 0);
    assert!(net.attached().unwrap().is_empty());
    assert!(
        !node.host.iptables_rules().join("\n").contains("18081"),
        "portmap rule left"
    );
    let (_, text) = in_pod(&na, &["ip", "-o", "addr"]);
    assert!(
        !text.contains(&v4(&ips)),
        "address still in the pod: {text}"
    );
    net.teardown(&a, &na).unwrap();
    // Also once the sandbox's namespace is gone.
    node.remove_sandbox(&na);
    net.teardown(&a, &na).unwrap();
}

#[test]
fn teardown_succeeds_when_the_namespace_was_unmounted_but_its_file_is_left() {
    // A crash between unmounting the pod's network namespace and CNI DEL leaves a plain
    // file at the netns path; the bridge plugin refuses such a path ("unknown FS magic"),
    // so DEL must run without one and still release the address.
    let mut node = Node::new(28);
    let net = node.network();
    let a = uid();
    let na = node.sandbox(&a);
    let ips = net.setup(&pod(&a, None), &na).unwrap();
    assert_eq!(node.reservations(), vec![v4(&ips)]);
    let (unmounted, out) = run("umount", &[na.to_str().unwrap()]);
    assert!(unmounted, "umount {}: {out}", na.display());
    assert!(na.is_file(), "the netns file stays");
    net.teardown(&a, &na).unwrap();
    assert!(node.reservations().is_empty(), "{:?}", node.reservations());
    assert!(net.attached().unwrap().is_empty());
    node.remove_sandbox(&na);
}

#[test]
fn teardown_after_an_agent_crash_uses_the_persisted_result() {
    let mut node = Node::new(28);
    let a = uid();
    let na = node.sandbox(&a);
    let ips = {
        let net = node.network();
        net.setup(&pod(&a, Some(18082)), &na).unwrap()
        // The agent "dies": its CniNetwork is dropped; netns and state stay.
    };
    assert_eq!(node.reservations().len(), 1);
    let restarted = node.network();
    assert_eq!(
        restarted.attached().unwrap(),
        std::collections::BTreeSet::from([a.clone()])
    );
    // A restarted agent re-adopts the attachment as it is...
    assert_eq!(restarted.setup(&pod(&a, Some(18082)), &na).unwrap(), ips);
    assert_eq!(node.reservations().len(), 1);
    // A sandbox re-made after a reboot (the cached attachment's interface is gone)
    // gets a fresh attachment, and the stale reservation is freed first.
    node.remove_sandbox(&na);
    let na = node.sandbox(&a);
    let fresh = restarted.setup(&pod(&a, Some(18082)), &na).unwrap();
    assert!(!fresh.ips.is_empty());
    assert_eq!(node.reservations(), vec![v4(&fresh)]);
    let (ok, text) = in_pod(&na, &["ip", "-o", "addr", "show", "dev", "eth0"]);
    assert!(ok && text.contains(&v4(&fresh)), "{text}");
    // An agent killed inside ADD, after the plugins but before the cache write:
    // the interface is there without a record; setup clears it and adds afresh.
    let record = node
        .config
        .results_dir()
        .join(format!("coxswain:{a}:eth0.json"));
    std::fs::remove_file(&record).unwrap();
    let redone = restarted.setup(&pod(&a, Some(18082)), &na).unwrap();
    assert_eq!(node.reservations(), vec![v4(&redone)]);
    assert_eq!(node.host.veths(), 1);
    assert!(record.exists());
    // ...and tears it down from the cache, port mappings included.
    let again = node.network();
    again.teardown(&a, &na).unwrap();
    assert!(node.reservations().is_empty());
    assert_eq!(node.host.veths(), 0);
    assert!(!node.host.iptables_rules().join("\n").contains("18082"));
    assert!(again.attached().unwrap().is_empty());
}

#[test]
fn fifty_cycles_on_a_small_range_leak_nothing() {
    // A /28 has 13 pod addresses: a leak of one per cycle exhausts it.
    let mut node = Node::new(28);
    let net = node.network();
    let mut baseline = None;
    for cycle in 0..50 {
        let u = uid();
        let ns = node.sandbox(&u);
        let ips = net
            .setup(&pod(&u, Some(19000 + cycle as u16)), &ns)
            .unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
        assert!(!ips.ips.is_empty());
        net.teardown(&u, &ns).unwrap();
        node.remove_sandbox(&ns);
        if cycle == 0 {
            // portmap creates its top-level chains and jump rules once.
            baseline = Some(node.host.iptables_rules());
        }
    }
    assert!(node.reservations().is_empty(), "{:?}", node.reservations());
    assert_eq!(node.host.veths(), 0);
    assert_eq!(Some(node.host.iptables_rules()), baseline);
    assert!(net.attached().unwrap().is_empty());
    let cached = std::fs::read_dir(node.config.results_dir())
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(cached, 0, "result cache entries left");
}

/// A fixed name table.
struct Fixed(BTreeMap<String, Vec<IpAddr>>);

#[async_trait::async_trait]
impl Resolver for Fixed {
    async fn resolve(&self, name: &str) -> Result<ResolveAnswer, ResolveError> {
        Ok(match self.0.get(name) {
            Some(a) => ResolveAnswer::Addresses(a.clone()),
            None => ResolveAnswer::NoSuchName,
        })
    }
}

/// A UDP socket bound inside the namespace at `netns` (a socket stays in the
/// namespace it was made in), made on a thread of its own.
fn udp_socket_in(netns: &Path, addr: SocketAddr) -> std::net::UdpSocket {
    let netns = netns.to_path_buf();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&netns).unwrap();
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let socket = std::net::UdpSocket::bind(addr).unwrap();
        socket.set_nonblocking(true).unwrap();
        socket
    })
    .join()
    .unwrap()
}

#[test]
fn pods_resolve_cluster_names_through_the_node_dns_server() {
    let mut node = Node::new(28);
    let net = node.network();
    let a = uid();
    let na = node.sandbox(&a);
    net.setup(&pod(&a, None), &na).unwrap();
    // The bridge now holds the gateway address; the server listens there.
    let gateway = net.gateway().unwrap();
    assert_eq!(net.cluster_dns().unwrap().nameservers, vec![gateway]);
    let socket = udp_socket_in(&node.host.path(), SocketAddr::new(gateway, 53));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let names = BTreeMap::from([(
        "web.shop.svc.cluster.local".to_string(),
        vec!["10.96.7.7".parse().unwrap()],
    )]);
    let server = Arc::new(DnsServer::new("cluster.local", Arc::new(Fixed(names))).unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = runtime.spawn(async move {
        let socket = tokio::net::UdpSocket::from_std(socket).unwrap();
        server
            .serve_udp(socket, async {
                let _ = stopped.await;
            })
            .await
    });
    let gw = gateway.to_string();
    let (ok, text) = in_pod(&na, &["nslookup", "web.shop.svc.cluster.local", &gw]);
    assert!(ok && text.contains("10.96.7.7"), "nslookup: {text}");
    let (ok, text) = in_pod(&na, &["nslookup", "nope.shop.svc.cluster.local", &gw]);
    assert!(!ok && text.contains("NXDOMAIN"), "unknown name: {text}");
    let (ok, text) = in_pod(&na, &["nslookup", "example.com", &gw]);
    assert!(!ok && text.contains("REFUSED"), "outside name: {text}");
    stop.send(()).unwrap();
    runtime.block_on(serving).unwrap().unwrap();
    net.teardown(&a, &na).unwrap();
}

#[test]
fn host_gw_routes_are_synced_exactly_between_two_hosts() {
    require_environment();
    let (h1, h2) = (Netns::create("cox-net-r"), Netns::create("cox-net-r"));
    let n = unique() % 200;
    let (v1, v2) = (format!("coxr{n}a"), format!("coxr{n}b"));
    h1.ip(&["link", "add", &v1, "type", "veth", "peer", "name", &v2]);
    h1.ip(&["link", "set", &v2, "netns", &h2.name]);
    let (a1, a2) = (format!("192.168.{n}.1"), format!("192.168.{n}.2"));
    h1.ip(&["addr", "add", &format!("{a1}/24"), "dev", &v1]);
    h2.ip(&["addr", "add", &format!("{a2}/24"), "dev", &v2]);
    h1.ip(&["link", "set", &v1, "up"]);
    h2.ip(&["link", "set", &v2, "up"]);
    // Host 2 "runs" a pod at 10.251.<n>.5 (on its loopback).
    let pod_cidr = format!("10.251.{n}.0/24");
    let pod_ip = format!("10.251.{n}.5");
    h2.ip(&["addr", "add", &format!("{pod_ip}/32"), "dev", "lo"]);
    // Somebody else's route, which a sync must never touch.
    h1.ip(&[
        "route",
        "add",
        "10.99.0.0/16",
        "via",
        &a2,
        "proto",
        "static",
    ]);

    let routes = HostRoutes::in_netns(&h1.name);
    let via: IpAddr = a2.parse().unwrap();
    let (ok, _) = h1.exec(&[BUSYBOX, "ping", "-c1", "-W1", &pod_ip]);
    assert!(!ok, "reachable before any route");
    let stale = format!("10.252.{n}.0/24");
    let changes = routes
        .sync_routes(&[(pod_cidr.clone(), via), (stale.clone(), via)])
        .unwrap();
    assert_eq!(changes.added.len(), 2);
    let (ok, text) = h1.exec(&[BUSYBOX, "ping", "-c1", "-W5", &pod_ip]);
    assert!(
        ok,
        "host 1 cannot reach host 2's pod through the route: {text}"
    );
    let shown = h1.ip(&["route", "show", "proto", &ROUTE_PROTOCOL.to_string()]);
    assert!(
        shown.contains(&pod_cidr) && shown.contains(&stale),
        "{shown}"
    );
    // Idempotent.
    assert_eq!(
        routes
            .sync_routes(&[(pod_cidr.clone(), via), (stale.clone(), via)])
            .unwrap(),
        Default::default()
    );
    // The node behind `stale` left: its route goes, the others stay.
    let changes = routes.sync_routes(&[(pod_cidr.clone(), via)]).unwrap();
    assert_eq!(changes.removed, vec![stale.clone()]);
    let all = h1.ip(&["route", "show"]);
    assert!(!all.contains(&stale), "{all}");
    assert!(all.contains("10.99.0.0/16"), "foreign route removed: {all}");
    assert!(all.contains(&pod_cidr), "{all}");
    // Syncing to nothing removes only ours.
    routes.sync_routes(&[]).unwrap();
    let all = h1.ip(&["route", "show"]);
    assert!(
        !all.contains(&pod_cidr) && all.contains("10.99.0.0/16"),
        "{all}"
    );
    assert!(routes.current().unwrap().is_empty());
}

#[test]
fn a_runc_pod_sees_its_address_in_status_and_etc_hosts() {
    let mut node = Node::new(28);
    let mut harness = common::Harness::new(RuntimeKind::Runc);
    // The harness's agent root, so the sandbox's netns is the one set up.
    node.config.state_dir = harness.deps.config.root.join("cni");
    node.config.node_ip = Some("192.0.2.10".parse().unwrap());
    harness.deps.network = Arc::new(node.network());
    let uid = common::uid();
    let pod = common::pod(
        &uid,
        serde_json::json!({
            "hostname": "web", "subdomain": "front",
            "containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c",
                "cat /etc/hosts /etc/resolv.conf; ip -o -4 addr show dev eth0; sleep 3600"]}],
        }),
    );
    let mut worker = harness.worker(pod);
    let status = common::drive(&mut worker, |s| {
        common::phase(s) == "Running" && s.pod_ip.is_some()
    });
    let pod_ip = status.pod_ip.clone().unwrap();
    assert_eq!(status.pod_ips.as_ref().unwrap()[0].ip, pod_ip);
    assert_eq!(status.host_ip.as_deref(), Some("192.0.2.10"));
    let log = harness.deps.config.pod_dir(&uid).join("logs/c/0.log");
    let limit = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("options ndots:5") && text.contains("inet ") {
            break text;
        }
        assert!(Instant::now() < limit, "container output: {text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let gateway = node.network().gateway().unwrap();
    assert!(
        text.contains(&format!(
            "{pod_ip}\tweb.front.default.svc.cluster.local\tweb"
        )),
        "{text}"
    );
    assert!(text.contains(&format!("nameserver {gateway}")), "{text}");
    assert!(
        text.contains("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{text}"
    );
    assert!(text.contains(&format!("inet {pod_ip}/")), "{text}");
    assert_eq!(node.reservations().len(), 1);
    common::remove(&mut worker, &harness.clock);
    assert!(node.reservations().is_empty(), "{:?}", node.reservations());
    assert_eq!(node.host.veths(), 0);
    assert!(harness.leftovers().is_empty(), "{:?}", harness.leftovers());
}
