//! `cox-nvidia-plugin`: the NVIDIA GPU device plugin binary. Serves real GPUs
//! through NVML, or simulated ones with `--simulate TOPOLOGY`; registers with
//! `<plugin-dir>/kubelet.sock`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use coxswain_nvidia_plugin::backend::{NvmlBackend, SimulatedBackend};
use coxswain_nvidia_plugin::device_nodes::Mknod;
use coxswain_nvidia_plugin::gpu::GpuBackend;
use coxswain_nvidia_plugin::health::XidPolicy;
use coxswain_nvidia_plugin::metrics::pods::PodResourcesSource;
use coxswain_nvidia_plugin::metrics::{self, GpuMetrics};
use coxswain_nvidia_plugin::plugin::{DEFAULT_PLUGIN_DIR, DEFAULT_RESOURCE_NAME};
use coxswain_nvidia_plugin::topology::{Topology, nvlink_islands};
use coxswain_nvidia_plugin::{Error, NvidiaPlugin, PluginConfig};
use tokio_util::sync::CancellationToken;

/// NVIDIA GPU device plugin (Kubernetes device-plugin API v1beta1).
#[derive(Debug, Parser)]
#[command(name = "cox-nvidia-plugin", version)]
struct Args {
    /// Log format: `text` or `json` (one JSON object per line).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Log level or filter (`info`, `debug`, ...); `RUST_LOG` wins when set.
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Directory with kubelet.sock; the plugin's socket is created here too.
    #[arg(long, default_value = DEFAULT_PLUGIN_DIR)]
    plugin_dir: PathBuf,
    /// Resource name to advertise.
    #[arg(long, default_value = DEFAULT_RESOURCE_NAME)]
    resource_name: String,
    /// Serve simulated GPUs: dgx-h100, dgx-a100, pcie-8x-nvlink-pairs, dgx1-v100, pcie-4x.
    #[arg(long, value_name = "TOPOLOGY")]
    simulate: Option<String>,
    /// Where simulated device nodes are created [default: <plugin-dir>/../simulated-dev].
    #[arg(long)]
    simulated_dev_dir: Option<PathBuf>,
    /// XIDs that do not make a GPU unhealthy (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "13,31,43,45,68,109")]
    ignore_xids: Vec<u64>,
    /// Seconds an unhealthy GPU waits before it is re-checked.
    #[arg(long, default_value_t = 30)]
    recheck_secs: u64,
    /// List the GPUs with their topology and exit.
    #[arg(long)]
    list: bool,
    /// Serve Prometheus metrics (dcgm-exporter's names) at http://ADDR/metrics,
    /// e.g. 127.0.0.1:9400 [default: off].
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Label the GPU metrics with the pod holding each GPU, asked of this
    /// PodResources socket (a kubelet's: /var/lib/kubelet/pod-resources/kubelet.sock) [default: none].
    #[arg(long, value_name = "PATH", requires = "metrics_listen")]
    pod_resources_socket: Option<PathBuf>,
}

/// The chosen backend, and the NVML one again when real (for `--list`).
type Backends = (Arc<dyn GpuBackend>, Option<Arc<NvmlBackend>>);

fn backend(args: &Args) -> Result<Backends, Error> {
    match &args.simulate {
        Some(name) => {
            let topology = Topology::parse(name)?;
            let dev_dir = args.simulated_dev_dir.clone().unwrap_or_else(|| {
                args.plugin_dir
                    .parent()
                    .unwrap_or(&args.plugin_dir)
                    .join("simulated-dev")
            });
            let sim = SimulatedBackend::create(topology, &dev_dir, &Mknod)?;
            Ok((Arc::new(sim), None))
        }
        None => {
            let nvml = Arc::new(NvmlBackend::init()?);
            Ok((nvml.clone(), Some(nvml)))
        }
    }
}

