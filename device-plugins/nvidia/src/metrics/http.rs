//! `GET /metrics` over HTTP/1 on a TCP listener, until cancelled. Each scrape
//! asks the PodResources socket (where one is set) who holds the GPUs, then
//! reads the GPUs on a blocking thread (NVML calls block).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{GpuMetrics, TEXT_FORMAT};
use crate::Error;

/// Binds `addr` (`--metrics-listen`), naming the flag when it cannot.
pub async fn bind(addr: &str) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Metrics {
            addr: addr.to_string(),
            source,
        })
}

async fn get_metrics(State(metrics): State<Arc<GpuMetrics>>) -> Response {
    let owners = metrics.owners().await;
    match tokio::task::spawn_blocking(move || metrics.scrape(&owners)).await {
        Ok(text) => ([(header::CONTENT_TYPE, TEXT_FORMAT)], text).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading GPU metrics: {e}\n"),
        )
            .into_response(),
    }
}

/// Serves `/metrics` on `listener` until `cancel` fires.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<GpuMetrics>,
    cancel: CancellationToken,
) -> Result<(), Error> {
    let addr = listener
        .local_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    tracing::info!(%addr, "serving /metrics");
    let router = axum::Router::new()
        .route("/metrics", axum::routing::get(get_metrics))
        .with_state(metrics);
    axum::serve(listener, router)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
        .map_err(|source| Error::Metrics { addr, source })
}
