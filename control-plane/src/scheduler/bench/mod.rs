//! `cox sim bench`: scheduling throughput and decision latency on hollow nodes.
//!
//! Builds `nodes` hollow nodes from a template, submits a generated workload (see
//! [`workload`]) at once, and schedules it through the full default framework with the
//! in-memory binder, timing every cycle. Call [`run_bench`]; serialise the
//! [`BenchSummary`] for `--json`.

pub mod hollow;
pub mod workload;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::binder::InMemoryBinder;
use super::clock::SystemClock;
use super::engine::{CycleResult, Scheduler, SchedulerConfig};
use super::model::PodKey;
use super::plugins::default_framework;
use super::snapshot::ClusterEvent;
pub use hollow::{NodeTemplate, hollow_node};

/// What to benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct BenchConfig {
    /// Hollow nodes.
    pub nodes: usize,
    /// GPUs per node.
    pub gpus_per_node: usize,
    /// Pods to submit (gang members included).
    pub pods: usize,
    /// Workload seed.
    pub seed: u64,
    /// Machine template.
    pub template: NodeTemplate,
    /// Passed to [`SchedulerConfig::percentage_of_nodes_to_score`] (`None`: adaptive).
    pub percentage_of_nodes_to_score: Option<u32>,
}

impl BenchConfig {
    /// `nodes` DGX H100 nodes with `gpus_per_node` GPUs and `pods` pods, seed 1.
    pub fn new(nodes: usize, gpus_per_node: usize, pods: usize) -> Self {
        BenchConfig {
            nodes,
            gpus_per_node,
            pods,
            seed: 1,
            template: NodeTemplate::DgxH100,
            percentage_of_nodes_to_score: None,
        }
    }
}

/// The figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchSummary {
    /// The configuration measured.
    pub config: BenchConfig,
    /// Pods bound.
    pub placed: usize,
    /// Pods left unplaced at the end.
    pub unschedulable: usize,
    /// Scheduling cycles run (first attempts, retries and gang members).
    pub attempts: usize,
    /// Pods evicted by preemption.
    pub preempted: usize,
    /// Wall time of the scheduling loop, seconds.
    pub seconds: f64,
    /// Pods bound per second of scheduling.
    pub pods_per_second: f64,
    /// Median time of one scheduling cycle, ms.
    pub p50_decision_ms: f64,
    /// 99th percentile time of one scheduling cycle, ms.
    pub p99_decision_ms: f64,
    /// Longest cycle, ms.
    pub max_decision_ms: f64,
    /// Share of placed 2–8-GPU pods whose GPUs share one NVLink island.
    pub island_aligned_share: f64,
    /// Share of all GPU capacity allocated at the end.
    pub gpu_allocated_share: f64,
    /// Gangs submitted.
    pub gangs: usize,
    /// Gangs wholly bound.
    pub gangs_placed: usize,
    /// Median gang time-to-placement (first member tried → last bound), ms.
    pub gang_p50_time_to_placement_ms: f64,
    /// Longest gang time-to-placement, ms.
    pub gang_max_time_to_placement_ms: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs the benchmark and returns its summary (the function behind `cox sim bench`).
