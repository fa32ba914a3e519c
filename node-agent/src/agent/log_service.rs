//! The agent's `AgentService`: container logs for `kubectl logs`, served over
//! gRPC on the port the Node reports as its kubelet endpoint. Files are read on
//! a blocking thread ([`super::log_files`]); a followed log ends when the
//! container instance exits or the client goes away.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use coxswain_proto::node::v1alpha1::agent_service_server::AgentService;
use coxswain_proto::node::v1alpha1::{ContainerLogsRequest, LogChunk};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::log_files::{LogOptions, instances, read_instance};
use super::pods::PodDirectory;
use crate::AgentConfig;
use crate::logs::rfc3339_nano;

/// Serves the logs of the pods on this node.
#[derive(Clone)]
pub struct LogService {
    config: Arc<AgentConfig>,
    directory: PodDirectory,
}

impl LogService {
    /// Logs under `config`'s pod directories, pods found by name in `directory`.
    pub fn new(config: Arc<AgentConfig>, directory: PodDirectory) -> Self {
        Self { config, directory }
    }

    fn container_dir(&self, request: &ContainerLogsRequest) -> Result<(PathBuf, String), Status> {
        let pod = format!("{}/{}", request.namespace, request.pod);
        let uid = if request.uid.is_empty() {
            self.directory
                .uid(&request.namespace, &request.pod)
                .ok_or_else(|| {
                    Status::not_found(format!("pod {pod} is not running on this node"))
                })?
        } else {
            request.uid.clone()
        };
        let logs = self.config.pod_dir(&uid).join("logs");
        let container = if request.container.is_empty() {
            let names: Vec<String> = std::fs::read_dir(&logs)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            match names.as_slice() {
                [one] => one.clone(),
                _ => {
                    return Err(Status::invalid_argument(format!(
                        "container: a container name is required for pod {pod}, one of {names:?}"
                    )));
                }
            }
        } else {
            request.container.clone()
        };
        if container.contains('/') || container.starts_with('.') {
            return Err(Status::invalid_argument(format!(
                "container: {container:?} is not a container name"
            )));
        }
        Ok((logs.join(&container), format!("{uid}_{container}")))
    }
}

#[tonic::async_trait]
impl AgentService for LogService {
    type ContainerLogsStream = ReceiverStream<Result<LogChunk, Status>>;

    async fn container_logs(
        &self,
        request: Request<ContainerLogsRequest>,
    ) -> Result<Response<Self::ContainerLogsStream>, Status> {
        let request = request.into_inner();
        let (dir, container_id) = self.container_dir(&request)?;
        let found = instances(&dir);
        let name = format!("{}/{}", request.pod, request.container);
        let Some(&current) = found.last() else {
            return Err(Status::not_found(format!(
                "container {name} has no logs on this node (not started yet?)"
            )));
        };
        let instance = if request.previous {
            *found.iter().rev().nth(1).ok_or_else(|| {
                Status::not_found(format!("previous terminated container {name} not found"))
            })?
        } else {
            current
        };
        let options = LogOptions {
            tail_lines: usize::try_from(request.tail_lines).ok(),
            timestamps: request.timestamps,
            since: (request.since_seconds > 0).then(|| {
                rfc3339_nano(SystemTime::now() - Duration::from_secs(request.since_seconds as u64))
            }),
        };
        let follow = request.follow && !request.previous;
        let mut budget = usize::try_from(request.limit_bytes)
            .ok()
            .filter(|b| *b > 0)
            .unwrap_or(usize::MAX);
        let container_dir = self.config.container_dir(&container_id);
        let exit_file = container_dir.join("exit");
        let next_instance = dir.join(format!("{}.log", instance + 1));
        let (tx, rx) = mpsc::channel(16);
        tokio::task::spawn_blocking(move || {
            // The container has exited when its exit file is written, or when the agent has
            // already removed its directory (a finished pod's containers are torn down; their
            // logs stay): without the second test a follow of a pod that finished between
            // two polls never ended.
            let finished = || {
                exit_file.exists()
                    || !container_dir.exists()
                    || next_instance.exists()
                    || !dir.exists()
            };
            let emit = |mut bytes: Vec<u8>| {
                if tx.is_closed() {
                    return false;
                }
                if bytes.is_empty() {
                    return true;
                }
                bytes.truncate(budget);
                budget -= bytes.len();
                let more = tx.blocking_send(Ok(LogChunk { data: bytes })).is_ok();
                more && budget > 0
            };
            if let Err(e) = read_instance(&dir, instance, &options, follow, finished, emit) {
                let _ = tx.blocking_send(Err(Status::internal(format!(
                    "reading {}: {e}",
                    dir.display()
                ))));
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
