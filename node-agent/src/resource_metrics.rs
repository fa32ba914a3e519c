//! Kubelet's resource metrics endpoint, `GET /metrics/resource`: the node's, each pod's
//! and each container's cumulative CPU time and working set, under kubelet's names
//! (`node_cpu_usage_seconds_total`, `pod_memory_working_set_bytes`,
//! `container_cpu_usage_seconds_total{container,namespace,pod}`, ...) with the time of the
//! sample (milliseconds) after each value, as kubelet writes them. The control plane's
//! metrics API scrapes it twice and reports the rate between the two, as metrics-server
//! does.
//!
//! The node's figures come from `/proc`: CPU time is the non-idle time of `/proc/stat`,
//! the working set is memory in use minus the inactive page cache (`/proc/meminfo`'s
//! `MemTotal - MemFree - Inactive(file)`), the node-wide counterpart of a cgroup's.

use std::fmt::Write;

use crate::usage::UsageSample;

/// The whole node's usage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeUsage {
    /// CPU time used by everything on the node, in seconds.
    pub cpu_seconds: f64,
    /// Working set, in bytes.
    pub working_set_bytes: u64,
}

/// Clock ticks per second of `/proc/stat` (`USER_HZ`, 100 on every Linux architecture
/// that coxswain runs on).
const USER_HZ: f64 = 100.0;

/// The node's usage from the text of `/proc/stat` and `/proc/meminfo`; `None` when either
/// lacks the lines it needs.
pub fn node_usage(proc_stat: &str, meminfo: &str) -> Option<NodeUsage> {
    let cpu = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy: u64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    let kib = |key: &str| -> Option<u64> {
        meminfo.lines().find_map(|line| {
            let rest = line.strip_prefix(key)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse().ok()
        })
    };
    let used = kib("MemTotal")?.saturating_sub(kib("MemFree")?);
    let working_set = used.saturating_sub(kib("Inactive(file)").unwrap_or(0));
    Some(NodeUsage {
        cpu_seconds: busy as f64 / USER_HZ,
        working_set_bytes: working_set * 1024,
    })
}

/// Reads the node's usage from this machine's `/proc`.
pub fn read_node_usage() -> Option<NodeUsage> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    node_usage(&stat, &meminfo)
}

fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The `/metrics/resource` text: `node` (when read), then `samples` (pod samples are those
/// with an empty container), every value stamped with `timestamp_ms`.
pub fn render(node: Option<NodeUsage>, samples: &[UsageSample], timestamp_ms: i64) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, lines: Vec<(String, String)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in lines {
            let _ = writeln!(out, "{name}{labels} {value} {timestamp_ms}");
        }
    };
    let pods: Vec<&UsageSample> = samples.iter().filter(|s| s.container.is_empty()).collect();
    let containers: Vec<&UsageSample> =
        samples.iter().filter(|s| !s.container.is_empty()).collect();
    let pod_labels = |s: &UsageSample| {
        format!(
            "{{namespace=\"{}\",pod=\"{}\"}}",
            label(&s.namespace),
            label(&s.pod)
        )
    };
    let container_labels = |s: &UsageSample| {
        format!(
            "{{container=\"{}\",namespace=\"{}\",pod=\"{}\"}}",
            label(&s.container),
            label(&s.namespace),
            label(&s.pod)
        )
    };
    family(
        "container_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the container in core-seconds",
        containers
            .iter()
            .map(|s| (container_labels(s), s.cpu_seconds.to_string()))
            .collect(),
    );
    family(
        "container_memory_working_set_bytes",
        "gauge",
        "Current working set of the container in bytes",
        containers
            .iter()
            .map(|s| (container_labels(s), s.working_set_bytes.to_string()))
            .collect(),
    );
    family(
        "node_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the node in core-seconds",
        node.iter()
            .map(|n| (String::new(), n.cpu_seconds.to_string()))
            .collect(),
    );
    family(
        "node_memory_working_set_bytes",
        "gauge",
        "Current working set of the node in bytes",
        node.iter()
            .map(|n| (String::new(), n.working_set_bytes.to_string()))
            .collect(),
    );
    family(
        "pod_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the pod in core-seconds",
        pods.iter()
            .map(|s| (pod_labels(s), s.cpu_seconds.to_string()))
            .collect(),
    );
    family(
        "pod_memory_working_set_bytes",
        "gauge",
        "Current working set of the pod in bytes",
        pods.iter()
            .map(|s| (pod_labels(s), s.working_set_bytes.to_string()))
            .collect(),
    );
    out.push_str(
        "# HELP scrape_error 1 if there was an error while getting container metrics, 0 otherwise\n\
         # TYPE scrape_error gauge\n",
    );
    let _ = writeln!(out, "scrape_error {}", u8::from(node.is_none()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  1000 50 450 9000 100 20 30 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n";
    const MEMINFO: &str = "MemTotal:       16000 kB\nMemFree:         4000 kB\n\
                           MemAvailable:   10000 kB\nInactive(file):  2000 kB\n";

    #[test]
    fn node_usage_is_non_idle_time_and_memory_less_inactive_cache() {
        let usage = node_usage(STAT, MEMINFO).unwrap();
        // user + nice + system + irq + softirq + steal = 1550 ticks.
        assert_eq!(usage.cpu_seconds, 15.5);
        assert_eq!(usage.working_set_bytes, 10000 * 1024);
        assert_eq!(node_usage("intr 1\n", MEMINFO), None);
        assert_eq!(node_usage(STAT, "MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn render_uses_kubelets_names_labels_and_timestamps() {
        let sample = |container: &str, cpu: f64, mem: u64| UsageSample {
            namespace: "ml".into(),
            pod: "train".into(),
            container: container.into(),
            cpu_seconds: cpu,
            working_set_bytes: mem,
        };
        let text = render(
            node_usage(STAT, MEMINFO),
            &[sample("", 2.5, 600), sample("main", 1.5, 500)],
            1_700_000_000_123,
        );
        for line in [
            "node_cpu_usage_seconds_total 15.5 1700000000123\n",
            "node_memory_working_set_bytes 10240000 1700000000123\n",
            "pod_cpu_usage_seconds_total{namespace=\"ml\",pod=\"train\"} 2.5 1700000000123\n",
            "pod_memory_working_set_bytes{namespace=\"ml\",pod=\"train\"} 600 1700000000123\n",
            "container_cpu_usage_seconds_total{container=\"main\",namespace=\"ml\",pod=\"train\"} 1.5 1700000000123\n",
            "container_memory_working_set_bytes{container=\"main\",namespace=\"ml\",pod=\"train\"} 500 1700000000123\n",
            "# TYPE node_cpu_usage_seconds_total counter\n",
            "scrape_error 0\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("container=\"\""), "{text}");
    }
}