pub fn run_bench(config: &BenchConfig) -> BenchSummary {
    let binder = Arc::new(InMemoryBinder::new());
    let mut sched = Scheduler::new(
        default_framework(),
        binder.clone(),
        Arc::new(SystemClock::new()),
        SchedulerConfig {
            percentage_of_nodes_to_score: config.percentage_of_nodes_to_score,
            ..SchedulerConfig::default()
        },
    );
    for i in 0..config.nodes {
        let node = hollow_node(config.template, i, config.gpus_per_node);
        sched
            .handle(ClusterEvent::NodeAdded(node))
            .expect("hollow node names are unique");
    }
    let work = workload::generate(config.pods, config.seed);
    let group_of: HashMap<PodKey, PodKey> = work
        .pods
        .iter()
        .filter_map(|p| Some((p.key.clone(), p.group.clone()?)))
        .collect();
    for g in &work.gangs {
        sched
            .handle(ClusterEvent::PodGroupChanged(g.clone()))
            .expect("no node involved");
    }
    for p in &work.pods {
        sched
            .handle(ClusterEvent::PodAdded(p.clone()))
            .expect("no node involved");
    }
    let mut latencies = Vec::with_capacity(config.pods);
    let mut gang_start: HashMap<PodKey, Instant> = HashMap::new();
    let mut gang_bound: HashMap<PodKey, usize> = HashMap::new();
    let mut gang_ttp = Vec::new();
    let mut preempted = 0;
    let begin = Instant::now();
    loop {
        let t = Instant::now();
        sched.tick();
        let Some(report) = sched.schedule_one() else {
            break;
        };
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        latencies.push(ms);
        if let Some(g) = group_of.get(&report.pod) {
            gang_start.entry(g.clone()).or_insert(t);
        }
        for b in &report.bound {
            if let Some(g) = group_of.get(&b.pod) {
                let n = gang_bound.entry(g.clone()).or_default();
                *n += 1;
                let min = work
                    .gangs
                    .iter()
                    .find(|s| &s.key == g)
                    .map_or(0, |s| s.min_member as usize);
                if *n == min {
                    gang_ttp.push(gang_start[g].elapsed().as_secs_f64() * 1000.0);
                }
            }
        }
        if let CycleResult::Preempting { victims, .. } = &report.result {
            preempted += victims.len();
        }
        for victim in binder.take_evicted() {
            // Victims exist; a deletion cannot fail.
            let _ = sched.handle(ClusterEvent::PodDeleted(victim));
        }
    }
    let seconds = begin.elapsed().as_secs_f64();
    let figures = Figures {
        latencies,
        gang_ttp,
        preempted,
        seconds,
        gangs: work.gangs.len(),
    };
    summarize(config, &sched, &binder, figures)
}

/// Raw measurements of a run.
struct Figures {
    latencies: Vec<f64>,
    gang_ttp: Vec<f64>,
    preempted: usize,
    seconds: f64,
    gangs: usize,
}

fn summarize(
    config: &BenchConfig,
    sched: &Scheduler,
    binder: &InMemoryBinder,
    f: Figures,
) -> BenchSummary {
    let Figures {
        mut latencies,
        mut gang_ttp,
        preempted,
        seconds,
        gangs,
    } = f;
    latencies.sort_by(f64::total_cmp);
    gang_ttp.sort_by(f64::total_cmp);
    let bindings = binder.bindings();
    let snap = sched.snapshot();
    let (mut multi, mut aligned) = (0usize, 0usize);
    for b in bindings.values() {
        if !(2..=8).contains(&b.devices.len()) {
            continue;
        }
        multi += 1;
        let node = snap.node(&b.node).expect("bound node exists");
        let islands: Vec<u16> = b
            .devices
            .iter()
            .filter_map(|d| node.gpus.iter().find(|g| g.id == d.id).map(|g| g.island))
            .collect();
        if islands.windows(2).all(|w| w[0] == w[1]) {
            aligned += 1;
        }
    }
    let capacity: u64 = snap
        .nodes()
        .iter()
        .map(|n| n.gpus.len() as u64 * 1000)
        .sum();
    let used: u64 = snap
        .nodes()
        .iter()
        .flat_map(|n| n.gpus.iter())
        .map(|d| u64::from(d.used_milli))
        .sum();
    let placed = bindings.len();
    BenchSummary {
        config: config.clone(),
        placed,
        unschedulable: snap.pods().filter(|p| p.node.is_none()).count(),
        attempts: latencies.len(),
        preempted,
        seconds,
        pods_per_second: placed as f64 / seconds.max(1e-9),
        p50_decision_ms: percentile(&latencies, 0.50),
        p99_decision_ms: percentile(&latencies, 0.99),
        max_decision_ms: latencies.last().copied().unwrap_or(0.0),
        island_aligned_share: if multi == 0 {
            1.0
        } else {
            aligned as f64 / multi as f64
        },
        gpu_allocated_share: used as f64 / capacity.max(1) as f64,
        gangs,
        gangs_placed: gang_ttp.len(),
        gang_p50_time_to_placement_ms: percentile(&gang_ttp, 0.5),
        gang_max_time_to_placement_ms: gang_ttp.last().copied().unwrap_or(0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_run_places_the_mix_and_reports() {
        let summary = run_bench(&BenchConfig::new(250, 8, 2000));
        assert_eq!(summary.placed + summary.unschedulable, 2000);
        assert!(summary.placed > 1900, "{summary:?}");
        assert_eq!(summary.gangs, 1);
        assert_eq!(summary.island_aligned_share, 1.0);
        assert!(summary.p50_decision_ms <= summary.p99_decision_ms);
        let json = serde_json::to_value(&summary).unwrap();
        for key in ["pods_per_second", "p50_decision_ms", "p99_decision_ms"] {
            assert!(json.get(key).is_some(), "{key}");
        }
    }
}
