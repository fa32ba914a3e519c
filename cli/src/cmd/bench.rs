//! `cox bench`: benchmarks whose figures go into docs/benchmarks.md.
//!
//! `cox bench store` measures both store backends side by side in one run, on the same disk:
//! durable write throughput and latency at 1, 16 and 256 concurrent writers, latency at a paced
//! 1,000 writes/s, and watch delivery latency to 100 watchers. The etcd it measures is started
//! here, in a temporary directory, with its default (fsync'd) settings.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::{Args, Subcommand, ValueEnum};
use coxswain_control_plane::store::{EmbeddedStore, EtcdStore, LocalEtcd, Store, WatchEvent};
use futures::StreamExt;
use serde::Serialize;

/// Arguments of `cox bench`.
#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    target: BenchTarget,
}

#[derive(Subcommand)]
enum BenchTarget {
    /// Durable writes/s, write latency and watch latency of the store backends.
    Store(StoreArgs),
}

#[derive(Args)]
struct StoreArgs {
    /// Which backend(s) to measure.
    #[arg(long, value_enum, default_value = "both")]
    backend: BackendChoice,
    /// Writes per throughput run (the 1-writer run does a tenth of them).
    #[arg(long, default_value_t = 20_000)]
    ops: usize,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
    /// Where the data directories go (default: the system temp dir; it must be a real disk,
    /// not tmpfs, for durable-write figures to mean anything).
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendChoice {
    Embedded,
    Etcd,
    Both,
}

/// Value size of every benchmark write: about a small Kubernetes object.
const VALUE_BYTES: usize = 1024;
/// Concurrency levels of the throughput runs.
const WRITERS: [usize; 3] = [1, 16, 256];
/// Rate and length of the paced run.
const PACED_PER_SEC: u64 = 1_000;
const PACED_SECS: u64 = 3;
/// Watchers and writes of the watch run (written at the paced rate).
const WATCHERS: usize = 100;
const WATCHED_WRITES: usize = 1_000;

/// Runs `cox bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let BenchTarget::Store(args) = args.target;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(bench_store(args))
}

/// Figures for one backend.
#[derive(Serialize)]
struct BackendReport {
    backend: &'static str,
    throughput: Vec<ThroughputRun>,
    paced: LatencyRun,
    watch: LatencyRun,
}

