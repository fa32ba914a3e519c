//! Multi-host on one machine (issue 7 "Prove it", issue 8's two-host job): two network
//! namespaces on a test bridge, each running a real `cox agent` that reaches `cox server`
//! over its Unix socket (`--listen-unix`). Pods on different hosts talk over the host-gw
//! routes by IP and by name, a hostPort answers on its host's address, `pods/{name}/log`
//! is proxied to the other host's agent, and the example TrainingJob trains with one worker
//! per host — there the agents join over TLS instead (issue 11): `cox server
//! --secure-listen` on the bridge address, each agent with only the cluster CA and a
//! bootstrap token from `cox token create`, getting its node certificate signed. Needs root, runc, busybox, python3 and the CNI plugins (`scripts/setup.sh`).
//! See docs/cni.md, "Multi-host test".

mod multihost_support;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use multihost_support::{CLUSTER_CIDR, Cluster, Join};
use serde_json::{Value, json};

/// One cluster at a time: each runs a server and several agents on a small machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or("")
}

fn pod_ip(pod: &Value) -> String {
    pod["status"]["podIP"].as_str().unwrap_or("").to_string()
}

/// The node's pod CIDR as `a.b.c.` (the /24 prefix text).
async fn cidr_prefix(cluster: &Cluster, node: &str) -> String {
    let node = cluster.get(&format!("/api/v1/nodes/{node}")).await.unwrap();
    let cidr = node["spec"]["podCIDR"].as_str().unwrap().to_string();
    assert!(cidr.ends_with(".0/24"), "{cidr}");
    cidr.trim_end_matches("0/24").to_string()
}

