//! A tower layer around the tonic server that counts and times every RPC by
//! service, method and gRPC code. The code is the response's `grpc-status`
//! header (tonic answers a failed unary call headers-only); a response
//! without one carries its status in the trailers after a body, which for
//! CSI's unary RPCs means `OK`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::codegen::http;
use tower::{Layer, Service};

use super::CsiMetrics;

/// The CSI v1 services and their RPCs; any other path is counted as
/// `unknown`, so a client cannot grow the label space.
const METHODS: &[(&str, &[&str])] = &[
    (
        "csi.v1.Identity",
        &["GetPluginInfo", "GetPluginCapabilities", "Probe"],
    ),
    (
        "csi.v1.Controller",
        &[
            "CreateVolume",
            "DeleteVolume",
            "ControllerPublishVolume",
            "ControllerUnpublishVolume",
            "ValidateVolumeCapabilities",
            "ListVolumes",
            "GetCapacity",
            "ControllerGetCapabilities",
            "CreateSnapshot",
            "DeleteSnapshot",
            "ListSnapshots",
            "ControllerExpandVolume",
            "ControllerGetVolume",
            "ControllerModifyVolume",
        ],
    ),
    (
        "csi.v1.Node",
        &[
            "NodeStageVolume",
            "NodeUnstageVolume",
            "NodePublishVolume",
            "NodeUnpublishVolume",
            "NodeGetVolumeStats",
            "NodeExpandVolume",
            "NodeGetCapabilities",
            "NodeGetInfo",
        ],
    ),
];

/// `(service, method)` of a gRPC path `/csi.v1.Node/NodeGetInfo`.
fn rpc_labels(path: &str) -> (&'static str, &'static str) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (service, method) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    METHODS
        .iter()
        .find(|(s, _)| *s == service)
        .and_then(|(s, methods)| methods.iter().find(|m| **m == method).map(|m| (*s, *m)))
        .unwrap_or(("unknown", "unknown"))
}

/// The name Go's gRPC gives a status code (go-grpc-prometheus' `grpc_code`).
fn code_name(code: &str) -> &'static str {
    match code {
        "0" => "OK",
        "1" => "Canceled",
        "2" => "Unknown",
        "3" => "InvalidArgument",
        "4" => "DeadlineExceeded",
        "5" => "NotFound",
        "6" => "AlreadyExists",
        "7" => "PermissionDenied",
        "8" => "ResourceExhausted",
        "9" => "FailedPrecondition",
        "10" => "Aborted",
        "11" => "OutOfRange",
        "12" => "Unimplemented",
        "13" => "Internal",
        "14" => "Unavailable",
        "15" => "DataLoss",
        "16" => "Unauthenticated",
        _ => "Unknown",
    }
}

/// Adds [`GrpcMetricsService`] around a tonic server's routes.
#[derive(Clone)]
pub struct GrpcMetricsLayer {
    metrics: Arc<CsiMetrics>,
}

impl GrpcMetricsLayer {
    /// Records into `metrics`.
    pub fn new(metrics: Arc<CsiMetrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// Counts and times the RPCs `inner` answers.
#[derive(Clone)]
pub struct GrpcMetricsService<S> {
    inner: S,
    metrics: Arc<CsiMetrics>,
}

impl<S, B, R> Service<http::Request<B>> for GrpcMetricsService<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let (service, method) = rpc_labels(request.uri().path());
        let started = Instant::now();
        let answer = self.inner.call(request);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let response = answer.await;
            let code = match &response {
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .map_or("OK", code_name),
                // The transport failed before any answer.
                Err(_) => "Unavailable",
            };
            metrics.observe(service, method, code, started.elapsed().as_secs_f64());
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_rpcs_are_labelled_and_others_are_unknown() {
        assert_eq!(
            rpc_labels("/csi.v1.Node/NodeGetInfo"),
            ("csi.v1.Node", "NodeGetInfo")
        );
        assert_eq!(
            rpc_labels("/csi.v1.Controller/CreateVolume"),
            ("csi.v1.Controller", "CreateVolume")
        );
        for odd in [
            "/csi.v1.Node/Whatever",
            "/x.Y/Probe",
            "/",
            "",
            "/csi.v1.Node",
        ] {
            assert_eq!(rpc_labels(odd), ("unknown", "unknown"), "{odd}");
        }
    }

    #[test]
    fn codes_have_go_grpc_names() {
        assert_eq!(code_name("0"), "OK");
        assert_eq!(code_name("5"), "NotFound");
        assert_eq!(code_name("12"), "Unimplemented");
        assert_eq!(code_name("99"), "Unknown");
    }
}
