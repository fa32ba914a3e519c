//! Runs the CSI conformance suite against any CSI driver's socket:
//!
//! ```text
//! cargo run -p coxswain-csi --example csi-conformance -- --endpoint unix:///run/csi/csi.sock
//! ```
//!
//! Staging and target paths go to a temporary directory (or `--work-dir`);
//! exits non-zero when a case fails.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use coxswain_csi::conformance::{self, Config};

/// CSI conformance suite (the spec's rules, as csi-sanity checks them).
#[derive(Debug, Parser)]
struct Args {
    /// The driver's endpoint, unix:///path/to/csi.sock.
    #[arg(long, env = "CSI_ENDPOINT")]
    endpoint: String,
    /// Directory for staging and target paths [default: a new temporary directory].
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Capacity of the volumes the suite creates, in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    volume_size: u64,
    /// CreateVolume parameter KEY=VALUE (repeatable).
    #[arg(long = "param", value_parser = parse_param)]
    params: Vec<(String, String)>,
    /// Run only cases whose name contains this.
    #[arg(long)]
    filter: Option<String>,
    /// Skip the checks that write through mounts (for drivers with simulated mounts).
    #[arg(long)]
    no_data_checks: bool,
}

fn parse_param(value: &str) -> Result<(String, String), String> {
    value
        .split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{value:?}: expected KEY=VALUE"))
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let tmp = tempfile::tempdir()?;
    let work_dir = args.work_dir.unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&work_dir)?;
    let mut config = Config::new(args.endpoint, work_dir);
    config.volume_size = args.volume_size;
    config.parameters = args.params.into_iter().collect::<HashMap<_, _>>();
    config.filter = args.filter;
    config.check_data = !args.no_data_checks;
    let report = conformance::run(config).await?;
    println!("{report}");
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
