//! CNI ADD+DEL latency per pod with Debian's real plugins (root).
//!
//! `cargo run -p coxswain-cni --release --example add_del_bench -- [pods]`
//!
//! The process re-executes itself inside a private "host" network namespace
//! so the bench bridge, veths and iptables rules never touch the machine; the
//! plugins are then exec'd directly (no wrapper), as the agent will run them.
//! Each pod gets a fresh netns (created outside the timed part), then
//! loopback ADD + pod-network ADD (bridge, host-local, portmap), then the two
//! DELs. Figures go to docs/cni.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use coxswain_cni::exec::{ExecFailure, ExecOutput};
use coxswain_cni::{
    Attachment, Cni, DefaultNetwork, ExecRequest, PluginExec, ProcessExec, ResultCache,
    loopback_config_list,
};

/// Times every plugin call by (plugin, command): the seam makes a per-plugin
/// breakdown free.
struct TimingExec {
    inner: ProcessExec,
    samples: Mutex<BTreeMap<(String, String), Vec<Duration>>>,
    recording: std::sync::atomic::AtomicBool,
    /// Total nanoseconds spent inside plugin processes.
    in_plugins: std::sync::atomic::AtomicU64,
}

impl PluginExec for TimingExec {
    fn exec(&self, request: &ExecRequest) -> Result<ExecOutput, ExecFailure> {
        let start = Instant::now();
        let out = self.inner.exec(request);
        let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.in_plugins
            .fetch_add(nanos, std::sync::atomic::Ordering::Relaxed);
        if self.recording.load(std::sync::atomic::Ordering::Relaxed) {
            let plugin = request
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let key = (plugin, request.command.to_string());
            self.samples
                .lock()
                .expect("samples")
                .entry(key)
                .or_default()
                .push(start.elapsed());
        }
        out
    }

    fn find_plugin(&self, plugin: &str, search_path: &[PathBuf]) -> Option<PathBuf> {
        self.inner.find_plugin(plugin, search_path)
    }
}

const HOST_ENV: &str = "COX_CNI_BENCH_HOST";

fn main() -> anyhow::Result<()> {
    let pods: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()
        .context("pods must be a number")?
        .unwrap_or(200);
    if !Path::new("/usr/lib/cni/bridge").exists() {
        bail!("/usr/lib/cni/bridge is missing: run scripts/setup.sh as root");
    }
    match std::env::var(HOST_ENV) {
        Ok(host) => run_inside(&host, pods),
        Err(_) => run_outside(pods),
    }
}

/// Creates the host namespace, re-runs this binary inside it, removes it.
fn run_outside(pods: usize) -> anyhow::Result<()> {
    let host = format!("cox-cni-bench-{}", std::process::id());
    ip(&["netns", "add", &host])
        .context("creating the bench namespace (are you root? see scripts/setup.sh)")?;
    let exe = std::env::current_exe()?;
    let status = Command::new("ip")
        .args(["netns", "exec", &host])
        .arg(&exe)
        .arg(pods.to_string())
        .env(HOST_ENV, &host)
        .status();
    // Pod namespaces made inside are bind mounts in the child's mount
    // namespace; their mount points may remain as files here.
    if let Ok(entries) = std::fs::read_dir("/var/run/netns") {
        for name in entries.filter_map(|e| e.ok()?.file_name().into_string().ok()) {
            if name.starts_with(&format!("{host}-")) {
                let _ = ip(&["netns", "del", &name]);
            }
        }
    }
    let _ = ip(&["netns", "del", &host]);
    let status = status?;
    if !status.success() {
        bail!("bench failed inside {host}: {status}");
    }
    Ok(())
}

fn run_inside(host: &str, pods: usize) -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let exec = Arc::new(TimingExec {
        inner: ProcessExec::default(),
        samples: Mutex::new(BTreeMap::new()),
        recording: false.into(),
        in_plugins: 0.into(),
    });
    let cni = Cni::new(
        exec.clone(),
        vec!["/usr/lib/cni".into()],
        ResultCache::new(scratch.path().join("results")),
    );
    let net = DefaultNetwork::new("10.244.77.0/24", scratch.path().join("ipam")).config_list()?;
    let lo = loopback_config_list();
    let (mut adds, mut dels, mut totals, mut overheads) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let warmup = 5;
    for i in 0..pods + warmup {
        exec.recording
            .store(i >= warmup, std::sync::atomic::Ordering::Relaxed);
        let ns = format!("{host}-p{i}");
        ip(&["netns", "add", &ns])?;
        let path = Path::new("/var/run/netns").join(&ns);
        let lo_att = Attachment::new(format!("bench{i}"), &path, "lo");
        let eth0 = Attachment::new(format!("bench{i}"), &path, "eth0");
        let before = exec.in_plugins.load(std::sync::atomic::Ordering::Relaxed);
        let t0 = Instant::now();
        cni.add(&lo, &lo_att)?;
        let added = cni.add(&net, &eth0)?;
        let t1 = Instant::now();
        cni.del(&net, &eth0)?;
        cni.del(&lo, &lo_att)?;
        let t2 = Instant::now();
        let plugin_time = Duration::from_nanos(
            exec.in_plugins.load(std::sync::atomic::Ordering::Relaxed) - before,
        );
        ip(&["netns", "del", &ns])?;
        if added.result.ips.is_empty() {
            bail!("ADD returned no address");
        }
        if i >= warmup {
            adds.push(t1 - t0);
            dels.push(t2 - t1);
            totals.push(t2 - t0);
            overheads.push((t2 - t0).saturating_sub(plugin_time));
        }
    }
    println!(
        "CNI ADD+DEL per pod, {pods} pods sequential, plugins from /usr/lib/cni, {} CPUs",
        cpus()
    );
    println!("| phase | p50 | p99 | max |");
    println!("|---|---|---|---|");
    for (name, samples) in [
        ("ADD (loopback + bridge/host-local/portmap)", &mut adds),
        ("DEL (same, reverse)", &mut dels),
        ("ADD+DEL", &mut totals),
        ("of which outside plugins (cache, JSON)", &mut overheads),
    ] {
        samples.sort();
        println!(
            "| {name} | {} | {} | {} |",
            ms(pct(samples, 50)),
            ms(pct(samples, 99)),
            ms(*samples.last().unwrap_or(&Duration::ZERO))
        );
    }
    println!();
    println!("| plugin call | p50 | p99 |");
    println!("|---|---|---|");
    for ((plugin, command), samples) in exec.samples.lock().expect("samples").iter_mut() {
        samples.sort();
        println!(
            "| {plugin} {command} | {} | {} |",
            ms(pct(samples, 50)),
            ms(pct(samples, 99))
        );
    }
    Ok(())
}

fn pct(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
