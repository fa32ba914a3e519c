//! The in-process API client: a [`kube::Client`] whose transport is the API server's own
//! router, called without a socket.
//!
//! Controllers, the scheduler and the node service read and write through it, so every
//! write they make goes through the same admission, validation, defaulting, finalizers and
//! watch fan-out as a write from kubectl — the control plane has one path into the store.
//! kube-runtime's watchers, reflectors and controllers run on top of it unchanged. (Kubernetes'
//! controller manager does the same over a loopback connection.)

use crate::apiserver::ApiServer;

/// A client for `server`'s API, served in-process; its default namespace is `default`.
pub fn in_process(server: &ApiServer) -> kube::Client {
    kube::Client::new(server.router(), "default")
}
