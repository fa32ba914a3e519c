//! `cox-nvidia-plugin --metrics-listen`: the real binary serving simulated
//! GPUs is scraped over loopback, the text passes `promtool check metrics`
//! (dcgm-exporter's `modelName` label is `model_name` here, see docs/metrics.md), and the
//! values follow the devices: an XID injected through `SimulatedGpuControl`
//! shows in `DCGM_FI_DEV_XID_ERRORS`, `coxswain_gpu_xid_errors_total` and
//! `coxswain_gpu_healthy`, and recovery brings the health gauge back. With
//! `--pod-resources-socket`, a fake kubelet PodResources server names the
//! pods holding GPUs and the series carry them.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{FakeKubelet, WAIT, channel, is_root};
use coxswain_proto::deviceplugin::v1alpha1::simulated_gpu_control_client::SimulatedGpuControlClient;
use coxswain_proto::deviceplugin::v1alpha1::{InjectXidRequest, RecoverRequest};
use coxswain_proto::deviceplugin::v1beta1::Empty;
use coxswain_proto::deviceplugin::v1beta1::device_plugin_client::DevicePluginClient;
use coxswain_proto::podresources::v1::pod_resources_lister_server::{
    PodResourcesLister, PodResourcesListerServer,
};
use coxswain_proto::podresources::v1::{
    AllocatableResourcesRequest, AllocatableResourcesResponse, ContainerDevices,
    ContainerResources, GetPodResourcesRequest, GetPodResourcesResponse, ListPodResourcesRequest,
    ListPodResourcesResponse, PodResources,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::wrappers::UnixListenerStream;

const BIN: &str = env!("CARGO_BIN_EXE_cox-nvidia-plugin");

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

/// `GET /metrics` over a plain TCP connection: status line and body.
async fn scrape(addr: &str) -> std::io::Result<(String, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    Ok((head.to_string(), body.to_string()))
}

/// Scrapes until the plugin's listener answers 200 (it binds as it starts).
async fn scrape_ok(addr: &str) -> String {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Ok((head, body)) = scrape(addr).await {
                assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                assert!(head.contains("text/plain; version=0.0.4"), "{head}");
                return body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("/metrics did not answer within 10 s")
}

/// The value of the one sample of `name` whose line contains every `part`.
fn value(scrape: &str, name: &str, parts: &[&str]) -> Option<f64> {
    let mut found = scrape
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && parts.iter().all(|p| l.contains(p)));
    let line = found.next()?;
    assert!(found.next().is_none(), "{name} {parts:?} is ambiguous");
    line.rsplit_once(' ')?.1.parse().ok()
}

/// Runs the real `promtool check metrics`: any finding (a parse error, a bad
/// name, a camelCase label, a counter without `_total`) fails. A missing
/// promtool fails too: scripts/setup.sh installs it (Debian package
/// `prometheus`).
fn promtool_check(scrape: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "PROMTOOL IS MISSING ({e}): scripts/setup.sh installs Debian's prometheus package"
            )
        });
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(scrape.as_bytes())
        .expect("writing the scrape to promtool");
    let output = child.wait_with_output().expect("promtool runs");
    let findings = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && findings.trim().is_empty(),
        "promtool check metrics ({}): {findings}\n--- scrape ---\n{scrape}",
        output.status
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_follow_simulated_gpus_through_an_xid_and_recovery() {
    if !is_root() {
        panic!(
            "metrics_follow_simulated_gpus_through_an_xid_and_recovery NEEDS ROOT: \
             the simulated GPUs' device nodes are created with mknod"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let plugin_dir = dir.path().join("device-plugins");
    let mut kubelet = FakeKubelet::start(&plugin_dir);
    let addr = format!("127.0.0.1:{}", free_port());
    let _child = tokio::process::Command::new(BIN)
        .args(["--simulate", "dgx-h100", "--recheck-secs", "1"])
        .arg("--plugin-dir")
        .arg(&plugin_dir)
        .args(["--metrics-listen", &addr])
        .env("NODE_NAME", "metrics-node")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let registration = kubelet.next_registration().await;
    let socket = plugin_dir.join(&registration.endpoint);
    let mut dp = DevicePluginClient::new(channel(&socket).await);
    let devices = dp
        .list_and_watch(Empty {})
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap()
        .devices;
    assert_eq!(devices.len(), 8);

    let text = scrape_ok(&addr).await;
    promtool_check(&text);
    for d in &devices {
        let uuid = format!("UUID=\"{}\"", d.id);
        let ours = [
            uuid.as_str(),
            "Hostname=\"metrics-node\"",
            "simulated=\"true\"",
        ];
        let util = value(&text, "DCGM_FI_DEV_GPU_UTIL", &ours).expect("utilization");
        assert!((0.0..=100.0).contains(&util), "{util}");
        let power = value(&text, "DCGM_FI_DEV_POWER_USAGE", &ours).expect("power");
        assert!(
            power > 0.0 && power <= 700.0,
            "an H100 draws at most 700 W: {power}"
        );
        assert!(value(&text, "DCGM_FI_DEV_SM_CLOCK", &ours).is_some_and(|c| c > 0.0));
        assert!(value(&text, "DCGM_FI_DEV_GPU_TEMP", &ours).is_some_and(|t| t > 0.0));
        assert!(value(&text, "DCGM_FI_DEV_FB_USED", &ours).is_some());
        assert!(value(&text, "DCGM_FI_DEV_FB_FREE", &ours).is_some());
        assert_eq!(value(&text, "DCGM_FI_DEV_XID_ERRORS", &ours), Some(0.0));
        assert_eq!(value(&text, "coxswain_gpu_healthy", &ours), Some(1.0));
    }

    // XID 79 (fallen off the bus) on GPU 3: critical.
    let target = &devices[3].id;
    let uuid = format!("UUID=\"{target}\"");
    let mut control = SimulatedGpuControlClient::new(channel(&socket).await);
    let answer = control
        .inject_xid(InjectXidRequest {
            device_id: target.clone(),
            xid: 79,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(answer.marked_unhealthy);
    let until = |what: &'static str, ok: fn(&str, &str) -> bool| {
        let (addr, uuid) = (addr.clone(), uuid.clone());
        async move {
            let deadline = Instant::now() + WAIT;
            loop {
                let text = scrape_ok(&addr).await;
                if ok(&text, &uuid) {
                    return text;
                }
                assert!(Instant::now() < deadline, "{what} within 10 s:\n{text}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let text = until("the XID on /metrics", |t, u| {
        value(t, "coxswain_gpu_healthy", &[u]) == Some(0.0)
    })
    .await;
    promtool_check(&text);
    assert_eq!(value(&text, "DCGM_FI_DEV_XID_ERRORS", &[&uuid]), Some(79.0));
    assert_eq!(
        value(
            &text,
            "coxswain_gpu_xid_errors_total",
            &[&uuid, "xid=\"79\""]
        ),
        Some(1.0)
    );
    // The faulted simulated GPU sits idle, like a GPU that fell off the bus.
    assert_eq!(value(&text, "DCGM_FI_DEV_GPU_UTIL", &[&uuid]), Some(0.0));
    let other = format!("UUID=\"{}\"", devices[0].id);
    assert_eq!(value(&text, "coxswain_gpu_healthy", &[&other]), Some(1.0));
    assert_eq!(value(&text, "DCGM_FI_DEV_XID_ERRORS", &[&other]), Some(0.0));

    // An application XID (13) is counted and becomes the last XID, but the
    // GPU's health is the policy's call: still unhealthy from the 79.
    control
        .inject_xid(InjectXidRequest {
            device_id: target.clone(),
            xid: 13,
        })
        .await
        .unwrap();
    let text = until("the application XID on /metrics", |t, u| {
        value(t, "DCGM_FI_DEV_XID_ERRORS", &[u]) == Some(13.0)
    })
    .await;
    assert_eq!(
        value(
            &text,
            "coxswain_gpu_xid_errors_total",
            &[&uuid, "xid=\"13\""]
        ),
        Some(1.0)
    );

    // Recovered: the next re-check (1 s hold-down) makes it healthy again;
    // the XID record stays, as dcgm-exporter keeps the last XID.
    control
        .recover(RecoverRequest {
            device_id: target.clone(),
        })
        .await
        .unwrap();
    let text = until("recovery on /metrics", |t, u| {
        value(t, "coxswain_gpu_healthy", &[u]) == Some(1.0)
    })
    .await;
    assert_eq!(value(&text, "DCGM_FI_DEV_XID_ERRORS", &[&uuid]), Some(13.0));
    assert!(value(&text, "DCGM_FI_DEV_GPU_UTIL", &[&uuid]).is_some_and(|u| u > 0.0));
    promtool_check(&text);
}

#[test]
fn a_listen_address_in_use_is_refused_naming_the_flag() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["--simulate", "pcie-4x", "--metrics-listen", &addr])
        .arg("--plugin-dir")
        .arg(dir.path().join("device-plugins"))
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--metrics-listen") && stderr.contains(&addr),
        "{stderr}"
    );
}

/// A kubelet's PodResources `List`, answering whatever the test set last.
#[derive(Clone, Default)]
struct FakePodResources(Arc<Mutex<Vec<PodResources>>>);

#[tonic::async_trait]
impl PodResourcesLister for FakePodResources {
    async fn list(
        &self,
        _: tonic::Request<ListPodResourcesRequest>,
    ) -> Result<tonic::Response<ListPodResourcesResponse>, tonic::Status> {
        let pod_resources = self.0.lock().unwrap().clone();
        Ok(tonic::Response::new(ListPodResourcesResponse {
            pod_resources,
        }))
    }

    async fn get_allocatable_resources(
        &self,
        _: tonic::Request<AllocatableResourcesRequest>,
    ) -> Result<tonic::Response<AllocatableResourcesResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("not used by the plugin"))
    }

    async fn get(
        &self,
        _: tonic::Request<GetPodResourcesRequest>,
    ) -> Result<tonic::Response<GetPodResourcesResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("not used by the plugin"))
    }
}

