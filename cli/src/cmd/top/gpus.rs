//! `cox top gpus`: the cluster's GPU map — one row per node, one cell per GPU, each cell
//! naming the job (or pod) that holds it, from the ResourceSlices the agents publish and
//! the GPU-devices annotation the scheduler writes on every bound pod; with each GPU's
//! utilization and health where the node's agent relays its GPU plugin's figures
//! ([`super::gpu_figures`]).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use coxswain_api::devices::{GpuDevice, gpus_from_slice};
use coxswain_api::gpu_devices::{GPU_DEVICES_ANNOTATION, parse_gpu_devices};
use coxswain_api::resources::{GPU_MILLI, is_gpu_resource};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::resource::v1::ResourceSlice;

use super::gpu_figures::{Figures, GpuFigures};

/// Who holds GPUs: a pod's controlling owner (a TrainingJob, a Job...), else the pod.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Owner {
    namespace: String,
    name: String,
    kind: String,
}

/// One GPU cell of the map.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Free,
    /// Held whole by one owner.
    Whole(usize),
    /// Shares held: (owner, milli).
    Shared(Vec<(usize, u16)>),
    /// Counted in the node's capacity but not published: unhealthy, or not reported yet.
    Unavailable,
}

/// What the owners of the map hold.
#[derive(Debug, Default, Clone)]
struct Holding {
    milli: u64,
    pods: usize,
}

/// Draws the GPU map of `nodes`, with the GPUs `slices` publish, the pods bound to them and
/// the utilization `figures` of the nodes that have them.
pub fn render(nodes: &[Node], slices: &[ResourceSlice], pods: &[Pod], figures: &Figures) -> String {
    let mut gpus_by_node: BTreeMap<&str, Vec<GpuDevice>> = BTreeMap::new();
    for slice in slices {
        let (Some(node), Ok(gpus)) = (slice.spec.node_name.as_deref(), gpus_from_slice(slice))
        else {
            continue;
        };
        gpus_by_node.entry(node).or_default().extend(gpus);
    }

    // Every live pod's GPU shares, by device ID.
    let mut owners: Vec<Owner> = Vec::new();
    let mut holdings: BTreeMap<Owner, Holding> = BTreeMap::new();
    let mut held: HashMap<(String, String), Vec<(Owner, u16)>> = HashMap::new();
    for pod in pods {
        let (Some(node), Some(value)) = (
            pod.spec.as_ref().and_then(|s| s.node_name.as_deref()),
            pod.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(GPU_DEVICES_ANNOTATION)),
        ) else {
            continue;
        };
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            continue;
        }
        let Ok(shares) = parse_gpu_devices(value) else {
            continue;
        };
        let owner = owner_of(pod);
        let holding = holdings.entry(owner.clone()).or_default();
        holding.pods += 1;
        for share in shares {
            holding.milli += u64::from(share.milli);
            held.entry((node.to_string(), share.id))
                .or_default()
                .push((owner.clone(), share.milli));
        }
    }
    // Letters follow the map: the first GPU's holder is A, and so on down the rows.
    let mut node_names: Vec<&str> = nodes
        .iter()
        .filter_map(|n| n.metadata.name.as_deref())
        .collect();
    node_names.sort();
    for node in node_names {
        let mut gpus = gpus_by_node.get(node).cloned().unwrap_or_default();
        gpus.sort_by_key(|g| g.index);
        for gpu in gpus {
            for (owner, _) in held
                .get(&(node.to_string(), gpu.uuid))
                .into_iter()
                .flatten()
            {
                if !owners.contains(owner) {
                    owners.push(owner.clone());
                }
            }
        }
    }
    owners.extend(
        holdings
            .keys()
            .filter(|o| !owners.contains(o))
            .cloned()
            .collect::<Vec<_>>(),
    );
    let index: HashMap<&Owner, usize> = owners.iter().enumerate().map(|(i, o)| (o, i)).collect();

    let mut rows = Vec::new();
    let (mut total, mut allocated_milli, mut free, mut unavailable) =
        (0usize, 0u64, 0usize, 0usize);
    let mut simulated = false;
    let mut hidden = 0usize;
    let mut without_figures = Vec::new();
    let mut nodes: Vec<&Node> = nodes.iter().collect();
    nodes.sort_by_key(|n| n.metadata.name.clone());
    for node in nodes {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        let mut gpus = gpus_by_node.get(name).cloned().unwrap_or_default();
        gpus.sort_by_key(|g| g.index);
        let capacity = gpu_capacity(node);
        if gpus.is_empty() && capacity == 0 {
            hidden += 1;
            continue;
        }
        let mut cells: Vec<Cell> = gpus
            .iter()
            .map(
                |gpu| match held.get(&(name.to_string(), gpu.uuid.clone())) {
                    None => Cell::Free,
                    Some(holders) if holders.len() == 1 && holders[0].1 >= 1000 => {
                        Cell::Whole(index[&holders[0].0])
                    }
                    Some(holders) => {
                        Cell::Shared(holders.iter().map(|(o, m)| (index[o], *m)).collect())
                    }
                },
            )
            .collect();
        cells.extend((gpus.len()..capacity).map(|_| Cell::Unavailable));
        let used: u64 = cells
            .iter()
            .map(|cell| match cell {
                Cell::Whole(_) => 1000,
                Cell::Shared(shares) => shares.iter().map(|(_, m)| u64::from(*m)).sum(),
                _ => 0,
            })
            .sum();
        total += cells.len();
        allocated_milli += used;
        free += cells.iter().filter(|c| **c == Cell::Free).count();
        unavailable += cells.iter().filter(|c| **c == Cell::Unavailable).count();
        simulated |= gpus.iter().any(|g| g.simulated);
        let model = gpus
            .first()
            .map(|g| short_model(&g.model))
            .unwrap_or("-".into());
        let model = if gpus.iter().any(|g| g.simulated) {
            format!("{model} (sim)")
        } else {
            model
        };
        let node_figures = figures.get(name);
        if node_figures.is_none() {
            without_figures.push(name.to_string());
        }
        let (utilization, grid) = match node_figures {
            None => (
                "-".to_string(),
                cells.iter().map(glyph).collect::<Vec<_>>().join(" "),
            ),
            Some(by_device) => {
                let readings: Vec<Option<GpuFigures>> = (0..cells.len())
                    .map(|i| gpus.get(i).and_then(|g| by_device.get(&g.uuid)).copied())
                    .collect();
                let known: Vec<f64> = readings
                    .iter()
                    .filter_map(|r| r.and_then(|r| r.utilization))
                    .collect();
                let average = if known.is_empty() {
                    "-".to_string()
                } else {
                    format!("{:.0}%", known.iter().sum::<f64>() / known.len() as f64)
                };
                let grid = cells
                    .iter()
                    .zip(&readings)
                    .map(|(cell, reading)| format!("{}{:>4}", glyph(cell), figure_text(reading)))
                    .collect::<Vec<_>>()
                    .join(" ");
                (average, grid)
            }
        };
        rows.push([
            name.to_string(),
            ready(node).to_string(),
            model,
            format!("{}/{}", gpus_text(used), cells.len()),
            utilization,
            grid,
        ]);
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "GPU map: {} node(s), {total} GPU(s): {} allocated, {free} free, {unavailable} unavailable{}",
        rows.len(),
        gpus_text(allocated_milli),
        if simulated { " (simulated GPUs)" } else { "" }
    );
    if rows.is_empty() {
        out.push_str("No node reports GPUs.\n");
        return out;
    }
    let header = ["NODE", "READY", "MODEL", "USED", "UTIL", "GPUS"].map(String::from);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    if hidden > 0 {
        let _ = writeln!(out, "({hidden} node(s) without GPUs not shown)");
    }
    if !without_figures.is_empty() {
        let _ = writeln!(
            out,
            "(no GPU utilization from {}: the agent relays its GPU plugin's figures with --gpu-metrics-url)",
            without_figures.join(", ")
        );
    }
    if !owners.is_empty() {
        out.push('\n');
        for (i, owner) in owners.iter().enumerate() {
            let holding = &holdings[owner];
            let _ = writeln!(
                out,
                "  {}  {}/{} ({}): {} GPU(s) in {} pod(s)",
                letter(i),
                owner.namespace,
                owner.name,
                owner.kind,
                gpus_text(holding.milli),
                holding.pods
            );
        }
    }
    out.push_str("\n  A-Z: a whole GPU  a-z: a share of one  *: shared by several  .: free  x: unhealthy or not reported\n");
    if without_figures.len() < rows.len() {
        out.push_str("  37%: utilization as the node's GPU plugin reports it  bad: the plugin reports it unhealthy  -: no figure\n");
    }
    out
}

