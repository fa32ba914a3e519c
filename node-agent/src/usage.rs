//! CPU and memory usage of pods and their containers, read from the pod cgroups (v1 or
//! v2, through [`CgroupDriver`]) and written as Prometheus text the way cAdvisor names
//! it: `container_cpu_usage_seconds_total` and `container_memory_working_set_bytes`, with
//! `namespace`, `pod` and `container` labels (`container=""` is the whole pod, as the
//! pod cgroup's own sample in cAdvisor).
//!
//! The working set is what kubelet and the metrics API report: memory in use minus the
//! inactive page cache (`memory.usage_in_bytes - total_inactive_file` on v1,
//! `memory.current - inactive_file` on v2), never below zero.

use std::fmt::Write;

use crate::sandbox::cgroup::{CgroupDriver, CgroupError, list_pod_cgroups};

/// One cgroup's usage with the labels it is reported under.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageSample {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The container's name; empty for the pod cgroup as a whole.
    pub container: String,
    /// CPU time used, in seconds.
    pub cpu_seconds: f64,
    /// Working set, in bytes.
    pub working_set_bytes: u64,
}

/// A pod on this node: its uid, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

/// The working set of the cgroup at `rel`, in bytes.
pub fn working_set(driver: &dyn CgroupDriver, rel: &str) -> Result<u64, CgroupError> {
    let usage = driver.usage(rel)?;
    let stat = driver.read(rel, "memory", "memory.stat")?;
    let inactive = keyed(&stat, "total_inactive_file")
        .or_else(|| keyed(&stat, "inactive_file"))
        .unwrap_or(0);
    Ok(usage.memory_bytes.saturating_sub(inactive))
}

fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Samples every pod of `pods` that has a pod cgroup under `cgroup_root`: one for the
/// pod and one per container cgroup below it (named `<uid>_<container>`, the agent's
/// container ids). Pods without a cgroup (not started, or gone) and cgroups that vanish
/// while being read are skipped.
pub fn collect(
    driver: &dyn CgroupDriver,
    cgroup_root: &str,
    pods: &[PodRef],
) -> Result<Vec<UsageSample>, CgroupError> {
    let mut samples = Vec::new();
    for (uid, rel) in list_pod_cgroups(driver, cgroup_root)? {
        let Some(pod) = pods.iter().find(|p| p.uid == uid) else {
            continue;
        };
        let sample = |container: &str, rel: &str| -> Option<UsageSample> {
            let usage = driver.usage(rel).ok()?;
            Some(UsageSample {
                namespace: pod.namespace.clone(),
                pod: pod.name.clone(),
                container: container.to_string(),
                cpu_seconds: usage.cpu_nanos as f64 / 1e9,
                working_set_bytes: working_set(driver, rel).unwrap_or(usage.memory_bytes),
            })
        };
        samples.extend(sample("", &rel));
        let prefix = format!("{uid}_");
        for child in driver.children(&rel)? {
            if let Some(container) = child.strip_prefix(&prefix) {
                samples.extend(sample(container, &format!("{rel}/{child}")));
            }
        }
    }
    samples.sort_by(|a, b| {
        (&a.namespace, &a.pod, &a.container).cmp(&(&b.namespace, &b.pod, &b.container))
    });
    Ok(samples)
}

/// A Prometheus label value, escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `samples` in the Prometheus text exposition format (0.0.4).
pub fn render(samples: &[UsageSample]) -> String {
    let mut out = String::new();
    let labels = |s: &UsageSample| {
        format!(
            "container=\"{}\",namespace=\"{}\",pod=\"{}\"",
            label(&s.container),
            label(&s.namespace),
            label(&s.pod)
        )
    };
    out.push_str(
        "# HELP container_cpu_usage_seconds_total Cumulative CPU time consumed, in seconds.\n\
         # TYPE container_cpu_usage_seconds_total counter\n",
    );
    for s in samples {
        let _ = writeln!(
            out,
            "container_cpu_usage_seconds_total{{{}}} {}",
            labels(s),
            s.cpu_seconds
        );
    }
    out.push_str(
        "# HELP container_memory_working_set_bytes Current working set, in bytes.\n\
         # TYPE container_memory_working_set_bytes gauge\n",
    );
    for s in samples {
        let _ = writeln!(
            out,
            "container_memory_working_set_bytes{{{}}} {}",
            labels(s),
            s.working_set_bytes
        );
    }
    out
}

