//! A real Prometheus (Debian's `prometheus` package, which scripts/setup.sh installs) scrapes a
//! running one-node cluster — `cox server`, `cox agent` with runc and `cox-nvidia-plugin` with
//! simulated GPUs — while a Job holds two GPUs, and PromQL answers for the job's GPUs and its
//! pod's memory. Every query of the example Grafana dashboard is run against it, and the
//! example scrape config passes `promtool check config`. Needs root (the agent runs containers).

mod cluster;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cluster::Cluster;
use serde_json::Value;

const JOB: &str = r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: gpu-job
  namespace: default
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 1
      containers:
      - name: train
        image: host
        command: ["sh", "-c", "sleep 300"]
        resources:
          limits:
            nvidia.com/gpu: "2"
"#;

const DASHBOARD: &str = include_str!("../../examples/monitoring/grafana-dashboard.json");

/// Kills Prometheus when the test ends, however it ends.
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

fn get(runtime: &tokio::runtime::Runtime, url: &str) -> Option<String> {
    runtime.block_on(async {
        let response = reqwest::get(url).await.ok()?;
        response.text().await.ok()
    })
}

/// The result of an instant query, or the error Prometheus gave.
fn query(runtime: &tokio::runtime::Runtime, port: u16, promql: &str) -> Result<Vec<Value>, String> {
    let url = reqwest::Url::parse_with_params(
        &format!("http://127.0.0.1:{port}/api/v1/query"),
        [("query", promql)],
    )
    .expect("query URL");
    let body = get(runtime, url.as_str()).ok_or("Prometheus did not answer")?;
    let reply: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    if reply["status"] != "success" {
        return Err(body);
    }
    Ok(reply["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// The single value of a query's result, if there is exactly one series.
fn single_value(result: &[Value]) -> Option<f64> {
    match result {
        [series] => series["value"][1].as_str()?.parse().ok(),
        _ => None,
    }
}

fn promtool(args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("PROMTOOL IS MISSING: scripts/setup.sh installs Debian's prometheus package");
    if let Some(text) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("promtool reads stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("promtool runs")
}

#[test]
fn prometheus_scrapes_the_cluster_and_answers_for_a_jobs_gpus_and_memory() {
    let check = promtool(
        &[
            "check",
            "config",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../examples/monitoring/prometheus.yml"
            ),
        ],
        None,
    );
    assert!(
        check.status.success(),
        "examples/monitoring/prometheus.yml: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    let cluster = Cluster::start_with_gpus("dgx-h100");
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    cluster.apply(JOB);
    let pod = cluster.eventually("the job's pod to run", || {
        let pods: Value = serde_json::from_str(&cluster.ok(&["get", "pods", "-o", "json"])).ok()?;
        pods["items"]
            .as_array()?
            .iter()
            .find(|p| p["status"]["phase"] == "Running")
            .and_then(|p| p["metadata"]["name"].as_str().map(String::from))
    });

    // The control plane's and the agent's /metrics, as Prometheus will find them.
    let kubeconfig = std::fs::read_to_string(&cluster.kubeconfig).expect("kubeconfig");
    let server = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .and_then(|url| url.trim().strip_prefix("http://"))
        .expect("the kubeconfig names the server")
        .to_string();
    let node: Value =
        serde_json::from_str(&cluster.ok(&["get", "node", cluster::NODE, "-o", "json"])).unwrap();
    let agent_port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .expect("the node reports its agent's port");
    let agent = format!("127.0.0.1:{agent_port}");
    for target in [&server, &agent] {
        let text = get(&runtime, &format!("http://{target}/metrics")).expect("/metrics answers");
        let check = promtool(&["check", "metrics"], Some(&text));
        assert!(
            check.status.success(),
            "promtool check metrics on {target}: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
    }

    let port = free_port();
    let config = cluster.dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n\
             - job_name: coxswain-control-plane\n  static_configs:\n  - targets: [\"{server}\"]\n\
             - job_name: coxswain-agent\n  static_configs:\n  - targets: [\"{agent}\"]\n"
        ),
    )
    .expect("config written");
    let _prometheus = Prometheus(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                cluster.dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(cluster.dir.path().join("prometheus.log")).expect("log file"),
            )
            .spawn()
            .expect("PROMETHEUS IS MISSING: scripts/setup.sh installs Debian's prometheus package"),
    );

    // A hang guard, not a timing assertion: scrapes run every second.
    let deadline = Instant::now() + Duration::from_secs(90);
    let until = |what: &str, promql: &str, ok: &dyn Fn(f64) -> bool| -> f64 {
        loop {
            let result = query(&runtime, port, promql);
            if let Some(value) = result.as_deref().ok().and_then(single_value)
                && ok(value)
            {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {promql} gave {result:?}; prometheus log:\n{}",
                std::fs::read_to_string(cluster.dir.path().join("prometheus.log"))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    let gpus = until(
        "the job's allocated GPUs",
        r#"sum(coxswain_pod_gpus{namespace="default", owner_kind="Job", owner="gpu-job"})"#,
        &|v| v > 0.0,
    );
    assert_eq!(gpus, 2.0, "the job holds the two GPUs it asked for");
    let memory = until(
        "the job's pods' memory",
        &format!(
            r#"sum(container_memory_working_set_bytes{{namespace="default", pod="{pod}", container=""}})"#
        ),
        &|v| v > 0.0,
    );
    assert!(memory > 0.0);
    let allocatable = until(
        "the node's allocatable GPUs",
        r#"sum(coxswain_node_gpus_allocatable)"#,
        &|v| v > 0.0,
    );
    assert_eq!(allocatable, 8.0, "a simulated DGX H100 has eight GPUs");

    // Every query of the example dashboard is valid PromQL for this Prometheus.
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let exprs: Vec<&str> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str())
        .collect();
    assert!(
        exprs.len() >= 10,
        "the dashboard has its queries: {exprs:?}"
    );
    for expr in exprs {
        if let Err(error) = query(&runtime, port, expr) {
            panic!("dashboard query {expr:?} refused: {error}");
        }
    }

    // The Job first, or its controller replaces the pods deleted below.
    cluster.ok(&["delete", "job", "gpu-job"]);
    cluster.delete_all_pods();
}
