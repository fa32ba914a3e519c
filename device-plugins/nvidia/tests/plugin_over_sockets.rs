//! The plugin against a fake kubelet over real Unix sockets: registration,
//! ListAndWatch, XID injection and recovery, Allocate, preferred allocation,
//! attributes, and re-registration after the socket directory is wiped.

mod common;

use common::{FakeKubelet, WAIT, channel, start_plugin};
use coxswain_nvidia_plugin::topology::Topology;
use coxswain_proto::deviceplugin::v1alpha1::device_attributes_client::DeviceAttributesClient;
use coxswain_proto::deviceplugin::v1alpha1::simulated_gpu_control_client::SimulatedGpuControlClient;
use coxswain_proto::deviceplugin::v1alpha1::{
    GetDeviceAttributesRequest, InjectXidRequest, RecoverRequest,
};
use coxswain_proto::deviceplugin::v1beta1::device_plugin_client::DevicePluginClient;
use coxswain_proto::deviceplugin::v1beta1::{
    AllocateRequest, ContainerAllocateRequest, ContainerPreferredAllocationRequest, Empty,
    ListAndWatchResponse, PreferredAllocationRequest,
};
use tonic::Streaming;

async fn next(stream: &mut Streaming<ListAndWatchResponse>) -> ListAndWatchResponse {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("no ListAndWatch update within 10 s")
        .unwrap()
        .expect("stream ended")
}

fn health_of(list: &ListAndWatchResponse, id: &str) -> String {
    list.devices
        .iter()
        .find(|d| d.id == id)
        .unwrap()
        .health
        .clone()
}

fn allocate_request(ids: &[&str]) -> AllocateRequest {
    AllocateRequest {
        container_requests: vec![ContainerAllocateRequest {
            devices_ids: ids.iter().map(|s| s.to_string()).collect(),
        }],
    }
}