/// How each pair of real GPUs reaches the other over PCIe (NVML's common
/// ancestor), like the PCIe half of `nvidia-smi topo -m`.
fn print_pcie_paths(nvml: &NvmlBackend, count: u32) {
    println!("PCIe common ancestor (rows and columns are GPU indices):");
    for a in 0..count {
        let row: Vec<String> = (0..count)
            .map(|b| match (a == b, nvml.pcie_path(a, b)) {
                (true, _) => "X".to_string(),
                (false, Some(level)) => format!("{level:?}"),
                (false, None) => "?".to_string(),
            })
            .collect();
        println!("GPU {a}: {}", row.join(" "));
    }
}

fn print_inventory(server: &NvidiaPlugin) {
    let state = server.state();
    let islands = nvlink_islands(&state.gpus);
    println!("{}", state.backend.describe());
    for g in &state.gpus {
        let peers: Vec<String> = g
            .nvlink_peers
            .iter()
            .filter_map(|p| state.gpu(&p.id).map(|o| format!("{}x{}", o.index, p.links)))
            .collect();
        println!(
            "GPU {} {} {} {} GiB cc {} numa {} pci {} root {} nvlink-island {} peers [{}]{}{}",
            g.index,
            g.id,
            g.model,
            g.memory_bytes >> 30,
            g.compute_capability,
            g.numa_node.map_or("-".into(), |n| n.to_string()),
            g.pci_bus_id,
            if g.pcie_root.is_empty() {
                "-"
            } else {
                &g.pcie_root
            },
            islands.get(&g.id).map_or("-", String::as_str),
            peers.join(" "),
            if g.mig_enabled { " MIG" } else { "" },
            if g.simulated { " SIMULATED" } else { "" },
        );
    }
}

async fn run(args: Args) -> Result<(), Error> {
    let mut config = PluginConfig::new(&args.plugin_dir, &args.resource_name);
    config.policy = XidPolicy::ignoring(args.ignore_xids.iter().copied());
    config.recheck_after = Duration::from_secs(args.recheck_secs);
    let (backend, nvml) = backend(&args)?;
    let server = NvidiaPlugin::new(config, backend)?;
    if args.list {
        print_inventory(&server);
        if let Some(nvml) = nvml {
            print_pcie_paths(&nvml, server.state().gpus.len() as u32);
        }
        return Ok(());
    }
    let state = server.state();
    for g in &state.gpus {
        tracing::info!(id = %g.id, index = g.index, model = %g.model, simulated = g.simulated, "GPU");
    }
    if state.backend.simulated() {
        tracing::warn!(backend = %state.backend.describe(), "serving SIMULATED GPUs: no real GPU backs these devices");
    } else {
        tracing::info!(backend = %state.backend.describe(), gpus = state.gpus.len(), "serving NVIDIA GPUs");
    }
    let cancel = CancellationToken::new();
    if let Some(addr) = &args.metrics_listen {
        let listener = metrics::http::bind(addr).await?;
        let pods = args
            .pod_resources_socket
            .as_ref()
            .map(|socket| PodResourcesSource::new(socket, &args.resource_name));
        let gpu_metrics = Arc::new(GpuMetrics::new(state.clone(), &metrics::hostname(), pods));
        let token = cancel.clone();
        tokio::spawn(async move {
            if let Err(error) = metrics::http::serve(listener, gpu_metrics, token).await {
                tracing::error!(%error, "metrics server stopped");
            }
        });
    }
    tokio::spawn(shutdown_on_signal(cancel.clone()));
    server.run(cancel).await
}

/// First SIGTERM/SIGINT stops gracefully; a second one exits at once.
async fn shutdown_on_signal(cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    for round in 0..2 {
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        if round == 0 {
            tracing::info!("shutting down");
            cancel.cancel();
        } else {
            std::process::exit(130);
        }
    }
}

/// Logs to stderr: `format` is `text` or `json`; `level` a filter (`info`, `debug`, ...),
/// overridden by `RUST_LOG` when set.
fn init_logging(format: &str, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(&args.log_format, &args.log_level);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cox-nvidia-plugin: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cox-nvidia-plugin: {e}");
            ExitCode::FAILURE
        }
    }
}
