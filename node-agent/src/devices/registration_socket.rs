//! The registration socket's lifetime: serve `v1beta1.Registration` on
//! `<plugin-dir>/kubelet.sock`, check every second that the file is still the one
//! bound, and bind a fresh one when it vanished or was replaced (the directory was
//! wiped), so that plugins, which watch `kubelet.sock`, register again. A wiped
//! checkpoint is written back from memory at the same time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use coxswain_proto::deviceplugin::v1beta1::registration_server::RegistrationServer;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::CancellationToken;

use super::manager::Shared;
use super::registration::RegistrationService;
use super::{Error, unix};

/// How often the socket file is checked.
pub(super) const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Identity of a file (device, inode, change time), to notice it being removed or
/// replaced. The change time tells a new socket from the one before it when the new one
/// reuses the freed inode — else a stopping predecessor would take the new socket for its
/// own and remove it.
fn file_identity(path: &Path) -> Option<(u64, u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino(), m.ctime(), m.ctime_nsec()))
}

/// Binds `socket` (creating its directory) and starts serving on it until `stop`.
fn serve(
    shared: &Arc<Shared>,
    socket: &Path,
    stop: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, Error> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let listener = unix::bind(socket)?;
    let server = tonic::transport::Server::builder().add_service(RegistrationServer::new(
        RegistrationService {
            shared: shared.clone(),
        },
    ));
    let path = socket.to_path_buf();
    Ok(tokio::spawn(async move {
        let served = server
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), stop.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!(socket = %path.display(), error = %e, "device plugin registration server failed");
        }
    }))
}

/// Binds `socket` now (an error here stops the manager's start), then keeps it in
/// place until `cancel` fires, when the file is removed.
pub(super) fn start(
    shared: Arc<Shared>,
    socket: PathBuf,
    cancel: CancellationToken,
) -> Result<(), Error> {
    let mut stop = cancel.child_token();
    let mut server = Some(serve(&shared, &socket, stop.clone())?);
    let mut bound = file_identity(&socket);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = cancel.cancelled() => break,
            }
            let serving = server.as_ref().is_some_and(|s| !s.is_finished());
            // `bound` is None when the socket vanished between binding and looking at it
            // (a stopping predecessor removing "its" socket, whose inode ours may reuse):
            // serve again rather than trust the empty identity forever.
            if serving && bound.is_some() && file_identity(&socket) == bound {
                continue;
            }
            tracing::warn!(socket = %socket.display(), "registration socket removed or replaced; serving a new one");
            stop.cancel();
            if let Some(old) = server.take() {
                let _ = old.await;
            }
            stop = cancel.child_token();
            match serve(&shared, &socket, stop.clone()) {
                Ok(task) => {
                    server = Some(task);
                    bound = file_identity(&socket);
                    shared.restore_checkpoint_file();
                }
                // Tried again at the next check (the directory may be mid-wipe).
                Err(e) => tracing::error!(error = %e, "cannot serve the registration socket again"),
            }
        }
        stop.cancel();
        if let Some(server) = server.take() {
            let _ = server.await;
        }
        if file_identity(&socket) == bound {
            let _ = std::fs::remove_file(&socket);
        }
    });
    Ok(())
}
