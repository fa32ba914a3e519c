//! The background scraper behind the metrics API, as metrics-server runs it: every
//! `resolution` it lists the Nodes (through the API, like every other control loop) and
//! fetches each agent's `/metrics/resource` at the address the Node reports, keeping the
//! last two scrapes per node in a [`ScrapeCache`].

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use tokio_util::sync::CancellationToken;

use super::samples::{ScrapeCache, parse};
use crate::apiserver::agent_address::agent_address;

/// How the scraper runs.
#[derive(Debug, Clone)]
pub struct ScraperConfig {
    /// Time between two scrapes of a node (`cox server --metrics-resolution`).
    pub resolution: Duration,
}

impl Default for ScraperConfig {
    fn default() -> Self {
        Self {
            resolution: Duration::from_secs(15),
        }
    }
}

/// Scrapes every node into `cache` each `config.resolution` until `shutdown`.
pub async fn run(
    client: kube::Client,
    cache: Arc<ScrapeCache>,
    config: ScraperConfig,
    shutdown: CancellationToken,
) {
    let http = match reqwest::Client::builder()
        .timeout(config.resolution.max(Duration::from_secs(1)))
        .build()
    {
        Ok(http) => http,
        Err(e) => {
            tracing::error!("metrics scraper: building the HTTP client: {e}");
            return;
        }
    };
    let nodes: Api<Node> = Api::all(client);
    let mut tick = tokio::time::interval(config.resolution);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let list = match nodes.list(&ListParams::default()).await {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!("metrics scraper: listing nodes: {e}");
                continue;
            }
        };
        let names: Vec<String> = list
            .items
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        cache.retain(&names);
        let scrapes = list.items.iter().map(|node| scrape(&http, &cache, node));
        futures::future::join_all(scrapes).await;
    }
}

async fn scrape(http: &reqwest::Client, cache: &ScrapeCache, node: &Node) {
    let name = node.metadata.name.clone().unwrap_or_default();
    let address = match serde_json::to_value(node)
        .map_err(|e| e.to_string())
        .and_then(|value| agent_address(&value).map_err(|e| e.to_string()))
    {
        Ok(address) => address,
        Err(e) => {
            tracing::debug!(node = %name, "metrics scraper: {e}");
            return;
        }
    };
    let url = format!("http://{address}/metrics/resource");
    let fetched = async {
        let response = http.get(&url).send().await?.error_for_status()?;
        response.text().await
    };
    let text = match fetched.await {
        Ok(text) => text,
        Err(e) => {
            tracing::warn!(node = %name, "metrics scraper: {url}: {e}");
            return;
        }
    };
    let now_ms = jiff::Timestamp::now().as_millisecond();
    match parse(&text, now_ms) {
        Ok(scrape) => cache.record(&name, scrape),
        Err(e) => tracing::warn!(node = %name, "metrics scraper: {url}: {e}"),
    }
}