/// One closed-loop run at a fixed number of writers.
#[derive(Serialize)]
struct ThroughputRun {
    writers: usize,
    ops: usize,
    writes_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// One latency run.
#[derive(Serialize)]
struct LatencyRun {
    samples: usize,
    rate_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn bench_store(args: StoreArgs) -> anyhow::Result<()> {
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let mut reports = Vec::new();
    if args.backend != BackendChoice::Etcd {
        let dir = tempfile::tempdir_in(&base)
            .with_context(|| format!("temp dir in {}", base.display()))?;
        let store = EmbeddedStore::open(dir.path().join("store"))?;
        reports.push(bench_backend("embedded", Arc::new(store), &args).await?);
    }
    if args.backend != BackendChoice::Embedded {
        let dir = tempfile::tempdir_in(&base)
            .with_context(|| format!("temp dir in {}", base.display()))?;
        let etcd = LocalEtcd::start(dir.path()).await?;
        let store = EtcdStore::connect(&[etcd.endpoint().to_owned()]).await?;
        reports.push(bench_backend("etcd", Arc::new(store), &args).await?);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        print_table(&reports, &base);
    }
    Ok(())
}

async fn bench_backend(
    name: &'static str,
    store: Arc<dyn Store>,
    args: &StoreArgs,
) -> anyhow::Result<BackendReport> {
    eprintln!("benchmarking the {name} store...");
    let mut throughput = Vec::new();
    for writers in WRITERS {
        let ops = if writers == 1 {
            (args.ops / 10).max(100)
        } else {
            args.ops
        };
        throughput.push(closed_loop(&store, writers, ops).await?);
    }
    let paced = paced(&store).await?;
    let watch = watch_latency(&store).await?;
    Ok(BackendReport {
        backend: name,
        throughput,
        paced,
        watch,
    })
}

fn value() -> Bytes {
    Bytes::from(vec![b'v'; VALUE_BYTES])
}

/// `writers` tasks creating `ops` keys in all, as fast as acknowledgements come back.
async fn closed_loop(
    store: &Arc<dyn Store>,
    writers: usize,
    ops: usize,
) -> anyhow::Result<ThroughputRun> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        let mine = ops / writers + usize::from(w < ops % writers);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(mine);
            for i in 0..mine {
                let key = format!("/registry/bench/c{writers}/w{w}/k{i}");
                let t = Instant::now();
                store.create(&key, value()).await?;
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(ops);
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    let (p50, p99) = percentiles(&mut latencies);
    Ok(ThroughputRun {
        writers,
        ops,
        writes_per_sec: ops as f64 / elapsed.as_secs_f64(),
        p50_ms: p50,
        p99_ms: p99,
    })
}

/// Writes started at a steady 1,000/s (open loop: a slow write does not delay the next).
async fn paced(store: &Arc<dyn Store>) -> anyhow::Result<LatencyRun> {
    let total = (PACED_PER_SEC * PACED_SECS) as usize;
    let (latencies, elapsed) = paced_writes(store, "paced", total, |_, _| {}).await?;
    let mut latencies = latencies;
    let (p50, p99) = percentiles(&mut latencies);
    Ok(LatencyRun {
        samples: total,
        rate_per_sec: total as f64 / elapsed.as_secs_f64(),
        p50_ms: p50,
        p99_ms: p99,
    })
}

/// Issues `total` creates under `/registry/bench/<tag>/` at [`PACED_PER_SEC`]; `on_submit` is
/// told each write's index and start time. Returns the write latencies and the elapsed time.
async fn paced_writes(
    store: &Arc<dyn Store>,
    tag: &str,
    total: usize,
    on_submit: impl Fn(usize, Instant),
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / PACED_PER_SEC));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        ticker.tick().await;
        let store = store.clone();
        let key = format!("/registry/bench/{tag}/w{i}");
        let t = Instant::now();
        on_submit(i, t);
        tasks.push(tokio::spawn(async move {
            store.create(&key, value()).await?;
            anyhow::Ok(t.elapsed())
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.push(task.await??);
    }
    Ok((latencies, started.elapsed()))
}

/// Time from submitting a write to each of [`WATCHERS`] watchers receiving its event.
async fn watch_latency(store: &Arc<dyn Store>) -> anyhow::Result<LatencyRun> {
    let prefix = "/registry/bench/watch/";
    let from = store.current_revision().await?;
    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        let mut stream = store.watch(prefix, from).await?;
        watchers.push(tokio::spawn(async move {
            let mut received = Vec::with_capacity(WATCHED_WRITES);
            while received.len() < WATCHED_WRITES {
                let event = stream.next().await.context("watch ended early")??;
                if let WatchEvent::Put { kv, .. } = event {
                    let index: usize = kv.key.rsplit_once("/w").context("bench key")?.1.parse()?;
                    received.push((index, Instant::now()));
                }
            }
            anyhow::Ok(received)
        }));
    }
    let submitted = Arc::new(Mutex::new(vec![None; WATCHED_WRITES]));
    let record = submitted.clone();
    let (_, elapsed) = paced_writes(store, "watch", WATCHED_WRITES, move |i, t| {
        if let Ok(mut times) = record.lock() {
            times[i] = Some(t);
        }
    })
    .await?;
    let submitted = submitted
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    let mut latencies = Vec::with_capacity(WATCHERS * WATCHED_WRITES);
    for watcher in watchers {
        for (index, at) in watcher.await?? {
            let sent = submitted[index].context("event for a write never submitted")?;
            latencies.push(at.saturating_duration_since(sent));
        }
    }
    let (p50, p99) = percentiles(&mut latencies);
    Ok(LatencyRun {
        samples: latencies.len(),
        rate_per_sec: WATCHED_WRITES as f64 / elapsed.as_secs_f64(),
        p50_ms: p50,
        p99_ms: p99,
    })
}

/// p50 and p99 in milliseconds.
fn percentiles(latencies: &mut [Duration]) -> (f64, f64) {
    if latencies.is_empty() {
        return (0.0, 0.0);
    }
    latencies.sort_unstable();
    let at = |q: f64| {
        let index = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[index].as_secs_f64() * 1000.0
    };
    (at(0.50), at(0.99))
}

fn print_table(reports: &[BackendReport], base: &Path) {
    println!(
        "store benchmark: {VALUE_BYTES}-byte values, durable (fsync'd) writes, data in {}",
        base.display()
    );
    let mut header = format!("{:<34}", "");
    for report in reports {
        header.push_str(&format!("{:>14}", report.backend));
    }
    if reports.len() == 2 {
        header.push_str(&format!("{:>16}", "embedded/etcd"));
    }
    println!("{header}");
    let row = |label: String, values: Vec<f64>, higher_is_better: bool| {
        let mut line = format!("{label:<34}");
        for v in &values {
            line.push_str(&format!("{v:>14.2}"));
        }
        if let [a, b] = values[..] {
            let ratio = if higher_is_better { a / b } else { b / a };
            line.push_str(&format!("{:>15.1}x", ratio));
        }
        println!("{line}");
    };
    for (i, writers) in WRITERS.iter().enumerate() {
        let runs: Vec<&ThroughputRun> = reports.iter().map(|r| &r.throughput[i]).collect();
        row(
            format!("writes/s, {writers} writers"),
            runs.iter().map(|r| r.writes_per_sec).collect(),
            true,
        );
        row(
            format!("  p50 ms, {writers} writers"),
            runs.iter().map(|r| r.p50_ms).collect(),
            false,
        );
        row(
            format!("  p99 ms, {writers} writers"),
            runs.iter().map(|r| r.p99_ms).collect(),
            false,
        );
    }
    row(
        format!("p50 ms at {PACED_PER_SEC} writes/s"),
        reports.iter().map(|r| r.paced.p50_ms).collect(),
        false,
    );
    row(
        format!("p99 ms at {PACED_PER_SEC} writes/s"),
        reports.iter().map(|r| r.paced.p99_ms).collect(),
        false,
    );
    row(
        format!("watch p50 ms, {WATCHERS} watchers"),
        reports.iter().map(|r| r.watch.p50_ms).collect(),
        false,
    );
    row(
        format!("watch p99 ms, {WATCHERS} watchers"),
        reports.iter().map(|r| r.watch.p99_ms).collect(),
        false,
    );
    println!(
        "(ratio: how many times better embedded is; watch latency runs from write submission to delivery)"
    );
}
