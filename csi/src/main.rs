//! `cox-csi`: coxswain's CSI driver for node-local volumes. Serves Identity,
//! Controller and Node on `CSI_ENDPOINT` (`unix:///path`); keeps volumes and
//! its state under `--state-dir`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use coxswain_csi::driver::parse_bytes;
use coxswain_csi::metrics::{self, CsiMetrics};
use coxswain_csi::mounter::SystemMounter;
use coxswain_csi::{DRIVER_NAME, Driver, DriverConfig, Error, endpoint, server};
use tokio::signal::unix::{SignalKind, signal};

/// CSI v1 driver for node-local volumes (loop-mounted ext4 images or directories).
#[derive(Debug, Parser)]
#[command(name = "cox-csi", version)]
struct Args {
    /// Log format: `text` or `json` (one JSON object per line).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Log level or filter (`info`, `debug`, ...); `RUST_LOG` wins when set.
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Endpoint to serve on, unix:///path/to/csi.sock.
    #[arg(long, env = "CSI_ENDPOINT")]
    endpoint: String,
    /// This node's ID [default: the host name].
    #[arg(long, env = "NODE_ID")]
    node_id: Option<String>,
    /// Where volume records, image files and directory volumes live.
    #[arg(long, default_value = "/var/lib/coxswain/csi")]
    state_dir: PathBuf,
    /// Bytes this node may provision (suffixes Ki, Mi, Gi, Ti) [default: free space of --state-dir].
    #[arg(long, value_parser = parse_bytes)]
    capacity: Option<u64>,
    /// Size of a volume whose request gives no capacity range.
    #[arg(long, value_parser = parse_bytes, default_value = "1Gi")]
    default_size: u64,
    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9808 [default: off].
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}

async fn run(args: Args) -> Result<(), Error> {
    let socket = endpoint::socket_path(&args.endpoint)?;
    let mounter = Arc::new(SystemMounter);
    if let Err(e) = coxswain_csi::mounter::Mounter::check(mounter.as_ref()) {
        // Keep serving: Probe reports the same error to the CO.
        tracing::error!(error = %e, "driver is not ready");
    }
    let mut config = DriverConfig::new(args.node_id.unwrap_or_else(hostname), args.state_dir);
    config.name = DRIVER_NAME.to_string();
    config.capacity_bytes = args.capacity;
    config.default_size_bytes = args.default_size;
    let driver = Driver::open(config, mounter)?;
    let metrics = Arc::new(CsiMetrics::new());
    if let Some(addr) = &args.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::io(format!("metrics listener {addr} (--metrics-listen)"), e))?;
        tracing::info!(%addr, "serving /metrics");
        let (metrics, driver) = (metrics.clone(), driver.clone());
        tokio::spawn(async move {
            if let Err(error) = metrics::http::serve(listener, metrics, driver).await {
                tracing::error!(%error, "metrics server stopped");
            }
        });
    }
    let mut term = signal(SignalKind::terminate()).map_err(|e| Error::io("SIGTERM handler", e))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| Error::io("SIGINT handler", e))?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutting down: finishing requests in flight");
    };
    server::serve_metered(driver, &socket, metrics, shutdown).await
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

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(&args.log_format, &args.log_level);
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cox-csi: {e}");
            ExitCode::FAILURE
        }
    }
}
