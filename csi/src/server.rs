//! Serving the driver's Identity, Controller and Node services on a Unix
//! socket until a shutdown future completes, metered by
//! [`GrpcMetricsLayer`].

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use coxswain_proto::csi::v1::controller_server::ControllerServer;
use coxswain_proto::csi::v1::identity_server::IdentityServer;
use coxswain_proto::csi::v1::node_server::NodeServer;
use tokio_stream::wrappers::UnixListenerStream;

use crate::driver::Driver;
use crate::driver::controller::ControllerService;
use crate::driver::identity::IdentityService;
use crate::driver::node::NodeService;
use crate::metrics::{CsiMetrics, GrpcMetricsLayer};
use crate::{Error, endpoint};

/// Serves `driver` on the socket at `socket` until `shutdown` completes,
/// then removes the socket file.
pub async fn serve(
    driver: Arc<Driver>,
    socket: &Path,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    serve_metered(driver, socket, Arc::new(CsiMetrics::new()), shutdown).await
}

/// [`serve`], counting and timing every RPC in `metrics`.
pub async fn serve_metered(
    driver: Arc<Driver>,
    socket: &Path,
    metrics: Arc<CsiMetrics>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let listener = endpoint::bind(socket)?;
    tracing::info!(socket = %socket.display(), node = %driver.config().node_id, "serving CSI");
    let result = tonic::transport::Server::builder()
        .layer(GrpcMetricsLayer::new(metrics))
        .add_service(IdentityServer::new(IdentityService::new(driver.clone())))
        .add_service(ControllerServer::new(ControllerService::new(
            driver.clone(),
        )))
        .add_service(NodeServer::new(NodeService::new(driver)))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await
        .map_err(|source| Error::Serve {
            path: socket.to_path_buf(),
            source: Box::new(source),
        });
    let _ = std::fs::remove_file(socket);
    result
}
