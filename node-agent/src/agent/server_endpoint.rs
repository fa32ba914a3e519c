//! Where the agent dials the control plane: `http://HOST:PORT` over TCP, `https://HOST:PORT`
//! over TLS with a client certificate (`cox server --secure-listen`: the node's certificate,
//! CN `system:node:<name>`, O `system:nodes`), or `unix:///path/to/socket` over a Unix socket
//! (`cox server --listen-unix`). The socket lets agents in other network namespaces of the
//! same machine reach a control plane that listens on loopback only. Plain ones speak gRPC
//! over HTTP/2 with prior knowledge; TLS negotiates `h2` by ALPN.

use std::path::PathBuf;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Uri};

use super::AgentError;

/// A control plane address the agent can dial.
#[derive(Debug, Clone)]
pub struct ServerEndpoint {
    /// The URL as given, for logs.
    url: String,
    /// The HTTP/2 settings (and, over TCP, the address).
    endpoint: Endpoint,
    /// The socket file, for `unix://` URLs.
    unix_path: Option<PathBuf>,
}

/// What the agent presents and trusts over `https://`: PEM files' contents.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// The cluster CA certificate the server's certificate must chain to.
    pub ca_pem: Vec<u8>,
    /// The node's client certificate.
    pub cert_pem: Vec<u8>,
    /// The node's private key.
    pub key_pem: Vec<u8>,
}

impl ServerEndpoint {
    /// Parses `http://HOST:PORT`, `https://HOST:PORT` (with `tls`) or
    /// `unix:///absolute/path`; anything else is an [`AgentError::ServerUrl`] saying what is
    /// accepted.
    pub fn parse(url: &str, tls: Option<&ServerTls>) -> Result<Self, AgentError> {
        let bad = |message: String| AgentError::ServerUrl {
            url: url.to_string(),
            message,
        };
        match (url.starts_with("https://"), tls) {
            (true, None) => {
                return Err(bad(
                    "https needs the cluster CA and a client certificate and key \
                     (--ca-file, --client-cert, --client-key)"
                        .into(),
                ));
            }
            (false, Some(_)) => {
                return Err(bad(
                    "a CA and client certificate were given: the URL must be https://".into(),
                ));
            }
            _ => {}
        }
        let (endpoint, unix_path) = if let Some(path) = url.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(bad(
                    "a unix socket URL needs an absolute path: unix:///path/to/socket".into(),
                ));
            }
            // The connector ignores the URI; it only names the HTTP/2 authority.
            (
                Endpoint::from_static("http://control-plane.local"),
                Some(PathBuf::from(path)),
            )
        } else if url.starts_with("http://") || url.starts_with("https://") {
            let mut endpoint =
                Endpoint::from_shared(url.to_string()).map_err(|e| bad(e.to_string()))?;
            if let Some(tls) = tls {
                let config = ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(&tls.ca_pem))
                    .identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem));
                endpoint = endpoint
                    .tls_config(config)
                    .map_err(|e| bad(e.to_string()))?;
            }
            (endpoint.tcp_nodelay(true), None)
        } else {
            return Err(bad(
                "must start with http:// (TCP), https:// (TLS) or unix:// (a socket file)".into(),
            ));
        };
        let endpoint = endpoint
            .connect_timeout(Duration::from_secs(5))
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        Ok(Self {
            url: url.to_string(),
            endpoint,
            unix_path,
        })
    }

    /// Opens a channel to the control plane.
    pub async fn connect(&self) -> Result<Channel, tonic::transport::Error> {
        match &self.unix_path {
            None => self.endpoint.connect().await,
            Some(path) => {
                let path = path.clone();
                let connector = tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(&path).await?;
                        Ok::<_, std::io::Error>(TokioIo::new(stream))
                    }
                });
                self.endpoint.connect_with_connector(connector).await
            }
        }
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use coxswain_proto::node::v1alpha1::ContainerLogsRequest;
    use coxswain_proto::node::v1alpha1::agent_service_client::AgentServiceClient;
    use coxswain_proto::node::v1alpha1::agent_service_server::AgentServiceServer;

    use super::*;
    use crate::AgentConfig;
    use crate::agent::{LogService, PodDirectory};

    #[test]
    fn urls_are_tcp_or_absolute_unix_paths() {
        assert!(ServerEndpoint::parse("http://127.0.0.1:6443", None).is_ok());
        let unix = ServerEndpoint::parse("unix:///run/cox.sock", None).unwrap();
        assert_eq!(unix.unix_path.as_deref(), Some("/run/cox.sock".as_ref()));
        let e = ServerEndpoint::parse("unix://run/cox.sock", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("absolute path"), "{e}");
        let e = ServerEndpoint::parse("x:1", None).unwrap_err().to_string();
        assert!(e.contains("unix://"), "{e}");
    }

    /// A gRPC call goes over the socket file: the log service answers NotFound for a
    /// pod it does not have (a connection failure would be Unavailable).
    #[tokio::test]
    async fn grpc_reaches_a_server_on_a_unix_socket() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("cp.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let service = LogService::new(
            Arc::new(AgentConfig::new(dir.path().join("root"))),
            PodDirectory::default(),
        );
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(AgentServiceServer::new(service))
                .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
        );
        let url = format!("unix://{}", socket.display());
        let channel = ServerEndpoint::parse(&url, None)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let status = AgentServiceClient::new(channel)
            .container_logs(ContainerLogsRequest {
                namespace: "default".into(),
                pod: "nothing".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound, "{status}");
    }
}
