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

/// What [`file_identity`] returns: device, inode, change time (seconds, nanoseconds).
pub type FileIdentity = (u64, u64, i64, i64);

/// Identity of a file (device, inode, change time), to notice a socket being recreated: a
/// socket bound again at the same path usually gets the inode just freed, so only the
/// change time tells a restarted agent's `kubelet.sock` from the one before.
pub fn file_identity(path: &Path) -> Option<FileIdentity> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino(), m.ctime(), m.ctime_nsec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_socket_bound_again_at_the_same_path_is_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubelet.sock");
        let first = bind(&path).unwrap();
        let before = file_identity(&path).unwrap();
        drop(first);
        std::fs::remove_file(&path).unwrap();
        // Linux hands the freed inode to the next socket: (device, inode) alone would
        // take the new socket for the old one.
        let _second = bind(&path).unwrap();
        let after = file_identity(&path).unwrap();
        assert_ne!(before, after);
        assert_eq!(file_identity(&path), Some(after), "stable while unchanged");
    }
}
