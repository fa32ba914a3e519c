//! CSI endpoints: `unix:///path/to/csi.sock` (the form `CSI_ENDPOINT` takes
//! in Kubernetes), and binding one after removing a stale socket file.

use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

use crate::Error;

/// The socket path of a `unix://` endpoint; a bare absolute path is accepted too.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, Error> {
    let path = endpoint
        .strip_prefix("unix://")
        .or_else(|| endpoint.strip_prefix("unix:"))
        .unwrap_or(endpoint);
    if !path.starts_with('/') || path.len() < 2 {
        return Err(Error::Endpoint(endpoint.to_string()));
    }
    Ok(PathBuf::from(path))
}

/// Binds a listener at `path`, creating its directory and replacing a stale
/// socket file left by an earlier (killed) run.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_unix_endpoints_and_rejects_others() {
        assert_eq!(
            socket_path("unix:///run/csi.sock").unwrap(),
            PathBuf::from("/run/csi.sock")
        );
        assert_eq!(
            socket_path("unix:/run/csi.sock").unwrap(),
            PathBuf::from("/run/csi.sock")
        );
        assert_eq!(
            socket_path("/run/csi.sock").unwrap(),
            PathBuf::from("/run/csi.sock")
        );
        for bad in ["tcp://1.2.3.4:5", "unix://relative", "", "unix://"] {
            assert!(socket_path(bad).is_err(), "{bad}");
        }
    }
}