/// An HTTP/1.1 request over the server's Unix socket, as any client on the machine could.
fn unix_http_get(socket: &std::path::Path, path: &str) -> String {
    let mut stream = std::os::unix::net::UnixStream::connect(socket).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_unix_socket_serves_the_api_and_an_agent_registers_over_it() {
    let _serial = SERIAL.lock().await;
    // Cluster::start waits for the node Ready: the agent registered through unix://.
    let cluster = Cluster::start(&["host-a"]).await;
    let mode = std::fs::metadata(&cluster.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the socket is root's only");

    let response = unix_http_get(&cluster.socket, "/api/v1/nodes/host-a");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body = &response[response.find("\r\n\r\n").unwrap() + 4..];
    assert!(body.contains("\"kind\":\"Node\""), "{body}");
    // The node's InternalIP is the host's address on the test bridge, not the root's.
    let host = cluster.host("host-a");
    assert!(body.contains(&host.addr.to_string()), "{body}");
    let missing = unix_http_get(&cluster.socket, "/api/v1/namespaces/default/pods/none");
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pods_on_two_hosts_reach_each_other_by_ip_name_and_host_port() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(&["host-a", "host-b"]).await;
    cluster.allow_host_pods().await; // pod "web" has a hostPort
    let (a, b) = (cluster.host("host-a"), cluster.host("host-b"));
    let (a_netns, b_addr, a_addr) = (a.netns.clone(), b.addr, a.addr);
    let cidr_a = cidr_prefix(&cluster, "host-a").await;
    let cidr_b = cidr_prefix(&cluster, "host-b").await;
    assert_ne!(cidr_a, cidr_b);

    // Each host got a host-gw route to the other's pods via its address (proto 199).
    let route = format!("{cidr_b}0/24 via {b_addr}");
    let routes = cluster
        .eventually(
            "host-a's route to host-b's pods",
            Duration::from_secs(60),
            || {
                let out = cluster_exec(&a_netns, "ip", &["route", "show", "proto", "199"]);
                let route = route.clone();
                async move { out.contains(&route).then_some(out) }
            },
        )
        .await;
    assert!(!routes.contains(&a_addr.to_string()), "{routes}");

    // A web server on host B with a hostPort; its first line shows up in its log.
    let script = "echo serving on $(hostname); mkdir -p /tmp/www; \
                  echo hello-from-$(hostname) > /tmp/www/index.html; \
                  exec busybox httpd -f -p 8080 -h /tmp/www";
    cluster
        .create_pod(
            "web",
            "host-b",
            json!({
                "hostname": "web", "subdomain": "grp",
                "containers": [{"name": "web", "image": "host",
                    "command": ["busybox", "sh", "-c", script],
                    "ports": [{"containerPort": 8080, "hostPort": 18080}]}],
            }),
        )
        .await;
    let web = cluster
        .pod_when("web", "Running with an IP", |p| {
            phase(p) == "Running" && !pod_ip(p).is_empty()
        })
        .await;
    let web_ip = pod_ip(&web);
    assert!(web_ip.starts_with(&cidr_b), "{web_ip} in {cidr_b}0/24");
    assert_eq!(web["status"]["hostIP"], b_addr.to_string());

    // A client on host A fetches it by IP and by name (node-local DNS on host A).
    let name = "web.grp.default.svc.cluster.local";
    let fetch = format!(
        // (No `wget -T`: Debian's busybox 1.35 crashes on it.)
        "fetch() {{ for i in $(seq 60); do busybox timeout 5 busybox wget -q -O - \"$2\" && return; sleep 1; done; return 1; }}; \
         echo by-ip: $(fetch ip http://{web_ip}:8080/) && \
         echo by-name: $(fetch name http://{name}:8080/); \
         busybox nslookup {name} 2>&1 || true"
    );
    cluster
        .create_pod(
            "client",
            "host-a",
            json!({"restartPolicy": "Never",
                "containers": [{"name": "client", "image": "host",
                    "command": ["busybox", "sh", "-c", fetch]}]}),
        )
        .await;
    let client = cluster
        .pod_when("client", "finished", |p| {
            matches!(phase(p), "Succeeded" | "Failed")
        })
        .await;
    assert!(pod_ip(&client).starts_with(&cidr_a), "{client}");
    let log = cluster.pod_log("client").await;
    assert_eq!(phase(&client), "Succeeded", "{log}");
    assert!(log.contains("by-ip: hello-from-web"), "{log}");
    assert!(log.contains("by-name: hello-from-web"), "{log}");
    assert!(
        log.contains(&web_ip),
        "the name resolved to web's IP: {log}"
    );

    // `kubectl logs` for the pod on host B: the server dials host B's agent on its
    // address over the test bridge.
    let web_log = cluster.pod_log("web").await;
    assert!(web_log.contains("serving on web"), "{web_log}");

    // The hostPort answers on host B's address, from host A's namespace.
    let url = format!("http://{b_addr}:18080/");
    let page = cluster
        .eventually("the hostPort from host A", Duration::from_secs(60), || {
            let out = cluster_exec(
                &a_netns,
                "busybox",
                &["timeout", "5", "busybox", "wget", "-q", "-O", "-", &url],
            );
            async move { out.contains("hello-from-web").then_some(out) }
        })
        .await;
    assert_eq!(page.trim(), "hello-from-web");
    cluster.shutdown().await;
}

/// `nsenter --net=/run/netns/<netns> program args`: stdout, or empty on failure.
fn cluster_exec(netns: &str, program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{netns}"))
        .arg(program)
        .args(args)
        .output()
        .expect("nsenter");
    if out.status.success() {
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        String::new()
    }
}

/// The `rank 0/2 epoch E loss L` losses in epoch order.
fn losses(log: &str) -> Vec<f64> {
    log.lines()
        .filter_map(|line| line.split("rank 0/2 epoch ").nth(1))
        .filter_map(|rest| rest.split(" loss ").nth(1)?.trim().parse().ok())
        .collect()
}

/// examples/trainingjob-trainer.yaml for hosts without GPUs: no GPU request; instead each
/// worker asks for 1.5 CPUs, so with the machine's cores reported by each host, one
/// worker fits per host. Checkpoints go to the test's directory.
fn trainer_job(checkpoints: &std::path::Path, node_cpus: u32) -> Value {
    let text = include_str!("../../examples/trainingjob-trainer.yaml");
    let mut job: Value = yaml_serde::from_str(text).expect("the example parses");
    let group = &mut job["spec"]["replicaGroups"][0];
    group.as_object_mut().unwrap().remove("gpusPerReplica");
    let spec = &mut group["template"]["spec"];
    let container = &mut spec["containers"][0];
    // More than half a node: two workers never share one.
    let cpu = format!("{}m", node_cpus * 1000 / 2 + 100);
    container["resources"] = json!({"requests": {"cpu": cpu}});
    container["env"] = json!([
        {"name": "EPOCHS", "value": "10"},
        {"name": "CHECKPOINT_DIR", "value": "/checkpoints"},
    ]);
    // No CSI driver on these hosts: each worker makes its synthetic data itself.
    spec["volumes"]
        .as_array_mut()
        .unwrap()
        .retain(|v| v["name"] != "dataset");
    spec["containers"][0]["volumeMounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["name"] != "dataset");
    for volume in spec["volumes"].as_array_mut().unwrap() {
        if volume["name"] == "checkpoints" {
            // Each host keeps its own checkpoints (the example's claim is node-local).
            *volume = json!({"name": "checkpoints", "hostPath": {
                "path": checkpoints.display().to_string(), "type": "DirectoryOrCreate"}});
        }
    }
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_example_training_job_runs_one_worker_per_host_over_tls_and_succeeds() {
    let _serial = SERIAL.lock().await;
    // The agents join over TLS on the bridge address with a bootstrap token.
    let mut cluster = Cluster::start_tls(&["host-a", "host-b"]).await;
    assert!(matches!(cluster.join, Join::BootstrapToken { .. }));
    for host in &cluster.hosts {
        let cert = std::fs::read_to_string(host.root.join("pki/node.crt")).unwrap_or_default();
        assert!(
            cert.contains("BEGIN CERTIFICATE"),
            "{} joined with a certificate of its own",
            host.node
        );
    }
    cluster.allow_host_pods().await; // the workers' checkpoints are a hostPath
    let node = cluster.get("/api/v1/nodes/host-a").await.unwrap();
    let cpus: u32 = node["status"]["allocatable"]["cpu"]
        .as_str()
        .and_then(|c| c.parse().ok())
        .expect("whole cpus");
    cluster
        .create(
            "/api/v1/namespaces/default/configmaps",
            &json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "coxswain-trainer"},
                "data": {"train.py": include_str!("../../examples/trainer/train.py")}}),
        )
        .await;
    let checkpoints = cluster.dir.path().join("checkpoints");
    cluster
        .create(
            "/apis/coxswain.dev/v1alpha1/namespaces/default/trainingjobs",
            &trainer_job(&checkpoints, cpus),
        )
        .await;
    let job_path = "/apis/coxswain.dev/v1alpha1/namespaces/default/trainingjobs/trainer";
    let (url, http) = (cluster.url.clone(), cluster.http.clone());
    let state = cluster
        .eventually("the job to finish", Duration::from_secs(300), || {
            let (url, http) = (url.clone(), http.clone());
            async move {
                let job: Value = http
                    .get(format!("{url}{job_path}"))
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                job["status"]["conditions"]
                    .as_array()?
                    .iter()
                    .find(|c| {
                        c["status"] == "True" && (c["type"] == "Succeeded" || c["type"] == "Failed")
                    })
                    .map(|c| c["type"].as_str().unwrap_or_default().to_string())
            }
        })
        .await;
    let pods = cluster
        .get("/api/v1/namespaces/default/pods?labelSelector=coxswain.dev%2Fjob-name%3Dtrainer")
        .await
        .unwrap();
    let placed: Vec<(String, String)> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap_or("").to_string(),
                p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let log = cluster.pod_log("trainer-worker-0").await;
    assert_eq!(state, "Succeeded", "{placed:?}\n{log}\n{}", cluster.logs());
    assert_eq!(placed.len(), 2, "{placed:?}");
    assert_ne!(placed[0].1, placed[1].1, "one worker per host: {placed:?}");
    let losses = losses(&log);
    assert_eq!(losses.len(), 10, "{log}");
    assert!(losses[9] < losses[0] / 10.0, "the loss fell: {losses:?}");
    cluster.shutdown().await;
}

/// Pod-to-pod vs host-to-host throughput and latency across the two hosts, printed for
/// docs/benchmarks.md (a figure, not an assertion). Run with
/// `cargo test -p coxswain-cli --test multihost -- --ignored --nocapture measure`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement, run by hand"]
async fn measure_cross_host_pod_and_host_network() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(&["host-a", "host-b"]).await;
    for (name, node) in [("bench-a", "host-a"), ("bench-b", "host-b")] {
        cluster
            .create_pod(
                name,
                node,
                json!({"containers": [{"name": "idle", "image": "host",
                    "command": ["busybox", "sleep", "3600"]}]}),
            )
            .await;
    }
    let mut ips = Vec::new();
    let mut netns = Vec::new();
    for (name, node) in [("bench-a", "host-a"), ("bench-b", "host-b")] {
        let pod = cluster
            .pod_when(name, "Running", |p| phase(p) == "Running")
            .await;
        ips.push(pod_ip(&pod));
        let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
        netns.push(cluster.host(node).root.join("netns").join(uid));
    }
    let (a, b) = (cluster.host("host-a"), cluster.host("host-b"));
    let hosts = [
        format!("/run/netns/{}", a.netns),
        format!("/run/netns/{}", b.netns),
    ];
    let pods = [
        netns[0].display().to_string(),
        netns[1].display().to_string(),
    ];
    let b_addr = b.addr.to_string();
    println!("cluster cidr {CLUSTER_CIDR}, pods {ips:?}, host B {b_addr}");
    for (what, [from, to], target) in [
        ("host-to-host", &hosts, b_addr.as_str()),
        ("pod-to-pod", &pods, ips[1].as_str()),
    ] {
        let (mbps, rtt) = measure(from, to, target);
        println!("FIGURE {what}: 200 MB in one TCP stream {mbps:.0} MB/s; ping -c 20 avg {rtt}");
    }
    cluster.shutdown().await;
}

