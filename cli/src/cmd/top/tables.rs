//! `cox top nodes` and `cox top pods`: requests against allocatable, as the scheduler sees them.

use std::collections::BTreeMap;

use coxswain_api::gpu_devices::{GPU_DEVICES_ANNOTATION, parse_gpu_devices};
use coxswain_api::pod_resources::pod_requests;
use coxswain_api::quantity::{ParsedQuantity, parse_quantity};
use coxswain_api::resources::{CPU, GPU_MILLI, MEMORY, NVIDIA_GPU};
use k8s_openapi::api::core::v1::{Node, Pod};

/// Requested CPU millicores, memory bytes and GPU thousandths.
#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    cpu_milli: i128,
    memory: i128,
    gpu_milli: i128,
}

impl Usage {
    fn of_pod(pod: &Pod) -> Self {
        let Some(spec) = &pod.spec else {
            return Self::default();
        };
        let requests = pod_requests(spec);
        let millis = |name: &str| requests.get(name).map(ParsedQuantity::millis).unwrap_or(0);
        Self {
            cpu_milli: millis(CPU),
            memory: millis(MEMORY) / 1000,
            gpu_milli: millis(NVIDIA_GPU) + millis(GPU_MILLI) / 1000,
        }
    }

    fn add(&mut self, other: Usage) {
        self.cpu_milli += other.cpu_milli;
        self.memory += other.memory;
        self.gpu_milli += other.gpu_milli;
    }
}

fn is_live(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded" | "Failed"))
}

/// One row per node: requests of its live pods against its allocatable resources.
pub fn nodes(nodes: &[Node], pods: &[Pod]) -> String {
    let mut used: BTreeMap<&str, (Usage, usize)> = BTreeMap::new();
    for pod in pods.iter().filter(|p| is_live(p)) {
        if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            let entry = used.entry(node).or_default();
            entry.0.add(Usage::of_pod(pod));
            entry.1 += 1;
        }
    }
    let mut rows = vec![
        [
            "NAME",
            "READY",
            "CPU(req/alloc)",
            "MEMORY(req/alloc)",
            "GPUS(req/alloc)",
            "PODS",
        ]
        .map(String::from),
    ];
    let mut nodes: Vec<&Node> = nodes.iter().collect();
    nodes.sort_by_key(|n| n.metadata.name.clone());
    for node in nodes {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        let allocatable = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
        let millis = |resource: &str| {
            allocatable
                .and_then(|a| a.get(resource))
                .and_then(|q| parse_quantity(q).ok())
                .map(|q| q.millis())
                .unwrap_or(0)
        };
        let (usage, count) = used.get(name).copied().unwrap_or_default();
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.clone())
            .unwrap_or_else(|| "Unknown".into());
        rows.push([
            name.to_string(),
            ready,
            format!("{}/{}", cores(usage.cpu_milli), cores(millis(CPU))),
            format!("{}/{}", gib(usage.memory), gib(millis(MEMORY) / 1000)),
            format!("{}/{}", gpus(usage.gpu_milli), gpus(millis(NVIDIA_GPU))),
            format!("{count}/{}", millis("pods") / 1000),
        ]);
    }
    table(&rows)
}

/// One row per pod: where it runs, its phase, its requests and the GPUs it holds.
pub fn pods(pods: &[Pod], with_namespace: bool) -> String {
    let mut header = vec!["NAME", "NODE", "PHASE", "CPU", "MEMORY", "GPUS", "DEVICES"];
    if with_namespace {
        header.insert(0, "NAMESPACE");
    }
    let mut rows = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
    let mut pods: Vec<&Pod> = pods.iter().collect();
    pods.sort_by_key(|p| (p.metadata.namespace.clone(), p.metadata.name.clone()));
    for pod in pods {
        let usage = Usage::of_pod(pod);
        let devices = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(GPU_DEVICES_ANNOTATION))
            .and_then(|v| parse_gpu_devices(v).ok())
            .map(|shares| {
                shares
                    .iter()
                    .map(|s| {
                        if s.is_share() {
                            format!("{}:{}m", s.id, s.milli)
                        } else {
                            s.id.clone()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        let mut row = vec![
            pod.metadata.name.clone().unwrap_or_default(),
            pod.spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_else(|| "<pending>".into()),
            pod.status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_else(|| "Pending".into()),
            cores(usage.cpu_milli),
            gib(usage.memory),
            gpus(usage.gpu_milli),
            if devices.is_empty() {
                "-".into()
            } else {
                devices
            },
        ];
        if with_namespace {
            row.insert(0, pod.metadata.namespace.clone().unwrap_or_default());
        }
        rows.push(row);
    }
    table(&rows)
}

fn table<R: AsRef<[String]>>(rows: &[R]) -> String {
    let columns = rows.first().map(|r| r.as_ref().len()).unwrap_or(0);
    let mut widths = vec![0; columns];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row.as_ref()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .as_ref()
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Millicores as cores: `2`, `0.5`.
fn cores(milli: i128) -> String {
    trim(milli as f64 / 1000.0, 2)
}

/// Bytes as GiB: `1.5Gi`.
fn gib(bytes: i128) -> String {
    format!("{}Gi", trim(bytes as f64 / f64::from(1u32 << 30), 1))
}

/// Thousandths of a GPU as GPUs.
fn gpus(milli: i128) -> String {
    trim(milli as f64 / 1000.0, 3)
}

fn trim(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}