#[tokio::test]
async fn registers_with_the_expected_request() {
    let plugin = start_plugin(Topology::DgxH100);
    let mut kubelet = FakeKubelet::start(&plugin.plugin_dir);
    let req = kubelet.next_registration().await;
    assert_eq!(req.version, "v1beta1");
    assert_eq!(req.endpoint, "nvidia-gpu.sock");
    assert_eq!(req.resource_name, "nvidia.com/gpu");
    let options = req.options.unwrap();
    assert!(options.get_preferred_allocation_available);
    assert!(!options.pre_start_required);
    assert!(plugin.plugin_dir.join(&req.endpoint).exists());

    let mut client = DevicePluginClient::new(channel(&plugin.socket).await);
    let served = client
        .get_device_plugin_options(Empty {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(served, options);
    plugin.cancel.cancel();
    plugin.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn xid_marks_unhealthy_and_recovery_brings_it_back() {
    let plugin = start_plugin(Topology::DgxH100);
    let ch = channel(&plugin.socket).await;
    let mut dp = DevicePluginClient::new(ch.clone());
    let mut control = SimulatedGpuControlClient::new(ch);
    let mut stream = dp.list_and_watch(Empty {}).await.unwrap().into_inner();

    let initial = next(&mut stream).await;
    assert_eq!(initial.devices.len(), 8);
    assert!(initial.devices.iter().all(|d| d.health == "Healthy"));
    let numa: Vec<i64> = initial
        .devices
        .iter()
        .map(|d| d.topology.as_ref().unwrap().nodes[0].id)
        .collect();
    assert_eq!(numa, [0, 0, 0, 0, 1, 1, 1, 1]);

    let gpu2 = plugin.state.gpus[2].id.clone();
    let gpu3 = plugin.state.gpus[3].id.clone();
    // An application XID leaves the GPU in service.
    let ignored = control
        .inject_xid(InjectXidRequest {
            device_id: gpu3.clone(),
            xid: 13,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!ignored.marked_unhealthy);
    let critical = control
        .inject_xid(InjectXidRequest {
            device_id: gpu2.clone(),
            xid: 79,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(critical.marked_unhealthy);
    let update = next(&mut stream).await;
    assert_eq!(health_of(&update, &gpu2), "Unhealthy");
    assert_eq!(health_of(&update, &gpu3), "Healthy");

    let refused = dp.allocate(allocate_request(&[&gpu2])).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(refused.message().contains(&gpu2), "{}", refused.message());

    // Still faulted at re-check: stays unhealthy until recovered.
    control
        .recover(RecoverRequest {
            device_id: gpu2.clone(),
        })
        .await
        .unwrap();
    let recovered = next(&mut stream).await;
    assert_eq!(health_of(&recovered, &gpu2), "Healthy");
    dp.allocate(allocate_request(&[&gpu2])).await.unwrap();

    let unknown = control
        .inject_xid(InjectXidRequest {
            device_id: "GPU-nope".into(),
            xid: 79,
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    plugin.cancel.cancel();
    plugin.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn allocate_returns_nodes_env_and_refuses_unknown_ids() {
    let plugin = start_plugin(Topology::Pcie4x);
    let mut dp = DevicePluginClient::new(channel(&plugin.socket).await);
    let (g0, g1) = (&plugin.state.gpus[0], &plugin.state.gpus[1]);
    let resp = dp
        .allocate(allocate_request(&[&g0.id, &g1.id]))
        .await
        .unwrap()
        .into_inner();
    let c = &resp.container_responses[0];
    let dev = plugin.dir.path().join("simulated-dev");
    let specs: Vec<(String, String, String)> = c
        .devices
        .iter()
        .map(|d| {
            (
                d.host_path.clone(),
                d.container_path.clone(),
                d.permissions.clone(),
            )
        })
        .collect();
    let host = |n: &str| dev.join(n).display().to_string();
    assert_eq!(
        specs,
        [
            (host("nvidia0"), "/dev/nvidia0".into(), "rw".into()),
            (host("nvidia1"), "/dev/nvidia1".into(), "rw".into()),
            (host("nvidiactl"), "/dev/nvidiactl".into(), "rw".into()),
        ]
    );
    let both = format!("{},{}", g0.id, g1.id);
    assert_eq!(c.envs["NVIDIA_VISIBLE_DEVICES"], both);
    assert_eq!(c.envs["CUDA_VISIBLE_DEVICES"], both);
    assert_eq!(c.envs["COXSWAIN_SIMULATED_GPUS"], "true");
    assert_eq!(c.annotations["coxswain.dev/simulated-gpus"], "true");
    assert!(c.mounts.is_empty() && c.cdi_devices.is_empty());

    let err = dp
        .allocate(allocate_request(&[&g0.id, "GPU-missing"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("GPU-missing"), "{}", err.message());
    let empty = dp.allocate(allocate_request(&[])).await.unwrap_err();
    assert_eq!(empty.code(), tonic::Code::InvalidArgument);
    plugin.cancel.cancel();
}

#[tokio::test]
async fn preferred_allocation_and_attributes_over_grpc() {
    let plugin = start_plugin(Topology::Pcie8xNvlinkPairs);
    let ch = channel(&plugin.socket).await;
    let ids: Vec<String> = plugin.state.gpus.iter().map(|g| g.id.clone()).collect();
    let resp = DevicePluginClient::new(ch.clone())
        .get_preferred_allocation(PreferredAllocationRequest {
            container_requests: vec![ContainerPreferredAllocationRequest {
                available_device_i_ds: vec![
                    ids[0].clone(),
                    ids[2].clone(),
                    ids[3].clone(),
                    ids[5].clone(),
                ],
                must_include_device_i_ds: vec![],
                allocation_size: 2,
            }],
        })
        .await
        .unwrap()
        .into_inner();
    let mut chosen = resp.container_responses[0].device_i_ds.clone();
    chosen.sort();
    assert_eq!(chosen, [ids[2].clone(), ids[3].clone()]);

    let attrs = DeviceAttributesClient::new(ch)
        .get_device_attributes(GetDeviceAttributesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(attrs.resource_name, "nvidia.com/gpu");
    assert_eq!(attrs.devices.len(), 8);
    let d5 = &attrs.devices[5];
    assert!(d5.simulated);
    assert_eq!(d5.model, "NVIDIA A100 80GB PCIe");
    assert_eq!(d5.numa_node, 1);
    assert_eq!(d5.nvlink_island, attrs.devices[4].nvlink_island);
    assert_ne!(d5.nvlink_island, attrs.devices[6].nvlink_island);
    assert_eq!(d5.nvlink_peers.len(), 1);
    assert_eq!(d5.nvlink_peers[0].id, ids[4]);
    assert!(d5.device_nodes[0].ends_with("/nvidia5"));
    plugin.cancel.cancel();
}

#[tokio::test]
async fn reregisters_after_the_socket_directory_is_wiped() {
    let plugin = start_plugin(Topology::Dgx1V100);
    let mut kubelet = FakeKubelet::start(&plugin.plugin_dir);
    kubelet.next_registration().await;

    // The agent restarts: kubelet.sock is recreated, the plugin socket stays.
    kubelet.stop();
    let mut restarted = FakeKubelet::start(&plugin.plugin_dir);
    assert_eq!(
        restarted.next_registration().await.endpoint,
        "nvidia-gpu.sock"
    );

    // The whole directory is wiped, then the agent comes back.
    restarted.stop();
    std::fs::remove_dir_all(&plugin.plugin_dir).unwrap();
    let mut fresh = FakeKubelet::start(&plugin.plugin_dir);
    let req = fresh.next_registration().await;
    assert_eq!(req.resource_name, "nvidia.com/gpu");
    // The plugin serves a fresh socket at the same path.
    let mut dp = DevicePluginClient::new(channel(&plugin.socket).await);
    let mut stream = dp.list_and_watch(Empty {}).await.unwrap().into_inner();
    assert_eq!(next(&mut stream).await.devices.len(), 8);
    plugin.cancel.cancel();
    plugin.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn refused_registration_stops_the_plugin_with_the_reason() {
    let plugin = start_plugin(Topology::Pcie4x);
    let mut kubelet = FakeKubelet::start_refusing(&plugin.plugin_dir);
    kubelet.next_registration().await;
    let err = tokio::time::timeout(WAIT, plugin.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("kubelet.sock") && text.contains("already registered"),
        "{text}"
    );
}
