//! The device manager against a small in-test tonic plugin on real Unix sockets:
//! refused registrations (wrong version, duplicate live plugin), a plugin built for
//! Kubernetes (no `DeviceAttributes`: `Unimplemented` is tolerated), options asking
//! for `PreStartContainer`, and an `Allocate` that fails. No root needed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coxswain_api::k8s::{Container, Pod};
use coxswain_node_agent::devices::{DeviceInventory, DeviceManager, DeviceManagerConfig};
use coxswain_proto::deviceplugin::v1beta1::device_plugin_server::{
    DevicePlugin, DevicePluginServer,
};
use coxswain_proto::deviceplugin::v1beta1::registration_client::RegistrationClient;
use coxswain_proto::deviceplugin::v1beta1::{
    AllocateRequest, AllocateResponse, ContainerAllocateResponse, Device, DevicePluginOptions,
    Empty, ListAndWatchResponse, PreStartContainerRequest, PreStartContainerResponse,
    PreferredAllocationRequest, PreferredAllocationResponse, RegisterRequest,
};
use hyper_util::rt::TokioIo;
use tokio_stream::Stream;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

const WAIT: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Calls {
    allocate: Vec<Vec<String>>,
    pre_start: Vec<Vec<String>>,
}

struct FakePlugin {
    options: DevicePluginOptions,
    devices: Vec<&'static str>,
    fail_allocate: bool,
    calls: Arc<Mutex<Calls>>,
}

type ListStream = Pin<Box<dyn Stream<Item = Result<ListAndWatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DevicePlugin for FakePlugin {
    async fn get_device_plugin_options(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<DevicePluginOptions>, Status> {
        Ok(Response::new(self.options))
    }

    type ListAndWatchStream = ListStream;

    async fn list_and_watch(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListAndWatchStream>, Status> {
        let list = ListAndWatchResponse {
            devices: self
                .devices
                .iter()
                .map(|id| Device {
                    id: id.to_string(),
                    health: "Healthy".into(),
                    topology: None,
                })
                .collect(),
        };
        // One list, then the stream stays open.
        let stream = tokio_stream::once(Ok(list)).chain(tokio_stream::pending());
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_preferred_allocation(
        &self,
        _: Request<PreferredAllocationRequest>,
    ) -> Result<Response<PreferredAllocationResponse>, Status> {
        Err(Status::unimplemented("not offered"))
    }

    async fn allocate(
        &self,
        request: Request<AllocateRequest>,
    ) -> Result<Response<AllocateResponse>, Status> {
        let ids = request.into_inner().container_requests[0]
            .devices_ids
            .clone();
        self.calls.lock().unwrap().allocate.push(ids.clone());
        if self.fail_allocate {
            return Err(Status::failed_precondition("device is on fire"));
        }
        Ok(Response::new(AllocateResponse {
            container_responses: vec![ContainerAllocateResponse {
                envs: [("FPGA".to_string(), ids.join(","))].into_iter().collect(),
                ..Default::default()
            }],
        }))
    }

    async fn pre_start_container(
        &self,
        request: Request<PreStartContainerRequest>,
    ) -> Result<Response<PreStartContainerResponse>, Status> {
        self.calls
            .lock()
            .unwrap()
            .pre_start
            .push(request.into_inner().devices_ids);
        Ok(Response::new(PreStartContainerResponse {}))
    }
}

use tokio_stream::StreamExt as _;

async fn serve(socket: &Path, plugin: FakePlugin, stop: CancellationToken) {
    let _ = std::fs::remove_file(socket);
    let listener = tokio::net::UnixListener::bind(socket).unwrap();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(DevicePluginServer::new(plugin))
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), stop.cancelled_owned())
            .await
            .unwrap();
    });
}

async fn connect(socket: PathBuf) -> Channel {
    Endpoint::from_static("http://[::1]:50051")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                tokio::net::UnixStream::connect(socket)
                    .await
                    .map(TokioIo::new)
            }
        }))
        .await
        .unwrap()
}

async fn register(dir: &Path, version: &str, resource: &str, endpoint: &str) -> Result<(), Status> {
    RegistrationClient::new(connect(dir.join("kubelet.sock")).await)
        .register(RegisterRequest {
            version: version.into(),
            endpoint: endpoint.into(),
            resource_name: resource.into(),
            options: None,
        })
        .await
        .map(|_| ())
}

async fn manager(dir: &Path) -> (DeviceManager, CancellationToken) {
    let cancel = CancellationToken::new();
    let mut config = DeviceManagerConfig::new(dir, "node-a");
    config.cdi_dirs = Vec::new();
    (
        DeviceManager::start(config, cancel.clone()).await.unwrap(),
        cancel,
    )
}

async fn wait_inventory(
    m: &DeviceManager,
    done: impl Fn(&DeviceInventory) -> bool,
) -> DeviceInventory {
    let mut rx = m.watch_inventory();
    match tokio::time::timeout(WAIT, rx.wait_for(|i| done(i))).await {
        Ok(Ok(i)) => i.clone(),
        _ => panic!("inventory not reached: {:#?}", m.inventory()),
    }
}

fn fpga_pod(uid: &str) -> (Pod, Container) {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": uid, "uid": uid},
        "spec": {"containers": [{"name": "c", "image": "busybox",
            "resources": {"limits": {"example.com/fpga": "1"}}}]},
    }))
    .unwrap();
    let c = pod.spec.as_ref().unwrap().containers[0].clone();
    (pod, c)
}