impl FakePodResources {
    fn serve(&self, socket: &Path) {
        let listener = tokio::net::UnixListener::bind(socket).unwrap();
        let service = PodResourcesListerServer::new(self.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(UnixListenerStream::new(listener))
                .await
                .unwrap();
        });
    }

    /// `pod` in `namespace`, its container `container` holding `devices` of `resource`.
    fn set(&self, pods: &[(&str, &str, &str, &str, &[&str])]) {
        *self.0.lock().unwrap() = pods
            .iter()
            .map(
                |(namespace, pod, container, resource, devices)| PodResources {
                    name: pod.to_string(),
                    namespace: namespace.to_string(),
                    containers: vec![ContainerResources {
                        name: container.to_string(),
                        devices: vec![ContainerDevices {
                            resource_name: resource.to_string(),
                            device_ids: devices.iter().map(|d| d.to_string()).collect(),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                },
            )
            .collect();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn gpu_series_name_the_pod_holding_the_gpu() {
    if !is_root() {
        panic!(
            "gpu_series_name_the_pod_holding_the_gpu NEEDS ROOT: \
             the simulated GPUs' device nodes are created with mknod"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let plugin_dir = dir.path().join("device-plugins");
    let mut kubelet = FakeKubelet::start(&plugin_dir);
    let pod_resources = FakePodResources::default();
    let socket = dir.path().join("pod-resources.sock");
    pod_resources.serve(&socket);
    let addr = format!("127.0.0.1:{}", free_port());
    let _child = tokio::process::Command::new(BIN)
        .args(["--simulate", "pcie-4x", "--metrics-listen", &addr])
        .arg("--plugin-dir")
        .arg(&plugin_dir)
        .arg("--pod-resources-socket")
        .arg(&socket)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    kubelet.next_registration().await;
    let text = scrape_ok(&addr).await;
    let gpus: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("DCGM_FI_DEV_GPU_UTIL{"))
        .filter_map(|l| Some(l.split("UUID=\"").nth(1)?.split('"').next()?.to_string()))
        .collect();
    assert_eq!(gpus.len(), 4, "{text}");
    let util: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("DCGM_FI_DEV_GPU_UTIL{"))
        .collect();
    assert!(
        util.iter().all(|l| l.contains("pod=\"\",")),
        "nobody holds a GPU yet: {util:#?}"
    );

    // GPU 1 to ml/train-0's trainer, GPU 2 shared by two pods (the first in
    // namespace/pod order is named), another resource's device ignored.
    pod_resources.set(&[
        ("ml", "train-0", "trainer", "nvidia.com/gpu", &[&gpus[1]]),
        ("ml", "train-1", "trainer", "nvidia.com/gpu", &[&gpus[2]]),
        ("dev", "notebook", "jupyter", "nvidia.com/gpu", &[&gpus[2]]),
        ("ml", "other", "c", "example.com/fpga", &[&gpus[3]]),
    ]);
    let text = scrape_ok(&addr).await;
    promtool_check(&text);
    let held = |text: &str, gpu: &str, holder: &[&str]| {
        let uuid = format!("UUID=\"{gpu}\"");
        let parts: Vec<&str> = [&[uuid.as_str()][..], holder].concat();
        [
            "DCGM_FI_DEV_GPU_UTIL",
            "DCGM_FI_DEV_FB_USED",
            "coxswain_gpu_healthy",
        ]
        .iter()
        .all(|name| value(text, name, &parts).is_some())
    };
    let train0 = [
        "pod=\"train-0\"",
        "namespace=\"ml\"",
        "container=\"trainer\"",
    ];
    let notebook = [
        "pod=\"notebook\"",
        "namespace=\"dev\"",
        "container=\"jupyter\"",
    ];
    assert!(held(&text, &gpus[1], &train0), "{text}");
    assert!(held(&text, &gpus[2], &notebook), "{text}");
    for free in [&gpus[0], &gpus[3]] {
        let line = text
            .lines()
            .find(|l| l.starts_with("DCGM_FI_DEV_GPU_UTIL{") && l.contains(free.as_str()))
            .unwrap();
        assert!(line.contains("pod=\"\","), "{line}");
    }

    // GPU 1 changes hands: the old holder's series are gone, not kept beside.
    pod_resources.set(&[("ml", "train-9", "trainer", "nvidia.com/gpu", &[&gpus[1]])]);
    let text = scrape_ok(&addr).await;
    assert!(held(&text, &gpus[1], &["pod=\"train-9\""]), "{text}");
    assert!(
        !text.contains("train-0") && !text.contains("notebook"),
        "{text}"
    );
    let series = text
        .lines()
        .filter(|l| l.starts_with("DCGM_FI_DEV_GPU_UTIL{"))
        .count();
    assert_eq!(series, 4, "one series per GPU:\n{text}");
}
