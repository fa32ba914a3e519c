//! Each node's GPU utilization and health for `cox top gpus`: the agent's `/metrics/gpus`
//! (the GPU plugin's figures relabelled to the device IDs the node advertises), read
//! through the API's node proxy.

use std::collections::BTreeMap;

use coxswain_api::prometheus_text;

use super::super::api_client::ApiClient;

/// What the node's GPU plugin says about one GPU.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GpuFigures {
    /// Utilization in percent.
    pub utilization: Option<f64>,
    /// Whether the plugin reports it healthy.
    pub healthy: Option<bool>,
}

/// Per node, per device ID. A node missing here has no figures.
pub type Figures = BTreeMap<String, BTreeMap<String, GpuFigures>>;

/// The figures in an agent's `/metrics/gpus` text, by device ID.
pub fn parse(text: &str) -> Result<BTreeMap<String, GpuFigures>, prometheus_text::ParseError> {
    let mut gpus: BTreeMap<String, GpuFigures> = BTreeMap::new();
    for sample in prometheus_text::parse(text)? {
        let Some(device) = sample.label("device_id") else {
            continue;
        };
        let figures = gpus.entry(device.to_string()).or_default();
        match sample.name.as_str() {
            "coxswain_node_gpu_utilization_percent" => figures.utilization = Some(sample.value),
            "coxswain_node_gpu_healthy" => figures.healthy = Some(sample.value != 0.0),
            _ => {}
        }
    }
    Ok(gpus)
}

/// The figures of each of `nodes`, asked of their agents at once; a node whose agent has
/// none (no `--gpu-metrics-url`, unreachable, unreadable) is left out.
pub async fn fetch(client: &ApiClient, nodes: &[String]) -> Figures {
    let asks = nodes.iter().map(|node| async move {
        let path = format!("/api/v1/nodes/{node}/proxy/metrics/gpus");
        let reply = client
            .send(reqwest::Method::GET, &path, "text/plain", None)
            .await
            .ok()
            .filter(|reply| reply.status.is_success())?;
        let gpus = parse(reply.body.as_str()?).ok()?;
        Some((node.clone(), gpus))
    });
    futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utilization_and_health_by_device_id() {
        let text = "\
# TYPE coxswain_node_gpu_utilization_percent gauge
coxswain_node_gpu_utilization_percent{device_id=\"GPU-a\",gpu=\"0\",resource=\"nvidia.com/gpu\"} 37
coxswain_node_gpu_healthy{device_id=\"GPU-a\",gpu=\"0\",resource=\"nvidia.com/gpu\"} 1
coxswain_node_gpu_healthy{device_id=\"GPU-b\",gpu=\"1\",resource=\"nvidia.com/gpu\"} 0
";
        let gpus = parse(text).unwrap();
        assert_eq!(
            gpus["GPU-a"],
            GpuFigures {
                utilization: Some(37.0),
                healthy: Some(true)
            }
        );
        assert_eq!(gpus["GPU-b"].healthy, Some(false));
        assert_eq!(gpus["GPU-b"].utilization, None);
        assert!(parse("x{device_id=\"a} 1\n").is_err());
    }
}
