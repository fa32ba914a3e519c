//! A GPU turning unhealthy under a running pod, end to end: a real control plane
//! (in-process API server and node service on a loopback port), a real agent with
//! its device manager, the REAL `cox-nvidia-plugin --simulate`, and a busybox pod on
//! runc holding one GPU. An XID injected into the plugin must show up through the
//! API as the pod's `coxswain.dev/DevicesHealthy=False` condition naming the GPU,
//! `allocatedResourcesStatus` Unhealthy, a `Warning DeviceUnhealthy` Event on the
//! pod and one on the node, and the node's allocatable dropping; recovery brings
//! the condition back to True with a `Normal DeviceRecovered` Event. RecordEvent
//! refuses objects that are not the agent's. Needs root, runc and busybox-static.

mod common;
mod devices_support;

use std::path::PathBuf;
use std::time::Duration;

use common::Harness;
use common::control_plane::{ControlPlane, eventually};
use coxswain_api::k8s::Pod;
use coxswain_control_plane::nodeservice::NodeServiceConfig;
use coxswain_node_agent::AgentConfig;
use coxswain_node_agent::agent::{AgentDaemonConfig, NodeAgent, worker_deps};
use coxswain_node_agent::runtime::RuntimeKind;
use coxswain_proto::node::v1alpha1::node_service_client::NodeServiceClient;
use coxswain_proto::node::v1alpha1::{InvolvedObject, RecordEventRequest};
use devices_support::Plugin;
use k8s_openapi::api::core::v1::{Event, Node};
use kube::api::{Api, ListParams, PostParams};
use tokio_util::sync::CancellationToken;

const NODE: &str = "gpu-node";

/// The pod's DevicesHealthy condition: (status, reason, message).
fn devices_healthy(pod: &Pod) -> Option<(String, String, String)> {
    let c = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "coxswain.dev/DevicesHealthy")?;
    Some((
        c.status.clone(),
        c.reason.clone().unwrap_or_default(),
        c.message.clone().unwrap_or_default(),
    ))
}

/// `allocatedResourcesStatus` of the pod's first container: (name, [(id, health)]).
fn resource_health(pod: &Pod) -> Vec<(String, Vec<(String, String)>)> {
    let Some(cs) = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
    else {
        return Vec::new();
    };
    cs.allocated_resources_status
        .iter()
        .flatten()
        .map(|r| {
            let devices = r
                .resources
                .iter()
                .flatten()
                .map(|h| (h.resource_id.clone(), h.health.clone().unwrap_or_default()))
                .collect();
            (r.name.clone(), devices)
        })
        .collect()
}

/// Events about `name` with `reason`, found with a field selector as kubectl does.
async fn events_about(client: &kube::Client, name: &str, reason: &str) -> Vec<Event> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let params = ListParams::default().fields(&format!("involvedObject.name={name}"));
    events
        .list(&params)
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .collect()
}

