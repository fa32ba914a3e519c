//! Not a test: the cost of one resource scrape with 10 running pods — the agent's
//! `/metrics/resource` read directly and through the API's node proxy (latency over 50
//! GETs each, body bytes). Its own file (so its own process and cgroup root, apart from
//! kubectl_top's cluster). `cargo test -p coxswain-cli --test resource_scrape_cost --
//! --ignored --nocapture`; figures in docs/benchmarks.md.

mod cluster;

use cluster::{Cluster, NODE};
use serde_json::Value;

/// See the module header.
#[test]
#[ignore = "measurement; run by hand"]
fn measure_resource_scrapes() {
    let cluster = Cluster::start();
    let pods: String = (0..10)
        .map(|i| {
            format!(
                "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: idle-{i}, namespace: default}}\n\
                 spec:\n  nodeName: n1\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  \
                 containers:\n  - {{name: main, image: host, command: [/bin/busybox, sleep, '300']}}\n"
            )
        })
        .collect();
    cluster.apply(&pods);
    for i in 0..10 {
        cluster.wait_phase("default", &format!("idle-{i}"), "Running");
    }
    let node: Value =
        serde_json::from_str(&cluster.ok(&["get", "node", NODE, "-o", "json"])).unwrap();
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .unwrap();
    let kubeconfig = std::fs::read_to_string(&cluster.kubeconfig).unwrap();
    let server = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .unwrap()
        .trim()
        .to_string();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let http = reqwest::Client::new();
    for (what, url) in [
        (
            "direct",
            format!("http://127.0.0.1:{port}/metrics/resource"),
        ),
        (
            "node proxy",
            format!("{server}/api/v1/nodes/{NODE}/proxy/metrics/resource"),
        ),
    ] {
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..50 {
            let start = std::time::Instant::now();
            let body = runtime
                .block_on(async { http.get(&url).send().await?.text().await })
                .unwrap();
            times.push(start.elapsed());
            bytes = body.len();
        }
        times.sort();
        eprintln!(
            "{what}: p50 {:?} max {:?} over 50 GETs, {bytes} bytes with 10 pods",
            times[25], times[49]
        );
    }
    cluster.delete_all_pods();
}
