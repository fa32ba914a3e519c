//! gRPC over Unix sockets: dialling a socket path with tonic, and binding a
//! socket path after removing a stale file.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tonic::transport::{Channel, Endpoint};

use crate::Error;

/// Dials the gRPC server on the Unix socket at `path`.
pub async fn connect(path: &Path) -> Result<Channel, Error> {
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

/// Binds a listener at `path`, creating its directory and replacing a stale
/// socket file left by an earlier run.
pub fn bind(path: &Path) -> Result<UnixListener, Error> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(path, e)),
    }
    UnixListener::bind(path).map_err(|e| Error::io(path, e))
}

/// Identity of a file (device, inode), to notice a socket being recreated.
pub fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}