async fn allocatable_gpus(client: &kube::Client) -> Option<String> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = nodes.get_opt(NODE).await.ok()??;
    Some(node.status?.allocatable?.get("nvidia.com/gpu")?.0.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unhealthy_gpu_gives_its_pod_a_condition_and_events_through_the_api() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_test_writer()
        .try_init();
    let h = Harness::new(RuntimeKind::Runc);
    let cp = ControlPlane::start(NodeServiceConfig::default()).await;
    let plugin_dir = h.dir.path().join("device-plugins");
    let plugin = Plugin::spawn(&plugin_dir, "dgx-h100");

    let mut config = AgentConfig::new(h.deps.config.root.clone());
    config.cgroup_root = h.cgroup_root.clone();
    let shim = PathBuf::from(env!("CARGO_BIN_EXE_coxswain-shim"));
    let deps = worker_deps(&config, Some(h.kind), shim).unwrap();
    let mut daemon = AgentDaemonConfig::new(&cp.url, NODE);
    daemon.logs_listen = "127.0.0.1:0".parse().unwrap();
    daemon.lease_interval = Duration::from_secs(1);
    daemon.device_plugin_dir = Some(plugin_dir.clone());
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let agent = tokio::spawn(async move { NodeAgent::new(daemon, deps).run(stop).await.unwrap() });

    eventually("8 allocatable GPUs on the node", || async {
        (allocatable_gpus(&cp.client).await.as_deref() == Some("8")).then_some(())
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(cp.client.clone(), "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "trainer", "namespace": "default"},
        "spec": {
            "nodeName": NODE,
            "restartPolicy": "Never",
            "containers": [{
                "name": "train", "image": "busybox", "command": ["sleep", "3600"],
                "resources": {"limits": {"nvidia.com/gpu": "1"}},
            }],
        },
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();

    // Running, with its GPU reported healthy.
    let gpu = eventually("the pod running with a healthy GPU", || async {
        let pod = pods.get_opt("trainer").await.ok()??;
        let (status, _, _) = devices_healthy(&pod)?;
        let health = resource_health(&pod);
        let [(name, devices)] = health.as_slice() else {
            return None;
        };
        let [(id, state)] = devices.as_slice() else {
            return None;
        };
        let running = pod.status.as_ref()?.phase.as_deref() == Some("Running");
        (running && status == "True" && name == "nvidia.com/gpu" && state == "Healthy")
            .then(|| id.clone())
    })
    .await;
    assert!(gpu.starts_with("GPU-"), "{gpu}");

    plugin.inject_xid(&gpu, 79).await;

    let (_, reason, message) = eventually("the DevicesHealthy=False condition", || async {
        let pod = pods.get_opt("trainer").await.ok()??;
        let condition = devices_healthy(&pod)?;
        (condition.0 == "False").then_some(condition)
    })
    .await;
    assert_eq!(reason, "DeviceUnhealthy");
    assert!(message.contains(&gpu), "{message}");
    let pod_now = pods.get("trainer").await.unwrap();
    assert_eq!(
        resource_health(&pod_now),
        [(
            "nvidia.com/gpu".to_string(),
            vec![(gpu.clone(), "Unhealthy".to_string())]
        )]
    );
    let warning = eventually("a DeviceUnhealthy Event on the pod", || async {
        events_about(&cp.client, "trainer", "DeviceUnhealthy")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    assert_eq!(warning.involved_object.kind.as_deref(), Some("Pod"));
    assert_eq!(warning.involved_object.uid, pod_now.metadata.uid);
    assert!(
        warning
            .message
            .as_deref()
            .unwrap_or_default()
            .contains(&gpu)
    );
    assert_eq!(
        warning.source.as_ref().and_then(|s| s.host.as_deref()),
        Some(NODE)
    );
    let on_node = eventually("a DeviceUnhealthy Event on the node", || async {
        events_about(&cp.client, NODE, "DeviceUnhealthy")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(on_node.involved_object.kind.as_deref(), Some("Node"));
    let text = on_node.message.unwrap_or_default();
    assert!(
        text.contains(&gpu) && text.contains("default/trainer"),
        "{text}"
    );
    eventually("allocatable 7 on the node", || async {
        (allocatable_gpus(&cp.client).await.as_deref() == Some("7")).then_some(())
    })
    .await;

    plugin.recover(&gpu).await;
    eventually("DevicesHealthy=True again", || async {
        let pod = pods.get_opt("trainer").await.ok()??;
        let (status, reason, _) = devices_healthy(&pod)?;
        (status == "True" && reason == "DevicesHealthy").then_some(())
    })
    .await;
    let recovered = eventually("a DeviceRecovered Event on the pod", || async {
        events_about(&cp.client, "trainer", "DeviceRecovered")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(recovered.type_.as_deref(), Some("Normal"));

    // RecordEvent speaks only for the agent's own node and pods.
    let mut client = NodeServiceClient::connect(cp.url.clone()).await.unwrap();
    let request = |object: InvolvedObject| RecordEventRequest {
        node_name: NODE.into(),
        involved_object: Some(object),
        r#type: "Warning".into(),
        reason: "Test".into(),
        message: "m".into(),
    };
    let elsewhere: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "elsewhere", "namespace": "default"},
        "spec": {"nodeName": "other-node", "containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &elsewhere)
        .await
        .unwrap();
    let cases = [
        (
            coxswain_node_agent::devices::pod_object("default", "elsewhere", ""),
            tonic::Code::FailedPrecondition,
        ),
        (
            coxswain_node_agent::devices::node_object("other-node"),
            tonic::Code::PermissionDenied,
        ),
        (
            InvolvedObject {
                kind: "Secret".into(),
                namespace: "default".into(),
                name: "s".into(),
                uid: String::new(),
            },
            tonic::Code::PermissionDenied,
        ),
        (
            coxswain_node_agent::devices::pod_object("default", "trainer", "not-its-uid"),
            tonic::Code::FailedPrecondition,
        ),
    ];
    for (object, code) in cases {
        let what = format!("{object:?}");
        let err = client.record_event(request(object)).await.unwrap_err();
        assert_eq!(err.code(), code, "{what}: {}", err.message());
    }
    let mut bad_type = request(coxswain_node_agent::devices::node_object(NODE));
    bad_type.r#type = "Loud".into();
    let err = client.record_event(bad_type).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("type"), "{}", err.message());

    shutdown.cancel();
    agent.await.unwrap();
}
