//! The control plane's one listener: the REST API and the node service's gRPC on one port.
//!
//! A request whose `content-type` is `application/grpc*` goes to tonic, every other request
//! to the API router. The listener speaks HTTP/1.1 and HTTP/2 with prior knowledge (h2c) on
//! the same port — kubectl and reqwest use the first, tonic clients the second — so
//! `cox agent --server URL` needs nothing but the API's URL.
//!
//! The same router can also be served on a Unix socket ([`bind_unix`], [`serve_unix`]):
//! the TCP listener stays on loopback, and agents in other network namespaces on this
//! machine (the multi-host test's simulated hosts) reach the control plane through the
//! socket file, whose mode 0600 limits it to root.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use axum::extract::Request;
use axum::http::header::CONTENT_TYPE;
use tokio::net::UnixListener;

use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::apiserver::{ApiServer, ServeError};
use crate::nodeservice::NodeService;

/// Serves the API and the node service on `listener` until `shutdown` is cancelled, then
/// drains: open requests finish, watches and the node service's streams end.
pub async fn serve(
    api: ApiServer,
    node_service: NodeService,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    serve_tcp(
        router(&api, node_service, shutdown.clone()),
        listener,
        shutdown,
    )
    .await
}

/// Serves `router` (see [`router`]) on a TCP listener until `shutdown`, then drains.
pub async fn serve_tcp(
    router: axum::Router,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(|source| ServeError::Io { addr, source })
}

/// A listening Unix socket made by [`bind_unix`]; the file is at [`UnixSocket::path`].
pub struct UnixSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl UnixSocket {
    /// Where the socket file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Serves `router` (see [`router`]) on a Unix socket from [`bind_unix`] until `shutdown`,
/// then drains and removes the socket file. HTTP/1.1 and h2c, as on TCP.
pub async fn serve_unix(
    router: axum::Router,
    socket: UnixSocket,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let UnixSocket { listener, path } = socket;
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(|source| ServeError::Io {
            addr: format!("unix:{}", path.display()),
            source,
        });
    let _ = std::fs::remove_file(&path);
    served
}

/// Binds a Unix socket at `path` with mode 0600 (owner only: the API has no
/// authentication). The socket is bound under a temporary name, restricted, then renamed
/// into place, so no one can connect before the mode is set. A stale socket file at `path`
/// (no server answering) is replaced; a live one is an `AddrInUse` error.
pub fn bind_unix(path: &Path) -> std::io::Result<UnixSocket> {
    use std::io::{Error, ErrorKind};
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ));
            }
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(Error::new(
                    ErrorKind::AddrInUse,
                    format!("{}: another server is listening there", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let temporary = temporary_name(path);
    let _ = std::fs::remove_file(&temporary);
    let listener = UnixListener::bind(&temporary)?;
    let placed = std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&temporary, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&temporary);
        return Err(e);
    }
    Ok(UnixSocket {
        listener,
        path: path.to_path_buf(),
    })
}

/// `<dir>/.<name>.<pid>.tmp` beside `path`.
fn temporary_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// The combined service: gRPC by content type, the API otherwise. The node service's streams
/// end when `shutdown` is cancelled.
pub fn router(
    api: &ApiServer,
    node_service: NodeService,
    shutdown: CancellationToken,
) -> axum::Router {
    let grpc = tonic::service::Routes::new(node_service.with_shutdown(shutdown).into_server())
        .prepare()
        .into_axum_router();
    let rest = api.router();
    axum::Router::new().fallback(move |request: Request| {
        let target = if is_grpc(&request) {
            grpc.clone()
        } else {
            rest.clone()
        };
        async move {
            match target.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        }
    })
}

fn is_grpc(request: &Request) -> bool {
    request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}
