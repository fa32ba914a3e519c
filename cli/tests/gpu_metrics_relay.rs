//! The agent relays its GPU plugin's figures: a one-node cluster with `cox-nvidia-plugin
//! --simulate dgx-h100 --metrics-listen` and `cox agent --gpu-metrics-url`; the agent's
//! `/metrics/gpus`, read through the API's node proxy, has every GPU the node advertises
//! in its ResourceSlice — under the device ID and index of the slice — with the plugin's
//! synthetic utilization for that GPU, and `cox top gpus` shows the utilization. Needs root
//! (the agent runs as on a node).

mod cluster;
#[path = "shared/kubectl_path.rs"]
mod kubectl_path;

use std::collections::BTreeMap;
use std::process::Command;

use cluster::{Cluster, NODE};
use coxswain_api::devices::gpus_from_slice;
use coxswain_api::prometheus_text::{Sample, parse};
use k8s_openapi::api::resource::v1::ResourceSlice;
use kubectl_path::kubectl_path;
use serde_json::Value;

/// `GET path` through kubectl, if it answered.
fn raw(cluster: &Cluster, path: &str) -> Option<String> {
    let out = Command::new(kubectl_path())
        .args(["get", "--raw", path])
        .env("KUBECONFIG", &cluster.kubeconfig)
        .output()
        .expect("KUBECTL IS MISSING: scripts/setup.sh installs kubectl 1.37");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The plugin's `DCGM_FI_DEV_GPU_UTIL` by `UUID`, read directly.
fn plugin_utilization(url: &str) -> BTreeMap<String, f64> {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let text = runtime
        .block_on(async { reqwest::get(url).await?.text().await })
        .expect("the plugin's /metrics answers");
    parse(&text)
        .expect("the plugin's metrics parse")
        .into_iter()
        .filter(|s| s.name == "DCGM_FI_DEV_GPU_UTIL")
        .map(|s| (s.label("UUID").unwrap_or_default().to_string(), s.value))
        .collect()
}

fn relayed<'a>(samples: &'a [Sample], name: &str, device: &str) -> Option<&'a Sample> {
    samples
        .iter()
        .find(|s| s.name == name && s.label("device_id") == Some(device))
}

#[test]
fn the_agent_relays_the_plugins_utilization_under_the_advertised_device_ids() {
    let cluster = Cluster::start_with_gpus("dgx-h100");
    let plugin_url = cluster.gpu_metrics_url.clone().expect("a GPU cluster");

    let slices: Value = serde_json::from_str(&cluster.ok(&["get", "resourceslices", "-o", "json"]))
        .expect("resource slices JSON");
    let mut advertised = Vec::new();
    for item in slices["items"].as_array().into_iter().flatten() {
        let slice: ResourceSlice = serde_json::from_value(item.clone()).expect("a ResourceSlice");
        advertised.extend(gpus_from_slice(&slice).expect("a GPU slice"));
    }
    assert_eq!(advertised.len(), 8, "dgx-h100 advertises 8 GPUs");

    let path = format!("/api/v1/nodes/{NODE}/proxy/metrics/gpus");
    let (before, text, after) = cluster.eventually("the agent to relay the GPU figures", || {
        let before = plugin_utilization(&plugin_url);
        let text = raw(&cluster, &path)?;
        let after = plugin_utilization(&plugin_url);
        text.contains("device_id").then_some((before, text, after))
    });
    let samples = parse(&text).expect("/metrics/gpus parses");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("PROMTOOL IS MISSING: scripts/setup.sh installs Debian's prometheus package");
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), text.as_bytes())
        .expect("promtool reads stdin");
    let checked = promtool.wait_with_output().expect("promtool runs");
    assert!(
        checked.status.success(),
        "promtool on /metrics/gpus: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    for gpu in &advertised {
        let util = relayed(&samples, "coxswain_node_gpu_utilization_percent", &gpu.uuid)
            .unwrap_or_else(|| panic!("no utilization for {}: {samples:?}", gpu.uuid));
        assert_eq!(util.label("gpu"), Some(gpu.index.to_string().as_str()));
        assert_eq!(util.label("resource"), Some("nvidia.com/gpu"));
        // The plugin's reading of the same GPU, taken just before and just after (the
        // synthetic curve moves at most ~2.4 %/s).
        let (a, b) = (before[&gpu.uuid], after[&gpu.uuid]);
        assert!(
            util.value >= a.min(b) - 1.0 && util.value <= a.max(b) + 1.0,
            "{}: relayed {} but the plugin read {a} then {b}",
            gpu.uuid,
            util.value
        );
        let healthy = relayed(&samples, "coxswain_node_gpu_healthy", &gpu.uuid)
            .unwrap_or_else(|| panic!("no health for {}", gpu.uuid));
        assert_eq!(healthy.value, 1.0);
    }
    // Nothing but the advertised GPUs.
    assert_eq!(samples.len(), 2 * advertised.len(), "{samples:?}");

    let top = cluster.ok(&["top", "gpus"]);
    let row = top
        .lines()
        .find(|l| l.starts_with(NODE))
        .unwrap_or_else(|| panic!("no {NODE} row in\n{top}"));
    assert_eq!(row.matches('%').count(), 9, "8 GPUs and the average: {row}");
    assert!(!top.contains("no GPU utilization from"), "{top}");
}