/// Sends 200 MB from netns `from` to a receiver in netns `to` at `target` (python3
/// sockets, timed from connect to the receiver's acknowledgement of EOF), then pings 20
/// times. Returns MB/s and ping's rtt summary.
fn measure(from: &str, to: &str, target: &str) -> (f64, String) {
    const RECEIVER: &str = "import socket\n\
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
s.bind(('0.0.0.0', 5201)); s.listen(1); c,_=s.accept()\n\
while True:\n    d=c.recv(1<<20)\n    if not d: break\n\
c.sendall(b'k'); c.close()\n";
    const SENDER: &str = "import socket,sys,time\n\
buf=b'\\0'*(1<<20)\n\
for i in range(100):\n    try:\n        c=socket.create_connection((sys.argv[1],5201)); break\n    except OSError: time.sleep(0.1)\n\
t=time.monotonic()\n\
for i in range(200): c.sendall(buf)\n\
c.shutdown(socket.SHUT_WR); c.recv(1)\n\
print(200/(time.monotonic()-t))\n";
    let mut receiver = std::process::Command::new("nsenter")
        .arg(format!("--net={to}"))
        .args(["python3", "-c", RECEIVER])
        .spawn()
        .expect("receiver");
    let sent = std::process::Command::new("nsenter")
        .arg(format!("--net={from}"))
        .args(["python3", "-c", SENDER, target])
        .output()
        .expect("sender");
    let _ = receiver.kill();
    let _ = receiver.wait();
    let mbps: f64 = String::from_utf8_lossy(&sent.stdout)
        .trim()
        .parse()
        .unwrap_or(0.0);
    let ping = std::process::Command::new("nsenter")
        .arg(format!("--net={from}"))
        .args(["busybox", "ping", "-c", "20", "-i", "0.2", target])
        .output()
        .expect("ping");
    let text = String::from_utf8_lossy(&ping.stdout).into_owned();
    let rtt = text
        .lines()
        .find(|l| l.contains("min/avg/max"))
        .unwrap_or("no rtt")
        .to_string();
    (mbps, rtt)
}
