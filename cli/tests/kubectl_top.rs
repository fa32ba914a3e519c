//! `kubectl top` against a real `cox server` (scraping every second) and `cox agent` (runc,
//! `image: host`) running a pod that burns CPU in a busybox shell loop: the metrics API
//! (`metrics.k8s.io/v1beta1`) shows the node and the pod with nonzero CPU and memory, the
//! raw API returns a PodMetrics naming the container, `-l` selects by the pod's labels, an
//! unknown pod is NotFound, and the
//! node proxy reaches the agent's kubelet-style `/metrics/resource`, which promtool
//! accepts. Needs root (the agent runs containers) and kubectl 1.37 (scripts/setup.sh).

mod cluster;
#[path = "shared/kubectl_path.rs"]
mod kubectl_path;

use std::process::{Command, Output, Stdio};

use cluster::{Cluster, NODE};
use kubectl_path::kubectl_path;
use serde_json::Value;

/// Holds 8 MiB in a shell variable (so the working set is well above zero), then spins.
const BURNER: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: burner, namespace: default, labels: {app: burner}}
spec:
  nodeName: n1
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: spin
    image: host
    command: [/bin/busybox, sh, -c, 'x=$(head -c 8388608 /dev/zero | tr "\0" a); while :; do :; done']
"#;

fn kubectl(cluster: &Cluster, args: &[&str]) -> Output {
    Command::new(kubectl_path())
        .args(args)
        .env("KUBECONFIG", &cluster.kubeconfig)
        .output()
        .expect("KUBECTL IS MISSING: scripts/setup.sh installs kubectl 1.37")
}

fn stdout(out: &Output) -> Option<String> {
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The `(cpu millicores, memory MiB)` of `name`'s row in `kubectl top` output.
fn top_row(table: &str, name: &str) -> Option<(u64, u64)> {
    let row = table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))?;
    let columns: Vec<&str> = row.split_whitespace().collect();
    let cpu = columns.get(1)?.strip_suffix('m')?.parse().ok()?;
    // `kubectl top node` puts CPU% between the CPU and memory columns.
    let memory = columns
        .iter()
        .skip(2)
        .find_map(|c| c.strip_suffix("Mi"))?
        .parse()
        .ok()?;
    Some((cpu, memory))
}

/// A Quantity's value in its own unit's base (`250000000n` → 0.25, `8Ki` → 8192).
fn quantity(text: &str) -> f64 {
    let (number, scale) = match text {
        t if t.ends_with('n') => (&t[..t.len() - 1], 1e-9),
        t if t.ends_with('m') => (&t[..t.len() - 1], 1e-3),
        t if t.ends_with("Ki") => (&t[..t.len() - 2], 1024.0),
        t if t.ends_with("Mi") => (&t[..t.len() - 2], 1024.0 * 1024.0),
        t => (t, 1.0),
    };
    number.parse::<f64>().expect("a numeric quantity") * scale
}

#[test]
fn kubectl_top_shows_the_node_and_a_busy_pod() {
    let cluster = Cluster::start();
    cluster.apply(BURNER);
    cluster.wait_phase("default", "burner", "Running");

    let (cpu, memory) = cluster.eventually("kubectl top pods to show burner", || {
        let table = stdout(&kubectl(&cluster, &["top", "pods", "-n", "default"]))?;
        top_row(&table, "burner").filter(|(cpu, memory)| *cpu > 0 && *memory >= 8)
    });
    eprintln!("kubectl top pods: burner {cpu}m {memory}Mi");
    // Label selectors are matched against the pods (metrics-server's behaviour).
    let selected = stdout(&kubectl(&cluster, &["top", "pods", "-l", "app=burner"]))
        .expect("kubectl top pods -l app=burner");
    assert!(top_row(&selected, "burner").is_some(), "{selected}");
    let other = kubectl(&cluster, &["top", "pods", "-l", "app=other"]);
    let other_text = format!(
        "{}{}",
        String::from_utf8_lossy(&other.stdout),
        String::from_utf8_lossy(&other.stderr)
    );
    assert!(!other_text.contains("burner"), "{other_text}");
    let (cpu, memory) = cluster.eventually("kubectl top nodes to show n1", || {
        let table = stdout(&kubectl(&cluster, &["top", "nodes"]))?;
        top_row(&table, NODE).filter(|(cpu, memory)| *cpu > 0 && *memory > 0)
    });
    eprintln!("kubectl top nodes: {NODE} {cpu}m {memory}Mi");

    let raw = kubectl(
        &cluster,
        &[
            "get",
            "--raw",
            "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/burner",
        ],
    );
    let metrics: Value = serde_json::from_slice(&raw.stdout).unwrap_or_else(|e| {
        panic!(
            "PodMetrics JSON: {e}: {}{}",
            String::from_utf8_lossy(&raw.stdout),
            String::from_utf8_lossy(&raw.stderr)
        )
    });
    assert_eq!(metrics["kind"], "PodMetrics", "{metrics:#}");
    assert_eq!(metrics["apiVersion"], "metrics.k8s.io/v1beta1");
    assert_eq!(metrics["metadata"]["namespace"], "default");
    let container = &metrics["containers"][0];
    assert_eq!(container["name"], "spin", "{metrics:#}");
    assert!(quantity(container["usage"]["cpu"].as_str().unwrap()) > 0.0);
    assert!(quantity(container["usage"]["memory"].as_str().unwrap()) >= 8.0 * 1048576.0);
    assert!(metrics["window"].as_str().unwrap().ends_with('s'));

    let missing = kubectl(
        &cluster,
        &[
            "get",
            "--raw",
            "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/nope",
        ],
    );
    let error = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success());
    assert!(error.contains("NotFound"), "{error}");
    let resources = stdout(&kubectl(
        &cluster,
        &["api-resources", "--api-group=metrics.k8s.io", "-o", "name"],
    ))
    .expect("kubectl api-resources");
    assert!(
        resources.contains("nodes.metrics.k8s.io") && resources.contains("pods.metrics.k8s.io"),
        "{resources}"
    );

    let proxied = stdout(&kubectl(
        &cluster,
        &[
            "get",
            "--raw",
            &format!("/api/v1/nodes/{NODE}/proxy/metrics/resource"),
        ],
    ))
    .expect("the node proxy answers");
    for series in [
        "node_cpu_usage_seconds_total ",
        "node_memory_working_set_bytes ",
        "pod_cpu_usage_seconds_total{namespace=\"default\",pod=\"burner\"} ",
        "container_memory_working_set_bytes{container=\"spin\",namespace=\"default\",pod=\"burner\"} ",
    ] {
        assert!(proxied.contains(series), "no {series} in\n{proxied}");
    }
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("PROMTOOL IS MISSING: scripts/setup.sh installs Debian's prometheus package");
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), proxied.as_bytes())
        .expect("promtool reads stdin");
    let checked = promtool.wait_with_output().expect("promtool runs");
    assert!(
        checked.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    let unknown = kubectl(
        &cluster,
        &["get", "--raw", "/api/v1/nodes/nope/proxy/metrics"],
    );
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("NotFound"),
        "{unknown:?}"
    );

    cluster.delete_all_pods();
}
