//! `cox top nodes|pods|gpus`: what the cluster's nodes, pods and GPUs are doing, from the API's
//! state, redrawn every few seconds with `--watch`.
//!
//! `nodes` and `pods` show what is requested against what is allocatable (the scheduler's view);
//! `gpus` draws the GPU map, with each GPU's utilization and health where the node's agent
//! relays its GPU plugin's figures (`cox agent --gpu-metrics-url`), read through the API's
//! node proxy. CPU and memory usage is `kubectl top`'s (the `metrics.k8s.io` API).

mod gpu_figures;
mod gpus;
mod tables;
#[cfg(test)]
mod tests;

use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::resource::v1::ResourceSlice;
use reqwest::Method;
use serde::de::DeserializeOwned;

use super::api_client::{ApiClient, Target, block_on, resolve_kind, resource_path};

/// What `cox top` shows.
#[derive(Clone, Copy, ValueEnum)]
pub enum View {
    /// Per node: requested CPU, memory and GPUs against allocatable.
    Nodes,
    /// Per pod: node, phase, requests and the GPUs it holds.
    Pods,
    /// The GPU map: one row per node, one cell per GPU naming who holds it.
    Gpus,
}

/// Arguments of `cox top`.
#[derive(Args)]
pub struct TopArgs {
    /// `nodes`, `pods` or `gpus`.
    pub view: View,
    /// Pods of every namespace (`pods` view).
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Redraw every `--interval` seconds until interrupted.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Seconds between redraws with `--watch`.
    #[arg(long, default_value_t = 2)]
    pub interval: u64,
    #[command(flatten)]
    target: Target,
}

/// Runs `cox top`.
pub fn run(args: TopArgs) -> anyhow::Result<()> {
    block_on(top(args))
}

async fn top(args: TopArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.target)?;
    loop {
        let text = draw(&client, &args).await?;
        if args.watch {
            // Home the cursor and clear the screen, as `watch` does.
            print!("\x1b[H\x1b[2J{text}");
        } else {
            print!("{text}");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(args.interval.max(1))).await;
    }
}

async fn draw(client: &ApiClient, args: &TopArgs) -> anyhow::Result<String> {
    let nodes: Vec<Node> = list(client, "nodes", None).await?;
    Ok(match args.view {
        View::Gpus => {
            let slices: Vec<ResourceSlice> = list(client, "resourceslices", None).await?;
            let pods: Vec<Pod> = list(client, "pods", None).await?;
            let mut with_gpus: Vec<String> = slices
                .iter()
                .filter_map(|s| s.spec.node_name.clone())
                .collect();
            with_gpus.sort();
            with_gpus.dedup();
            let figures = gpu_figures::fetch(client, &with_gpus).await;
            gpus::render(&nodes, &slices, &pods, &figures)
        }
        View::Nodes => {
            let pods: Vec<Pod> = list(client, "pods", None).await?;
            tables::nodes(&nodes, &pods)
        }
        View::Pods => {
            let namespace = (!args.all_namespaces).then_some(client.namespace.as_str());
            let pods: Vec<Pod> = list(client, "pods", namespace).await?;
            tables::pods(&pods, args.all_namespaces)
        }
    })
}

async fn list<T: DeserializeOwned>(
    client: &ApiClient,
    kind: &str,
    namespace: Option<&str>,
) -> anyhow::Result<Vec<T>> {
    let kind = resolve_kind(kind)?;
    let path = resource_path(kind, namespace, None);
    let mut body = client
        .ok(Method::GET, &path, "application/json", None)
        .await?;
    let items = body["items"].take();
    serde_json::from_value(items).with_context(|| format!("reading the {} list", kind.plural))
}
