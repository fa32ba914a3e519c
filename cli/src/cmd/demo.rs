//! `cox demo`: the main job on one machine, as far as coxswain is built today.
//!
//! It starts the control plane on the embedded store, submits the example `Queue`, `PodGroup` and
//! `TrainingJob` through the REST API (validated and defaulted like any client's), shows what the
//! server stored, replays the public openb GPU-cluster trace through the placement simulator to
//! show the scheduler's packing, and leaves the API running for kubectl and `cox get` until
//! Ctrl-C (`--exit` stops instead). What is not built yet is said plainly, not faked: no node
//! agent connects to the control plane yet, so the training job's pods do not run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use coxswain_control_plane::apiserver::{ApiServer, kubeconfig};
use coxswain_control_plane::sim::openb::{
    self, PolicyKind, RunSummary, Workload, replay,
    trace::{read_nodes, read_pods},
};
use coxswain_control_plane::store::{EmbeddedStore, Store};
use reqwest::Method;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::api_client::{ApiClient, Target, resource_path};
use super::apply::apply_value;

/// The example manifests, built into the binary so `cox demo` runs from anywhere.
const EXAMPLES: &[(&str, &str)] = &[
    (
        "examples/queue.yaml",
        include_str!("../../../examples/queue.yaml"),
    ),
    (
        "examples/podgroup.yaml",
        include_str!("../../../examples/podgroup.yaml"),
    ),
    (
        "examples/trainingjob.yaml",
        include_str!("../../../examples/trainingjob.yaml"),
    ),
];

/// Arguments of `cox demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Directory for the demo cluster's store and kubeconfig.
    #[arg(long, default_value = "/var/lib/coxswain/demo")]
    pub data_dir: PathBuf,
    /// Address of the API; a free loopback port is used when this one is taken.
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// Stop after the demo instead of serving until Ctrl-C.
    #[arg(long)]
    pub exit: bool,
}

/// Runs `cox demo`.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(demo(args))
}

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    println!("coxswain demo: a one-machine cluster\n");

    // 1. The control plane.
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let store_dir = args.data_dir.join("store");
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&store_dir).with_context(|| {
        format!(
            "opening the demo store in {} (is another `cox demo` running? stop it or pass \
             --data-dir)",
            store_dir.display()
        )
    })?);
    let shutdown = CancellationToken::new();
    let server = ApiServer::new(store, shutdown.clone()).await?;
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(_) => tokio::net::TcpListener::bind((args.listen.ip(), 0))
            .await
            .with_context(|| format!("listening on {}", args.listen.ip()))?,
    };
    let url = format!("http://{}", listener.local_addr()?);
    let kubeconfig_path = args.data_dir.join("kubeconfig");
    kubeconfig::write(&kubeconfig_path, &url)
        .with_context(|| format!("writing {}", kubeconfig_path.display()))?;
    let served = tokio::spawn(server.serve(listener));
    step(&format!(
        "control plane: API on {url}, embedded store in {}",
        store_dir.display()
    ));

    // 2. The example training job, through the REST API like any client.
    let client = ApiClient::new(&Target {
        kubeconfig: Some(kubeconfig_path.clone()),
        namespace: None,
    })?;
    for (origin, text) in EXAMPLES {
        submit(&client, origin, text).await?;
    }
    show_training_jobs(&client).await?;
    println!(
        "  not built yet: no node agent connects to the control plane (issue 4) and the \
         TrainingJob controller (issue 8) is missing, so the job stays pending; nothing runs."
    );

    // 3. The scheduler's packing on a real cluster trace.
    replay_trace(&openb::data_dir())?;

    // 4. Leave the cluster up.
    println!("\nreach the cluster:");
    println!("  export KUBECONFIG={}", kubeconfig_path.display());
    println!("  cox get trainingjobs      # or: kubectl get tj");
    println!("  cox describe trainingjob <name>");
    if args.exit {
        shutdown.cancel();
        served.await.context("the API server task failed")??;
        println!("\ncox demo: done (--exit)");
        return Ok(());
    }
    println!("\nserving until Ctrl-C");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    shutdown.cancel();
    served.await.context("the API server task failed")??;
    Ok(())
}

/// Applies every object of one manifest (server-side apply, so a second run updates).
async fn submit(client: &ApiClient, origin: &str, text: &str) -> anyhow::Result<()> {
    let objects =
        coxswain_api::decode(text.as_bytes()).map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
    for object in objects {
        let applied = apply_value(client, &object.to_json_value()?, origin, "cox-demo").await?;
        step(&format!(
            "{}/{} {} (resourceVersion {})",
            applied.kind.singular,
            applied.name,
            applied.verb(),
            applied.object["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("?")
        ));
    }
    Ok(())
}

/// Prints the server's table of training jobs, as `cox get tj` would.
async fn show_training_jobs(client: &ApiClient) -> anyhow::Result<()> {
    let kind = coxswain_api::registry::resolve("trainingjobs")
        .context("trainingjobs missing from the registry")?;
    let table = client
        .ok(
            Method::GET,
            &resource_path(kind, None, None),
            "application/json;as=Table;v=v1;g=meta.k8s.io",
            None,
        )
        .await?;
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .map(|c| c.iter().filter_map(|d| d["name"].as_str()).collect())
        .unwrap_or_default();
    println!("\n  {}", columns.join("\t").to_uppercase());
    for row in table["rows"].as_array().into_iter().flatten() {
        let cells: Vec<String> = row["cells"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|cell| match cell {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        println!("  {}", cells.join("\t"));
    }
    println!();
    Ok(())
}

/// Replays the openb default trace (seed 42) under BestFit and FGD.
fn replay_trace(data: &Path) -> anyhow::Result<()> {
    let nodes_csv = data.join("csv/openb_node_list_gpu_node.csv");
    let pods_csv = data.join("csv/openb_pod_list_default.csv");
    if !nodes_csv.exists() || !pods_csv.exists() {
        println!(
            "\nplacement simulator: skipped, the openb traces are not at {} (set {})",
            data.display(),
            openb::DATA_DIR_ENV
        );
        return Ok(());
    }
    step("placement simulator: replaying the Alibaba openb trace (1,213 nodes, 6,212 GPUs)");
    let nodes = read_nodes(&nodes_csv)?;
    let pods = read_pods(&pods_csv)?;
    let workload = Workload::generate(nodes, pods, 1.3, 42);
    for policy in [PolicyKind::BestFit, PolicyKind::Fgd] {
        let started = Instant::now();
        let result = replay(&workload, policy);
        let summary = RunSummary::new(
            "openb_pod_list_default",
            &workload,
            policy,
            1.3,
            42,
            &result,
        );
        let unallocated = summary
            .unallocated(100)
            .map_or("?".into(), |h| format!("{}.{:02}", h / 100, h % 100));
        println!(
            "  {:<8} {:>6} % of GPUs unallocated at 100 % arrived load ({} pods, {} failed, {:.1} s)",
            policy.short_name(),
            unallocated,
            summary.submissions,
            summary.failed,
            started.elapsed().as_secs_f64()
        );
    }
    println!("  (the paper's published means over 10 seeds: BestFit 7.14, FGD 4.77)");
    Ok(())
}

fn step(message: &str) {
    println!("✓ {message}");
}
