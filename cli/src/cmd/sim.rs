//! `cox sim`: the placement simulator.
//!
//! `cox sim openb` replays openb pod traces under the FGD paper's policies
//! and writes the allocation curves as `expected_allo_discrete.csv` rows;
//! `cox sim openb-orders` and `cox sim openb-oracle` check the replay
//! against the published submission orders and the step-by-step reference.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use coxswain_control_plane::sim::openb::reference::{
    ExpectedRow, read_expected, read_oracle_events, read_order_index,
};
use coxswain_control_plane::sim::openb::trace::{NodeSpec, PodSpec, read_nodes, read_pods};
use coxswain_control_plane::sim::openb::{
    self, MAX_X, PolicyKind, RunSummary, Workload, metric::format_hundredths, replay, trace_name,
};

/// Arguments of `cox sim`.
#[derive(Args)]
pub struct SimArgs {
    #[command(subcommand)]
    command: SimCommand,
}

#[derive(Subcommand)]
enum SimCommand {
    /// Replay openb traces and write allocation curves (PROTOCOL.md §4).
    // Boxed so that `cox`'s command enum stays small.
    Openb(Box<OpenbArgs>),
    /// Check generated submission orders and node ranks against replay_orders/INDEX.csv.
    OpenbOrders(DataArgs),
    /// Replay default/FGD/seed 42 and compare every step with reference_run/.
    OpenbOracle(DataArgs),
    /// Schedule a synthetic workload on hollow nodes through the full scheduler framework.
    Bench(super::sim_bench::SimBenchArgs),
}

#[derive(Args)]
struct DataArgs {
    /// The openb data folder [default: $COXSWAIN_OPENB_DIR or <workspace>/../shared/data/openb].
    #[arg(long)]
    data: Option<PathBuf>,
}

#[derive(Args)]
struct OpenbArgs {
    /// Node list CSV [default: <data>/csv/openb_node_list_gpu_node.csv].
    #[arg(long)]
    nodes: Option<PathBuf>,
    /// Pod list CSV; repeat for several traces.
    #[arg(long, required = true)]
    pods: Vec<PathBuf>,
    /// Workload is tuned to this multiple of cluster GPU capacity.
    #[arg(long, default_value_t = 1.3)]
    tune: f64,
    /// One seed.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<i64>,
    /// Seed range `A-B` or list `A,B,C`.
    #[arg(long)]
    seeds: Option<String>,
    /// Policies: random, dotprod, clustering, packing, bestfit, fgd, coxswain (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', default_value = "fgd")]
    policy: Vec<String>,
    /// Output CSV in the shape of expected_allo_discrete.csv.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Cached results to compare with [default: <data>/expected_allo_discrete.csv if present].
    #[arg(long)]
    expected: Option<PathBuf>,
    /// Parallel replays [default: number of CPUs].
    #[arg(long)]
    jobs: Option<usize>,
    /// The openb data folder, for the defaults above.
    #[arg(long)]
    data: Option<PathBuf>,
}

/// Runs `cox sim`.
pub fn run(args: SimArgs) -> anyhow::Result<()> {
    match args.command {
        SimCommand::Openb(a) => run_openb(*a),
        SimCommand::OpenbOrders(a) => check_orders(&a.data.unwrap_or_else(openb::data_dir)),
        SimCommand::OpenbOracle(a) => check_oracle(&a.data.unwrap_or_else(openb::data_dir)),
        SimCommand::Bench(a) => super::sim_bench::run(a),
    }
}

fn parse_seeds(seed: Option<i64>, seeds: Option<&str>) -> anyhow::Result<Vec<i64>> {
    let Some(spec) = seeds else {
        return Ok(vec![seed.unwrap_or(42)]);
    };
    let mut out = Vec::new();
    for part in spec.split(',') {
        let part = part.trim();
        if let Some((a, b)) = part.split_once('-') {
            let (a, b): (i64, i64) = (
                a.parse()
                    .with_context(|| format!("--seeds: expected integer, got {a:?}"))?,
                b.parse()
                    .with_context(|| format!("--seeds: expected integer, got {b:?}"))?,
            );
            out.extend(a..=b);
        } else {
            out.push(
                part.parse()
                    .with_context(|| format!("--seeds: expected integer, got {part:?}"))?,
            );
        }
    }
    Ok(out)
}

struct Job {
    trace: usize,
    policy: PolicyKind,
    seed: i64,
}