fn fake(options: DevicePluginOptions, fail_allocate: bool) -> (FakePlugin, Arc<Mutex<Calls>>) {
    let calls = Arc::new(Mutex::new(Calls::default()));
    let plugin = FakePlugin {
        options,
        devices: vec!["fpga-b", "fpga-a"],
        fail_allocate,
        calls: calls.clone(),
    };
    (plugin, calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_version_or_resource_name_is_refused_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let (_m, cancel) = manager(dir.path()).await;
    let status = register(dir.path(), "v1alpha1", "example.com/fpga", "fpga.sock")
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "version \"v1alpha1\": unsupported device plugin API version; this agent supports \"v1beta1\""
    );
    let status = register(dir.path(), "v1beta1", "fpga", "fpga.sock")
        .await
        .unwrap_err();
    assert!(
        status.message().starts_with(
            "resource_name \"fpga\": must be an extended resource name vendor.domain/type"
        ),
        "{}",
        status.message()
    );
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_plugin_without_attributes_is_inventoried_allocated_and_pre_started() {
    let dir = tempfile::tempdir().unwrap();
    // A stale socket from an earlier run is removed on start.
    std::os::unix::net::UnixListener::bind(dir.path().join("stale.sock")).unwrap();
    let (m, cancel) = manager(dir.path()).await;
    assert!(!dir.path().join("stale.sock").exists());
    let options = DevicePluginOptions {
        pre_start_required: true,
        get_preferred_allocation_available: false,
    };
    let (plugin, calls) = fake(options, false);
    let stop = CancellationToken::new();
    serve(&dir.path().join("fpga.sock"), plugin, stop.clone()).await;
    register(dir.path(), "v1beta1", "example.com/fpga", "fpga.sock")
        .await
        .unwrap();
    let inventory = wait_inventory(&m, |i| i.allocatable.get("example.com/fpga") == Some(&2)).await;
    let devices = inventory.resource_slices[0].spec.devices.clone().unwrap();
    // No DeviceAttributes (Unimplemented): devices are indexed in ID order.
    let named: BTreeMap<String, String> = devices
        .iter()
        .map(|d| {
            (
                d.name.clone(),
                d.attributes.as_ref().unwrap()["uuid"]
                    .string
                    .clone()
                    .unwrap(),
            )
        })
        .collect();
    assert_eq!(
        named,
        BTreeMap::from([
            ("gpu-0".into(), "fpga-a".into()),
            ("gpu-1".into(), "fpga-b".into())
        ])
    );
    // No attributes service: no model is invented (the slice carries an empty one).
    let model = devices[0]
        .attributes
        .as_ref()
        .unwrap()
        .get("model")
        .and_then(|a| a.string.clone())
        .unwrap_or_default();
    assert_eq!(model, "", "a model the plugin never reported");
    let (pod, c) = fpga_pod("p1");
    let edits = m.allocate(&pod, &c).await.unwrap();
    assert_eq!(edits.env, vec!["FPGA=fpga-a"]);
    let calls_now = |f: fn(&Calls) -> Vec<Vec<String>>| f(&calls.lock().unwrap());
    assert_eq!(
        calls_now(|c| c.allocate.clone()),
        vec![vec!["fpga-a".to_string()]]
    );
    assert_eq!(
        calls_now(|c| c.pre_start.clone()),
        vec![vec!["fpga-a".to_string()]]
    );
    // The second pod gets the other device; a third finds none free.
    let (pod2, c2) = fpga_pod("p2");
    assert_eq!(
        m.allocate(&pod2, &c2).await.unwrap().env,
        vec!["FPGA=fpga-b"]
    );
    let (pod3, c3) = fpga_pod("p3");
    let err = m.allocate(&pod3, &c3).await.unwrap_err().to_string();
    assert_eq!(
        err,
        "example.com/fpga: 1 device(s) requested, 0 free and healthy"
    );
    // A restarted container reuses its allocation without asking the plugin again.
    m.allocate(&pod, &c).await.unwrap();
    assert_eq!(calls_now(|c| c.allocate.clone()).len(), 2);
    stop.cancel();
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_live_plugin_for_a_resource_is_refused_and_a_failed_allocate_holds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (m, cancel) = manager(dir.path()).await;
    let (plugin, calls) = fake(DevicePluginOptions::default(), true);
    let stop = CancellationToken::new();
    serve(&dir.path().join("fpga.sock"), plugin, stop.clone()).await;
    register(dir.path(), "v1beta1", "example.com/fpga", "fpga.sock")
        .await
        .unwrap();
    wait_inventory(&m, |i| i.allocatable.get("example.com/fpga") == Some(&2)).await;
    let (second, _) = fake(DevicePluginOptions::default(), false);
    serve(&dir.path().join("fpga2.sock"), second, stop.clone()).await;
    let status = register(dir.path(), "v1beta1", "example.com/fpga", "fpga2.sock")
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::AlreadyExists);
    assert!(
        status
            .message()
            .contains("already registered by the plugin serving"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("fpga.sock (still running)"),
        "{}",
        status.message()
    );
    // The plugin refuses the allocation: the error says so and nothing stays held.
    let (pod, c) = fpga_pod("p1");
    let err = m.allocate(&pod, &c).await.unwrap_err().to_string();
    assert_eq!(
        err,
        "device plugin for example.com/fpga: Allocate: device is on fire"
    );
    assert_eq!(calls.lock().unwrap().allocate.len(), 1);
    assert!(m.allocations().is_empty());
    // The same plugin registering again (a restart) replaces the first registration.
    register(dir.path(), "v1beta1", "example.com/fpga", "fpga.sock")
        .await
        .unwrap();
    wait_inventory(&m, |i| i.allocatable.get("example.com/fpga") == Some(&2)).await;
    stop.cancel();
    cancel.cancel();
}
