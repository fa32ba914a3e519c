//! One serving session: while the plugin's socket stays in place, register
//! with `kubelet.sock` whenever it (re)appears. Ends when the plugin socket
//! is removed or replaced (the directory was wiped), so that the caller binds
//! a fresh socket and registers again; fails when registration is refused.

use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::NvidiaPlugin;
use crate::{Error, registration, unix};

/// Longest a single `Register` call may take.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) async fn run(
    server: &NvidiaPlugin,
    socket: &Path,
    own: Option<unix::FileIdentity>,
    cancel: &CancellationToken,
) -> Result<(), Error> {
    let kubelet = server.config.kubelet_socket();
    if own.is_none() {
        tracing::warn!(socket = %socket.display(), "plugin socket removed as it was bound; serving a new one");
        return Ok(());
    }
    let mut registered_with = None;
    let mut waiting_logged = false;
    let mut tick = tokio::time::interval(server.config.watch_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = cancel.cancelled() => return Ok(()),
        }
        if unix::file_identity(socket) != own {
            tracing::warn!(socket = %socket.display(), "plugin socket removed or replaced; serving a new one");
            return Ok(());
        }
        let current = unix::file_identity(&kubelet);
        if current.is_none() || current == registered_with {
            if current.is_none() && registered_with.take().is_some() {
                tracing::warn!(socket = %kubelet.display(), "registration socket gone; waiting for it to come back");
            }
            continue;
        }
        let attempt = tokio::time::timeout(
            REGISTER_TIMEOUT,
            registration::register(&kubelet, &server.endpoint, &server.config.resource_name),
        )
        .await;
        match attempt {
            Ok(Ok(())) => {
                tracing::info!(
                    socket = %kubelet.display(),
                    resource = %server.config.resource_name,
                    endpoint = %server.endpoint,
                    "registered"
                );
                registered_with = current;
                waiting_logged = false;
            }
            Ok(Err(e @ Error::RegistrationRefused { .. })) => return Err(e),
            Ok(Err(e)) if !waiting_logged => {
                tracing::warn!(error = %e, "registration failed; retrying");
                waiting_logged = true;
            }
            Ok(Err(_)) => {}
            Err(_) if !waiting_logged => {
                tracing::warn!(socket = %kubelet.display(), "registration timed out; retrying");
                waiting_logged = true;
            }
            Err(_) => {}
        }
    }
}