fn run_openb(a: OpenbArgs) -> anyhow::Result<()> {
    // The ablation knob of the coxswain policy: refuse a bad value before any replay starts.
    coxswain_control_plane::sim::openb::policy::Coxswain::checked_env_config()
        .map_err(anyhow::Error::msg)?;
    let data = a.data.clone().unwrap_or_else(openb::data_dir);
    let nodes_path = a
        .nodes
        .clone()
        .unwrap_or_else(|| data.join("csv/openb_node_list_gpu_node.csv"));
    let nodes = read_nodes(&nodes_path).with_context(|| {
        format!(
            "node list (pass --nodes, --data or set {})",
            openb::DATA_DIR_ENV
        )
    })?;
    let traces: Vec<(String, Vec<PodSpec>)> = a
        .pods
        .iter()
        .map(|p| Ok((trace_name(p), read_pods(p)?)))
        .collect::<anyhow::Result<_>>()?;
    let policies: Vec<PolicyKind> = a
        .policy
        .iter()
        .map(|p| PolicyKind::parse(p).with_context(|| format!("--policy: unknown policy {p:?}")))
        .collect::<anyhow::Result<_>>()?;
    let seeds = parse_seeds(a.seed, a.seeds.as_deref())?;
    let expected_path = a
        .expected
        .clone()
        .or_else(|| Some(data.join("expected_allo_discrete.csv")).filter(|p| p.exists()));
    let expected = match &expected_path {
        Some(p) => read_expected(p)?,
        None => Vec::new(),
    };

    let mut jobs = Vec::new();
    for trace in 0..traces.len() {
        for &policy in &policies {
            for &seed in &seeds {
                jobs.push(Job {
                    trace,
                    policy,
                    seed,
                });
            }
        }
    }
    let threads = a
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let results = run_jobs(&nodes, &traces, &jobs, a.tune, threads);

    let lookup: HashMap<(&str, &str, i64), &ExpectedRow> = expected
        .iter()
        .map(|r| ((r.workload.as_str(), r.policy.as_str(), r.seed), r))
        .collect();
    let mut csv = openb::metric::csv_header(MAX_X) + "\n";
    println!(
        "trace policy seed submissions failed unalloc@100 unalloc@130 seconds  cached@100 exact/±0.01 (of {} values)",
        MAX_X + 1
    );
    let mut per_group: HashMap<(usize, PolicyKind), Vec<&RunSummary>> = HashMap::new();
    for (job, (summary, secs)) in jobs.iter().zip(&results) {
        csv.push_str(&summary.csv_row());
        csv.push('\n');
        per_group
            .entry((job.trace, job.policy))
            .or_default()
            .push(summary);
        let cmp = lookup
            .get(&(
                summary.workload.as_str(),
                summary.policy.csv_name(),
                summary.seed,
            ))
            .map(|row| {
                let (exact, near) = compare(&summary.curve, &row.curve);
                let cached = row.curve[100].map_or("-".into(), |v| format_hundredths(10_000 - v));
                format!("{cached:>10} {exact}/{near}")
            });
        println!(
            "{} {} {} {} {} {} {} {:.3} {}",
            summary.workload,
            summary.policy.csv_name(),
            summary.seed,
            summary.submissions,
            summary.failed,
            fmt_opt(summary.unallocated(100)),
            fmt_opt(summary.unallocated(130)),
            secs,
            cmp.unwrap_or_default()
        );
    }
    if seeds.len() > 1 {
        println!(
            "\nmean over {} seeds: trace policy unalloc@100 unalloc@130",
            seeds.len()
        );
        for trace in 0..traces.len() {
            for &policy in &policies {
                let group = &per_group[&(trace, policy)];
                println!(
                    "{} {} {} {}",
                    traces[trace].0,
                    policy.csv_name(),
                    mean_unalloc(group, 100),
                    mean_unalloc(group, 130)
                );
            }
        }
    }
    if !lookup.is_empty() {
        println!(
            "\nrows reproduced (all {} values): policy runs exact within±0.01",
            MAX_X + 1
        );
        for &policy in &policies {
            let (mut runs, mut exact, mut near) = (0, 0, 0);
            for (job, (summary, _)) in jobs.iter().zip(&results) {
                let key = (summary.workload.as_str(), policy.csv_name(), summary.seed);
                if let (true, Some(row)) = (job.policy == policy, lookup.get(&key)) {
                    let (e, n) = compare(&summary.curve, &row.curve);
                    runs += 1;
                    exact += usize::from(e == row.curve.len());
                    near += usize::from(n == row.curve.len());
                }
            }
            println!("{} {runs} {exact} {near}", policy.csv_name());
        }
    }
    if let Some(out) = &a.out {
        std::fs::write(out, csv).with_context(|| format!("{}: cannot write", out.display()))?;
    }
    Ok(())
}

