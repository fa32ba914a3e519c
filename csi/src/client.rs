//! A CSI client over a Unix socket: the three service clients on one
//! channel. The conformance suite uses it, and so will the agent.

use std::path::{Path, PathBuf};
use std::time::Duration;

use coxswain_proto::csi::v1::ProbeRequest;
use coxswain_proto::csi::v1::controller_client::ControllerClient;
use coxswain_proto::csi::v1::identity_client::IdentityClient;
use coxswain_proto::csi::v1::node_client::NodeClient;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

use crate::{Error, endpoint};

/// Clients of a CSI driver's Identity, Controller and Node services.
#[derive(Debug, Clone)]
pub struct CsiClient {
    /// Identity service.
    pub identity: IdentityClient<Channel>,
    /// Controller service.
    pub controller: ControllerClient<Channel>,
    /// Node service.
    pub node: NodeClient<Channel>,
}

impl CsiClient {
    /// Dials the driver at `endpoint` (`unix:///path`).
    pub async fn connect(endpoint: &str) -> Result<Self, Error> {
        Self::connect_path(&endpoint::socket_path(endpoint)?).await
    }

    /// Dials the driver's socket at `path`.
    pub async fn connect_path(path: &Path) -> Result<Self, Error> {
        let socket: PathBuf = path.to_path_buf();
        // tonic needs a URI; the connector ignores it and dials the socket.
        let channel = Endpoint::from_static("http://[::1]:50051")
            .connect_with_connector(tower::service_fn(move |_| {
                let socket = socket.clone();
                async move { UnixStream::connect(socket).await.map(TokioIo::new) }
            }))
            .await
            .map_err(|source| Error::Connect {
                path: path.to_path_buf(),
                source: Box::new(source),
            })?;
        Ok(Self {
            identity: IdentityClient::new(channel.clone()),
            controller: ControllerClient::new(channel.clone()),
            node: NodeClient::new(channel),
        })
    }

    /// Dials `endpoint` until the driver answers Probe, for at most `timeout`
    /// (a freshly started driver needs a moment to bind its socket).
    pub async fn wait_ready(endpoint: &str, timeout: Duration) -> Result<Self, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let last = match Self::connect(endpoint).await {
                Ok(mut client) => match client.identity.probe(ProbeRequest {}).await {
                    Ok(_) => return Ok(client),
                    Err(status) => {
                        Error::FailedPrecondition(format!("probe: {}", status.message()))
                    }
                },
                Err(e) => e,
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(last);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
