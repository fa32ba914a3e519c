//! Property tests of the TLS listener's authentication and authorization layer: arbitrary
//! `Authorization` headers, paths, query strings and methods never panic and never get a
//! 5xx; every header but the one valid token gets 401; the valid token's requests are
//! decided (2xx, 403 or another 4xx), never 401. Self reviews with arbitrary JSON, YAML and
//! protobuf-looking bodies get 201 or 400.

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode};
use coxswain_control_plane::apiserver::ApiServer;
use coxswain_control_plane::apiserver::auth::bootstrap::BootstrapTokens;
use coxswain_control_plane::apiserver::auth::node::NodeAuthorizer;
use coxswain_control_plane::apiserver::auth::rbac::Rbac;
use coxswain_control_plane::apiserver::auth::{self, Authenticator, StaticTokens};
use coxswain_control_plane::store::{EmbeddedStore, Store};
use proptest::prelude::*;
use tower::ServiceExt;

mod fuzz_support;

use fuzz_support::{any_body, any_path, authorization, method, query, runtime};

const TOKEN: &str = "alice-token";

struct Harness {
    router: axum::Router,
    _dir: tempfile::TempDir,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let router = runtime().block_on(async {
            let store: Arc<dyn Store> =
                Arc::new(EmbeddedStore::open(dir.path().join("store")).unwrap());
            let shutdown = tokio_util::sync::CancellationToken::new();
            let server = ApiServer::new(store.clone(), shutdown).await.unwrap();
            let auth = Arc::new(Authenticator {
                tokens: StaticTokens::parse(&format!("{TOKEN},alice,1,dev\n")).unwrap(),
                bootstrap: Some(BootstrapTokens::new(store.clone())),
                service_accounts: None,
                nodes: Some(NodeAuthorizer::new(store.clone())),
                rbac: Some(Rbac::new(store)),
            });
            server
                .router()
                .layer(axum::middleware::from_fn_with_state(auth, auth::middleware))
        });
        Harness { router, _dir: dir }
    })
}

fn send(
    method: Method,
    uri: &str,
    authorization: Option<&[u8]>,
    content_type: &str,
    body: Vec<u8>,
) -> Option<StatusCode> {
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type);
    if let Some(value) = authorization.and_then(|v| HeaderValue::from_bytes(v).ok()) {
        builder = builder.header("authorization", value);
    }
    // A request hyper would refuse on the wire never reaches the layer.
    let request = builder.body(Body::from(body)).ok()?;
    let router = harness().router.clone();
    runtime().block_on(async {
        let response = router.oneshot(request).await.unwrap();
        Some(response.status())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    #[test]
    fn every_header_but_the_token_is_unauthorized(
        method in method(),
        path in any_path(),
        query in query(),
        header in authorization(),
    ) {
        let uri = if query.is_empty() { path } else { format!("{path}?{query}") };
        let valid = header.as_deref() == Some(format!("Bearer {TOKEN}").as_bytes());
        if let Some(status) = send(method, &uri, header.as_deref(), "application/json", Vec::new()) {
            prop_assert!(!status.is_server_error(), "{uri}: {status}");
            if !valid {
                prop_assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", uri);
            }
        }
    }

    #[test]
    fn the_token_user_gets_decisions_never_401_or_5xx(
        method in method(),
        path in any_path(),
        query in query(),
    ) {
        let uri = if query.is_empty() { path } else { format!("{path}?{query}") };
        let header = format!("Bearer {TOKEN}");
        if let Some(status) = send(method, &uri, Some(header.as_bytes()), "application/json", Vec::new()) {
            prop_assert!(!status.is_server_error(), "{uri}: {status}");
            prop_assert_ne!(status, StatusCode::UNAUTHORIZED, "{}", uri);
        }
    }

    #[test]
    fn self_access_reviews_get_201_or_400(
        body in any_body(),
        protobuf in any::<bool>(),
        prefixed in any::<bool>(),
    ) {
        let (content_type, body) = if protobuf {
            let mut bytes = if prefixed { b"k8s\0".to_vec() } else { Vec::new() };
            bytes.extend(body);
            ("application/vnd.kubernetes.protobuf", bytes)
        } else {
            ("application/json", body)
        };
        let header = format!("Bearer {TOKEN}");
        let status = send(
            Method::POST,
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            Some(header.as_bytes()),
            content_type,
            body,
        )
        .unwrap();
        prop_assert!(
            status == StatusCode::CREATED || status == StatusCode::BAD_REQUEST,
            "{status}"
        );
    }
}
