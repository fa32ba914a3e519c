//! Benchmark of the API server over HTTP (figures for docs/benchmarks.md; not a test).
//!
//! For each store backend (embedded, then etcd started here): create and update throughput with
//! p50/p99 latency for 1, 16 and 256 concurrent HTTP clients; latency of single-object updates
//! paced at 1,000 writes/s; and watch fan-out: the delay from sending a write to its event
//! reaching each of 1,000 watchers.
//!
//! `cargo run --release -p coxswain-control-plane --example apiserver_bench [-- --quick]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use coxswain_control_plane::apiserver::ApiServer;
use coxswain_control_plane::store::{EmbeddedStore, EtcdStore, LocalEtcd, Store};
use serde_json::json;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

const NS: &str = "/api/v1/namespaces/default/configmaps";

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

fn report(label: &str, mut latencies: Vec<Duration>, elapsed: Duration) {
    latencies.sort();
    println!(
        "| {label} | {:.0} | {:.2} | {:.2} |",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
}

fn configmap(name: &str, i: usize) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"i": i.to_string()}})
}

/// `clients` clients doing `total` creates (or updates of one object each) in all.
async fn throughput(
    url: &str,
    tag: &str,
    clients: usize,
    total: usize,
    update: bool,
) -> (Vec<Duration>, Duration) {
    let http = reqwest::Client::new();
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(total)));
    if update {
        for c in 0..clients {
            let r = http
                .post(format!("{url}{NS}"))
                .json(&configmap(&format!("{tag}-u{c}"), 0))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
        }
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, url, latencies, tag) = (
            http.clone(),
            url.to_string(),
            latencies.clone(),
            tag.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..total / clients {
                let t = Instant::now();
                let response = if update {
                    http.patch(format!("{url}{NS}/{tag}-u{c}"))
                        .header("content-type", "application/merge-patch+json")
                        .body(json!({"data": {"i": i.to_string()}}).to_string())
                        .send()
                        .await
                } else {
                    http.post(format!("{url}{NS}"))
                        .json(&configmap(&format!("{tag}-{c}-{i}"), i))
                        .send()
                        .await
                };
                assert!(response.unwrap().status().is_success());
                mine.push(t.elapsed());
            }
            latencies.lock().await.extend(mine);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    let latencies = Arc::try_unwrap(latencies).unwrap().into_inner();
    (latencies, elapsed)
}

/// Updates of one object paced at `rate` per second for `seconds`, from 16 clients.
async fn paced(url: &str, rate: u64, seconds: u64) -> (Vec<Duration>, Duration) {
    let http = reqwest::Client::new();
    let clients = 16;
    for c in 0..clients {
        http.post(format!("{url}{NS}"))
            .json(&configmap(&format!("paced-{c}"), 0))
            .send()
            .await
            .unwrap();
    }
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, url, latencies) = (http.clone(), url.to_string(), latencies.clone());
        tasks.push(tokio::spawn(async move {
            let period = Duration::from_micros(1_000_000 * clients / rate);
            let mut tick = tokio::time::interval(period);
            for i in 0..(rate * seconds / clients) {
                tick.tick().await;
                let t = Instant::now();
                let r = http
                    .patch(format!("{url}{NS}/paced-{c}"))
                    .header("content-type", "application/merge-patch+json")
                    .body(json!({"data": {"i": i.to_string()}}).to_string())
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
                latencies.lock().await.push(t.elapsed());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    (Arc::try_unwrap(latencies).unwrap().into_inner(), elapsed)
}

/// Delay from sending each write to its event arriving at each of `watchers` watchers.
async fn fan_out(url: &str, watchers: usize, writes: usize) -> Vec<Duration> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    http.post(format!("{url}{NS}"))
        .json(&configmap("fan", 0))
        .send()
        .await
        .unwrap();
    let rv = http
        .get(format!("{url}{NS}/fan"))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let acks: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; writes]));
    let delays = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        let mut response = http
            .get(format!("{url}{NS}?watch=true&resourceVersion={rv}&fieldSelector=metadata.name%3Dfan&timeoutSeconds=120"))
            .send().await.unwrap();
        let (acks, delays) = (acks.clone(), delays.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen = 0;
            let mut buffer = Vec::new();
            while seen < writes {
                let Some(chunk) = response.chunk().await.unwrap() else {
                    break;
                };
                let at = Instant::now();
                buffer.extend_from_slice(&chunk);
                while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                    let event: serde_json::Value = serde_json::from_slice(&buffer[..end]).unwrap();
                    buffer.drain(..=end);
                    let i: usize = event["object"]["data"]["i"]
                        .as_str()
                        .unwrap_or("0")
                        .parse()
                        .unwrap();
                    if i >= 1 && i <= writes {
                        // Measured from the moment the write was sent: write latency plus
                        // delivery to this watcher.
                        let ack = acks.lock().await[i - 1];
                        delays
                            .lock()
                            .await
                            .push(ack.map_or(Duration::ZERO, |a| at.saturating_duration_since(a)));
                        seen += 1;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let writer = reqwest::Client::new();
    for i in 1..=writes {
        acks.lock().await[i - 1] = Some(Instant::now());
        let r = writer
            .patch(format!("{url}{NS}/fan"))
            .header("content-type", "application/merge-patch+json")
            .body(json!({"data": {"i": i.to_string()}}).to_string())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
    }
    let mut delays = Arc::try_unwrap(delays).unwrap().into_inner();
    delays.sort();
    delays
}

async fn run(label: &str, store: Arc<dyn Store>, quick: bool) {
    let shutdown = CancellationToken::new();
    let server = ApiServer::new(store, shutdown.clone()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(server.serve(listener));
    let scale = if quick { 1 } else { 4 };
    println!("\n### {label}\n\n| run | ops/s | p50 ms | p99 ms |\n|---|---|---|---|");
    for clients in [1usize, 16, 256] {
        let total = if clients == 1 {
            500 * scale
        } else {
            2560 * scale
        };
        let (l, e) = throughput(&url, &format!("c{clients}"), clients, total, false).await;
        report(&format!("create, {clients} clients"), l, e);
        let (l, e) = throughput(&url, &format!("c{clients}"), clients, total, true).await;
        report(&format!("update, {clients} clients"), l, e);
    }
    let (l, e) = paced(&url, 1000, if quick { 3 } else { 10 }).await;
    report("update paced at 1,000/s, 16 clients", l, e);
    let watchers = 1000;
    let delays = fan_out(&url, watchers, if quick { 5 } else { 20 }).await;
    println!(
        "\nwatch fan-out to {watchers} watchers: {} deliveries, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        delays.len(),
        percentile(&delays, 0.5),
        percentile(&delays, 0.99),
        delays.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    );
    shutdown.cancel();
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let dir = tempfile::tempdir().unwrap();
    let embedded: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path().join("store")).unwrap());
    run("embedded store", embedded, quick).await;
    let etcd = LocalEtcd::start(&dir.path().join("etcd")).await.unwrap();
    let store: Arc<dyn Store> = Arc::new(
        EtcdStore::connect(&[etcd.endpoint().to_string()])
            .await
            .unwrap(),
    );
    run("etcd", store, quick).await;
}
