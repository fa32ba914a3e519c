//! gRPC over Unix sockets: dialling a plugin's socket with tonic, binding the
//! registration socket after removing a stale file.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tonic::transport::{Channel, Endpoint};

use super::Error;

/// Dials the gRPC server on the Unix socket at `path`.
pub(super) async fn connect(path: &Path) -> Result<Channel, Error> {
    let socket: PathBuf = path.to_path_buf();
    // The URI is required by tonic but unused: the connector dials the socket.
    Endpoint::from_static("http://[::1]:50051")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move { UnixStream::connect(socket).await.map(TokioIo::new) }
        }))
        .await
        .map_err(|source| Error::Connect {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
}

/// Binds a listener at `path`, replacing a stale socket file.
pub(super) fn bind(path: &Path) -> Result<UnixListener, Error> {
    remove_if_present(path)?;
    UnixListener::bind(path).map_err(|e| Error::io(path, e))
}

/// Removes `path`; a missing file is fine.
pub(super) fn remove_if_present(path: &Path) -> Result<(), Error> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}