/// A GPU's figure in the map: its utilization, `bad` when unhealthy, `-` when unknown.
fn figure_text(reading: &Option<GpuFigures>) -> String {
    match reading {
        Some(GpuFigures {
            healthy: Some(false),
            ..
        }) => "bad".to_string(),
        Some(GpuFigures {
            utilization: Some(percent),
            ..
        }) => format!("{percent:.0}%"),
        _ => "-".to_string(),
    }
}

fn owner_of(pod: &Pod) -> Owner {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let controller = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true));
    match controller {
        Some(owner) => Owner {
            namespace,
            name: owner.name.clone(),
            kind: owner.kind.clone(),
        },
        None => Owner {
            namespace,
            name: pod.metadata.name.clone().unwrap_or_default(),
            kind: "Pod".to_string(),
        },
    }
}

fn gpu_capacity(node: &Node) -> usize {
    let Some(capacity) = node.status.as_ref().and_then(|s| s.capacity.as_ref()) else {
        return 0;
    };
    capacity
        .iter()
        .filter(|(name, _)| is_gpu_resource(name) && name.as_str() != GPU_MILLI)
        .filter_map(|(_, q)| q.0.parse::<usize>().ok())
        .sum()
}

fn ready(node: &Node) -> &'static str {
    let condition = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    match condition.map(|c| c.status.as_str()) {
        Some("True") => "True",
        Some("False") => "False",
        _ => "Unknown",
    }
}

/// `NVIDIA H100 80GB HBM3` → `H100 80GB HBM3`.
fn short_model(model: &str) -> String {
    let model = model.strip_prefix("NVIDIA ").unwrap_or(model);
    if model.is_empty() {
        "-".into()
    } else {
        model.to_string()
    }
}

/// Milli-GPUs as GPUs: `3`, `2.25`.
fn gpus_text(milli: u64) -> String {
    if milli.is_multiple_of(1000) {
        (milli / 1000).to_string()
    } else {
        let text = format!("{:.3}", milli as f64 / 1000.0);
        text.trim_end_matches('0').to_string()
    }
}

fn letter(owner: usize) -> char {
    const LETTERS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    LETTERS.get(owner).map(|b| *b as char).unwrap_or('#')
}

fn glyph(cell: &Cell) -> String {
    match cell {
        Cell::Free => ".".into(),
        Cell::Unavailable => "x".into(),
        Cell::Whole(owner) => letter(*owner).to_string(),
        Cell::Shared(shares) => {
            let first = shares[0].0;
            if shares.iter().all(|(o, _)| *o == first) {
                letter(first).to_ascii_lowercase().to_string()
            } else {
                "*".into()
            }
        }
    }
}
