//! `GET /metrics` over HTTP/1 on a TCP listener. Each scrape reads the
//! driver's volumes on a blocking thread (it waits for a volume operation
//! in progress to finish, as every RPC does).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;

use super::{CsiMetrics, TEXT_FORMAT};
use crate::driver::Driver;

type Shared = (Arc<CsiMetrics>, Arc<Driver>);

async fn get_metrics(State((metrics, driver)): State<Shared>) -> Response {
    match tokio::task::spawn_blocking(move || metrics.scrape(&driver)).await {
        Ok(text) => ([(header::CONTENT_TYPE, TEXT_FORMAT)], text).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading CSI metrics: {e}\n"),
        )
            .into_response(),
    }
}

/// Serves `/metrics` on `listener` for as long as the task runs.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<CsiMetrics>,
    driver: Arc<Driver>,
) -> std::io::Result<()> {
    let router = axum::Router::new()
        .route("/metrics", axum::routing::get(get_metrics))
        .with_state((metrics, driver));
    axum::serve(listener, router).await
}