/// `GET /metrics`: [`render`] of [`collect`] for the pods `directory` lists, read
/// through `sandbox`'s cgroup driver under `cgroup_root` (on a blocking thread); and
/// kubelet's `GET /metrics/resource` ([`crate::resource_metrics`]) from the same samples
/// and the node's `/proc`.
pub fn metrics_router(
    sandbox: std::sync::Arc<dyn crate::sandbox::PodSandbox>,
    cgroup_root: String,
    directory: crate::agent::PodDirectory,
) -> axum::Router {
    use axum::http::{StatusCode, header};
    let serve = move |resource: bool| {
        let (sandbox, cgroup_root, directory) =
            (sandbox.clone(), cgroup_root.clone(), directory.clone());
        async move {
            let read = tokio::task::spawn_blocking(move || {
                let samples = collect(sandbox.cgroups(), &cgroup_root, &directory.pods())?;
                Ok::<_, CgroupError>(if resource {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64);
                    let node = crate::resource_metrics::read_node_usage();
                    crate::resource_metrics::render(node, &samples, now)
                } else {
                    render(&samples)
                })
            })
            .await;
            let error = match read {
                Ok(Ok(text)) => {
                    return (
                        StatusCode::OK,
                        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        text,
                    );
                }
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                format!("reading pod cgroups: {error}\n"),
            )
        }
    };
    let resource = serve.clone();
    axum::Router::new()
        .route("/metrics", axum::routing::get(move || serve(false)))
        .route(
            "/metrics/resource",
            axum::routing::get(move || resource(true)),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::cgroup::v1::CgroupV1;
    use crate::sandbox::cgroup::v2::CgroupV2;
    use std::path::Path;

    fn write(path: &Path, body: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }

    fn pods() -> Vec<PodRef> {
        vec![PodRef {
            uid: "u1".into(),
            namespace: "ml".into(),
            name: "train".into(),
        }]
    }

    #[test]
    fn v2_pod_and_container_usage_from_a_fixture() {
        let fixture = tempfile::tempdir().unwrap();
        let pod = fixture.path().join("coxswain/burstable/podu1");
        write(
            &pod.join("cpu.stat"),
            "usage_usec 2500000\nuser_usec 2000000\n",
        );
        write(&pod.join("memory.current"), "10485760\n");
        write(
            &pod.join("memory.stat"),
            "anon 6291456\ninactive_file 4194304\n",
        );
        let main = pod.join("u1_main");
        write(&main.join("cpu.stat"), "usage_usec 1500000\n");
        write(&main.join("memory.current"), "8388608\n");
        write(&main.join("memory.stat"), "inactive_file 1048576\n");
        // A pod this agent does not know (left over) is not reported.
        write(
            &fixture.path().join("coxswain/podu9/cpu.stat"),
            "usage_usec 1\n",
        );
        let v2 = CgroupV2::new(fixture.path());
        let samples = collect(&v2, "coxswain", &pods()).unwrap();
        assert_eq!(
            samples,
            vec![
                UsageSample {
                    namespace: "ml".into(),
                    pod: "train".into(),
                    container: String::new(),
                    cpu_seconds: 2.5,
                    working_set_bytes: 6 << 20,
                },
                UsageSample {
                    namespace: "ml".into(),
                    pod: "train".into(),
                    container: "main".into(),
                    cpu_seconds: 1.5,
                    working_set_bytes: 7 << 20,
                },
            ]
        );
        let text = render(&samples);
        assert!(text.contains(
            "container_cpu_usage_seconds_total{container=\"main\",namespace=\"ml\",pod=\"train\"} 1.5\n"
        ));
        assert!(text.contains(
            "container_memory_working_set_bytes{container=\"\",namespace=\"ml\",pod=\"train\"} 6291456\n"
        ));
        assert!(text.contains("# TYPE container_cpu_usage_seconds_total counter\n"));
    }

    #[test]
    fn v1_reads_cpuacct_and_the_memory_hierarchy() {
        let fixture = tempfile::tempdir().unwrap();
        let rel = "coxswain/podu1";
        for hierarchy in ["cpuacct", "memory"] {
            write(&fixture.path().join(hierarchy).join("cgroup.procs"), "");
        }
        write(
            &fixture
                .path()
                .join("cpuacct")
                .join(rel)
                .join("cpuacct.usage"),
            "3000000000\n",
        );
        let memory = fixture.path().join("memory").join(rel);
        write(&memory.join("memory.usage_in_bytes"), "5000\n");
        write(
            &memory.join("memory.stat"),
            "cache 4000\ninactive_file 100\ntotal_inactive_file 3000\n",
        );
        let v1 = CgroupV1::new(fixture.path());
        assert_eq!(working_set(&v1, &format!("/{rel}")).unwrap(), 2000);
        let samples = collect(&v1, "coxswain", &pods()).unwrap();
        assert_eq!(samples.len(), 1, "{samples:?}");
        assert_eq!(samples[0].cpu_seconds, 3.0);
        assert_eq!(samples[0].working_set_bytes, 2000);
    }

    #[test]
    fn label_values_are_escaped() {
        let sample = UsageSample {
            namespace: "a\"b".into(),
            pod: "p\\q".into(),
            container: "c".into(),
            cpu_seconds: 0.0,
            working_set_bytes: 0,
        };
        assert!(render(&[sample]).contains(r#"namespace="a\"b",pod="p\\q""#));
    }
}
