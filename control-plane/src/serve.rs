//! The control plane's one listener: the REST API and the node service's gRPC on one port.
//!
//! A request whose `content-type` is `application/grpc*` goes to tonic, every other request
//! to the API router. The listener speaks HTTP/1.1 and HTTP/2 with prior knowledge (h2c) on
//! the same port — kubectl and reqwest use the first, tonic clients the second — so
//! `cox agent --server URL` needs nothing but the API's URL.

use axum::extract::Request;
use axum::http::header::CONTENT_TYPE;

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
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    axum::serve(listener, router(&api, node_service, shutdown.clone()))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(|source| ServeError::Io { addr, source })
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