fn run_jobs(
    nodes: &[NodeSpec],
    traces: &[(String, Vec<PodSpec>)],
    jobs: &[Job],
    tune: f64,
    threads: usize,
) -> Vec<(RunSummary, f64)> {
    let next = Mutex::new(0usize);
    let results: Mutex<Vec<Option<(RunSummary, f64)>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads.min(jobs.len()) {
            scope.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().expect("job counter");
                        let i = *n;
                        *n += 1;
                        i
                    };
                    let Some(job) = jobs.get(i) else { break };
                    let (name, pods) = &traces[job.trace];
                    let start = Instant::now();
                    let w = Workload::generate(nodes.to_vec(), pods.clone(), tune, job.seed);
                    let r = replay(&w, job.policy);
                    let summary = RunSummary::new(name, &w, job.policy, tune, job.seed, &r);
                    results.lock().expect("results")[i] =
                        Some((summary, start.elapsed().as_secs_f64()));
                }
            });
        }
    });
    results
        .into_inner()
        .expect("results")
        .into_iter()
        .map(|r| r.expect("every job ran"))
        .collect()
}

/// (cells equal, cells within ±0.01) between two curves.
fn compare(got: &openb::metric::Curve, want: &openb::metric::Curve) -> (usize, usize) {
    let pairs = got.iter().zip(want);
    let exact = pairs.clone().filter(|(g, w)| g == w).count();
    let near = pairs
        .filter(|(g, w)| match (g, w) {
            (Some(g), Some(w)) => (g - w).abs() <= 1,
            (g, w) => g == w,
        })
        .count();
    (exact, near)
}

fn fmt_opt(v: Option<i64>) -> String {
    v.map_or("-".into(), format_hundredths)
}

/// Mean over seeds of the unallocated % (100 − Value(x)), to 2 decimals:
/// the exact mean rounded half to even, as PROTOCOL.md §6 shows it.
fn mean_unalloc(group: &[&RunSummary], x: usize) -> String {
    let values: Vec<i64> = group.iter().filter_map(|s| s.curve[x]).collect();
    if values.is_empty() {
        return "-".into();
    }
    let n = values.len() as i64;
    let sum: i64 = values.iter().map(|v| 10_000 - v).sum();
    let (q, r) = (sum / n, sum % n);
    let mean = if 2 * r > n || (2 * r == n && q % 2 == 1) {
        q + 1
    } else {
        q
    };
    format!("{}.{:02}", mean / 100, mean % 100)
}

fn check_orders(data: &Path) -> anyhow::Result<()> {
    let nodes = read_nodes(&data.join("csv/openb_node_list_gpu_node.csv"))?;
    let index = read_order_index(&data.join("replay_orders/INDEX.csv"))?;
    let mut pods_cache: HashMap<String, Vec<PodSpec>> = HashMap::new();
    let (mut ok, mut bad) = (0, 0);
    for e in &index {
        if !pods_cache.contains_key(&e.workload) {
            pods_cache.insert(
                e.workload.clone(),
                read_pods(&data.join(format!("csv/{}.csv", e.workload)))?,
            );
        }
        let w = Workload::generate(nodes.clone(), pods_cache[&e.workload].clone(), 1.3, e.seed);
        let good = w.order_sha256() == e.sha256_pod_order && w.rank_sha256() == e.sha256_node_rank;
        if good {
            ok += 1
        } else {
            bad += 1;
            println!("MISMATCH {} seed {}", e.workload, e.seed)
        }
    }
    println!("{ok} passed, {bad} failed");
    if bad > 0 {
        bail!("{bad} of {} orders differ from INDEX.csv", index.len());
    }
    Ok(())
}

fn check_oracle(data: &Path) -> anyhow::Result<()> {
    let nodes = read_nodes(&data.join("csv/openb_node_list_gpu_node.csv"))?;
    let pods = read_pods(&data.join("csv/openb_pod_list_default.csv"))?;
    let oracle = read_oracle_events(&data.join("reference_run/default_FGD_seed42_events.csv.gz"))?;
    let start = Instant::now();
    let w = Workload::generate(nodes, pods, 1.3, 42);
    let r = replay(&w, PolicyKind::Fgd);
    println!(
        "replayed {} submissions in {:.2}s",
        r.events.len(),
        start.elapsed().as_secs_f64()
    );
    for (k, (got, want)) in r.events.iter().zip(&oracle).enumerate() {
        let node = got.node.map(|n| w.nodes[n].name.clone());
        if w.name(got.submission) != want.pod
            || node != want.node
            || got.devices != want.devices
            || got.used_gpu_milli != want.used_gpu_milli
        {
            bail!(
                "first divergence at submission {k} ({}): got {node:?} {:?}, want {:?} {:?}",
                want.pod,
                got.devices,
                want.node,
                want.devices
            );
        }
    }
    println!("all {} submissions match the reference run", oracle.len());
    Ok(())
}
