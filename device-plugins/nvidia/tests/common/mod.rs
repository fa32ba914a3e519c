//! Test fixtures: a fake kubelet `Registration` server on a real Unix socket
//! and a plugin serving simulated GPUs in a temp directory.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use coxswain_nvidia_plugin::backend::SimulatedBackend;
use coxswain_nvidia_plugin::device_nodes::RecordingNodeMaker;
use coxswain_nvidia_plugin::service::PluginState;
use coxswain_nvidia_plugin::topology::Topology;
use coxswain_nvidia_plugin::{Error, NvidiaPlugin, PluginConfig};
use coxswain_proto::deviceplugin::v1beta1::registration_server::{
    Registration, RegistrationServer,
};
use coxswain_proto::deviceplugin::v1beta1::{Empty, RegisterRequest};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// Bound on every wait in these tests: a hang fails instead of blocking CI.
pub const WAIT: Duration = Duration::from_secs(10);

struct Recorder {
    tx: mpsc::UnboundedSender<RegisterRequest>,
    refuse: bool,
}

#[tonic::async_trait]
impl Registration for Recorder {
    async fn register(&self, request: Request<RegisterRequest>) -> Result<Response<Empty>, Status> {
        let _ = self.tx.send(request.into_inner());
        if self.refuse {
            return Err(Status::already_exists(
                "resource nvidia.com/gpu is already registered",
            ));
        }
        Ok(Response::new(Empty {}))
    }
}

/// A kubelet stand-in: serves `Registration` on `<dir>/kubelet.sock` and
/// hands every request it gets to the test.
pub struct FakeKubelet {
    pub requests: mpsc::UnboundedReceiver<RegisterRequest>,
    stop: CancellationToken,
}

impl FakeKubelet {
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, false)
    }

    pub fn start_refusing(dir: &Path) -> Self {
        Self::start_with(dir, true)
    }

    fn start_with(dir: &Path, refuse: bool) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join("kubelet.sock");
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let (tx, requests) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(RegistrationServer::new(Recorder { tx, refuse }))
                .serve_with_incoming_shutdown(
                    UnixListenerStream::new(listener),
                    token.cancelled_owned(),
                )
                .await
                .unwrap();
        });
        Self { requests, stop }
    }

    /// The next registration, failing the test after [`WAIT`].
    pub async fn next_registration(&mut self) -> RegisterRequest {
        tokio::time::timeout(WAIT, self.requests.recv())
            .await
            .expect("no registration within 10 s")
            .expect("fake kubelet stopped")
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }
}

/// A plugin serving simulated GPUs in a temp dir, running in the background.
pub struct RunningPlugin {
    pub dir: tempfile::TempDir,
    pub plugin_dir: PathBuf,
    pub socket: PathBuf,
    pub state: Arc<PluginState>,
    pub cancel: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), Error>>,
}

pub fn config(plugin_dir: &Path) -> PluginConfig {
    let mut config = PluginConfig::new(plugin_dir, "nvidia.com/gpu");
    config.recheck_after = Duration::from_millis(200);
    config.watch_interval = Duration::from_millis(100);
    config.cdi_dirs = Vec::new();
    config
}

pub fn start_plugin(topology: Topology) -> RunningPlugin {
    let dir = tempfile::tempdir().unwrap();
    let plugin_dir = dir.path().join("device-plugins");
    let backend = SimulatedBackend::create(
        topology,
        &dir.path().join("simulated-dev"),
        &RecordingNodeMaker::default(),
    )
    .unwrap();
    let server = NvidiaPlugin::new(config(&plugin_dir), Arc::new(backend)).unwrap();
    let socket = server.socket_path();
    let state = server.state().clone();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(server.run(cancel.clone()));
    RunningPlugin {
        dir,
        plugin_dir,
        socket,
        state,
        cancel,
        task,
    }
}

/// Waits until `path` exists.
pub async fn wait_for_file(path: &Path) {
    tokio::time::timeout(WAIT, async {
        while !path.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} did not appear", path.display()));
}

pub async fn channel(socket: &Path) -> tonic::transport::Channel {
    wait_for_file(socket).await;
    coxswain_nvidia_plugin::unix::connect(socket).await.unwrap()
}

/// True when running as root (device nodes can be created).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let uid = s.lines().find(|l| l.starts_with("Uid:"))?;
            Some(uid.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}
