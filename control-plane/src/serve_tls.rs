//! The secure listener: the same router as [`serve`](crate::serve) behind TLS, with every
//! request authenticated and authorized ([`crate::apiserver::auth`]).
//!
//! The TLS handshake asks for a client certificate but does not require one (bearer tokens
//! come over TLS too); a certificate it accepts chains to the cluster CA, and its CN/O
//! become the connection's [`PeerIdentity`]. As kube-apiserver's x509 authenticator, each
//! request checks the certificate's notAfter again: a connection that outlives its
//! certificate is no longer authenticated by it (a rotated node must reconnect with its new
//! one). ALPN offers `h2` and `http/1.1`, so kubectl, the Python client and gRPC clients
//! all fit on the one port.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::GracefulShutdown;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::apiserver::ServeError;
use crate::apiserver::auth::pki::ClusterPki;
use crate::apiserver::auth::{self, Authenticator, PeerIdentity};

/// rustls' server settings, for callers that hold them.
pub use rustls::ServerConfig;

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the TLS settings could not be made.
#[derive(Debug, thiserror::Error)]
#[error("TLS: {0}")]
pub struct TlsError(String);

/// rustls settings serving `pki`'s serving certificate and verifying client certificates
/// against its CA (optional: token clients send none).
pub fn server_config(pki: &ClusterPki) -> Result<rustls::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| TlsError(format!("the CA certificate: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| TlsError(format!("the CA certificate: {e}")))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError(format!("the client certificate verifier: {e}")))?;
    let chain = CertificateDer::pem_slice_iter(pki.serving.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError(format!("the serving certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(pki.serving.key_pem.as_bytes())
        .map_err(|e| TlsError(format!("the serving key: {e}")))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| TlsError(format!("the serving certificate: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Serves `router` over TLS on `listener`, authenticating and authorizing every request
/// with `auth`, until `shutdown`; then stops accepting and waits for open connections.
pub async fn serve_tls(
    router: axum::Router,
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    auth: Arc<Authenticator>,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let router = router.layer(axum::middleware::from_fn_with_state(auth, auth::middleware));
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                tracing::warn!("accepting a TLS connection: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (acceptor, router, watcher) = (acceptor.clone(), router.clone(), graceful.watcher());
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return tracing::debug!("TLS handshake: {e}"),
                Err(_) => return tracing::debug!("TLS handshake timed out"),
            };
            let leaf = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first());
            let identity = PeerIdentity(leaf.and_then(|leaf| auth::user_of_certificate(leaf)));
            let not_after = leaf.and_then(|leaf| not_after(leaf));
            let service = hyper::service::service_fn(
                move |mut request: hyper::Request<hyper::body::Incoming>| {
                    let expired = not_after.is_some_and(|t| jiff::Timestamp::now().as_second() > t);
                    let identity = if expired {
                        PeerIdentity(None)
                    } else {
                        identity.clone()
                    };
                    request.extensions_mut().insert(identity);
                    router.clone().oneshot(request.map(axum::body::Body::new))
                },
            );
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!("TLS connection: {e}");
            }
        });
    }
    graceful.shutdown().await;
    Ok(())
}

/// A DER certificate's notAfter, in Unix seconds.
fn not_after(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}
