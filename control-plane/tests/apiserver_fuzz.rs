//! Property tests of request decoding: arbitrary paths, query strings, media-type and
//! `Authorization` headers and bodies (raw bytes, structured-garbage JSON and YAML) sent to the
//! in-process router never panic and never get a 5xx; bodies that are not JSON get a 4xx.
//!
//! The router is called with `tower::ServiceExt::oneshot`, without a socket, so a panic in a
//! handler fails the property instead of being swallowed by a connection task.

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode};
use coxswain_control_plane::apiserver::ApiServer;
use coxswain_control_plane::store::{EmbeddedStore, EncryptedStore, EncryptionConfig, Store};
use futures::StreamExt;
use proptest::prelude::*;
use serde_json::Value;
use tower::ServiceExt;

mod fuzz_support;

use fuzz_support::{
    KINDS, any_body, any_path, authorization, media_type, method, query, runtime, template, write,
    write_query,
};

/// Which server a property talks to: each has its own store, so one property deleting the
/// seeded objects does not starve another of them.
#[derive(Clone, Copy, Debug)]
enum Server {
    /// For requests of any shape.
    Any,
    /// For writes of real kinds, whose seeded objects should mostly stay; it encrypts
    /// secrets and configmaps at rest.
    Writes,
    /// For bodies that are not JSON.
    NotJson,
}

/// Secrets and configmaps encrypted, for the writes server.
const ENCRYPTION: &str = "apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets, configmaps]
    providers:
      - aesgcm: {keys: [{name: k1, secret: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=}]}
      - identity: {}
";

/// A server over an embedded store with one object named `seed` of every kind in [`KINDS`].
struct Harness {
    router: axum::Router,
    _dir: tempfile::TempDir,
}

fn harness(server: Server) -> &'static Harness {
    static HARNESSES: [OnceLock<Harness>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    HARNESSES[server as usize].get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let router = runtime().block_on(async {
            let mut store: Arc<dyn Store> =
                Arc::new(EmbeddedStore::open(dir.path().join("store")).unwrap());
            if let Server::Writes = server {
                // Writes go through encryption at rest too.
                let config = EncryptionConfig::parse(ENCRYPTION.as_bytes()).unwrap();
                store = Arc::new(EncryptedStore::new(store, config));
            }
            let shutdown = tokio_util::sync::CancellationToken::new();
            let router = ApiServer::new(store, shutdown).await.unwrap().router();
            for kind in KINDS {
                let request = Request::post(kind.collection)
                    .header("content-type", "application/json")
                    .body(Body::from(template(kind, "seed").to_string()))
                    .unwrap();
                let response = router.clone().oneshot(request).await.unwrap();
                assert!(response.status().is_success(), "seeding {}", kind.kind);
            }
            router
        });
        Harness { router, _dir: dir }
    })
}

/// A request as the properties generate it.
#[derive(Clone, Debug)]
struct Fuzzed {
    method: Method,
    path: String,
    query: String,
    content_type: Option<Vec<u8>>,
    accept: Option<Vec<u8>>,
    authorization: Option<Vec<u8>>,
    body: Vec<u8>,
}

/// Sends `fuzzed`; the status, and the body when it ends within a moment (watches do not).
fn send(server: Server, fuzzed: &Fuzzed) -> (StatusCode, Vec<u8>) {
    let harness = harness(server);
    let uri = if fuzzed.query.is_empty() {
        fuzzed.path.clone()
    } else {
        format!("{}?{}", fuzzed.path, fuzzed.query)
    };
    let mut builder = Request::builder().method(fuzzed.method.clone()).uri(&uri);
    for (name, value) in [
        ("content-type", &fuzzed.content_type),
        ("accept", &fuzzed.accept),
        ("authorization", &fuzzed.authorization),
    ] {
        // A value hyper would refuse on the wire never reaches the router.
        if let Some(value) = value.as_ref().and_then(|v| HeaderValue::from_bytes(v).ok()) {
            builder = builder.header(name, value);
        }
    }
    let request = builder
        .body(Body::from(fuzzed.body.clone()))
        .unwrap_or_else(|e| panic!("the generator made an unsendable request {uri:?}: {e}"));
    runtime().block_on(async {
        let response = harness.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        // A watch never ends: keep what it sent within a moment (its initial events and any
        // ERROR event), then drop it.
        let mut stream = response.into_body().into_data_stream();
        let mut body = Vec::new();
        let deadline = tokio::time::sleep(std::time::Duration::from_millis(50));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                frame = stream.next() => match frame {
                    Some(Ok(bytes)) if body.len() < 4 << 20 => body.extend_from_slice(&bytes),
                    _ => break,
                },
            }
        }
        (status, body)
    })
}

/// 512 cases per property (well under 30 s in a debug build); `PROPTEST_CASES=N` for a longer
/// campaign.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(512);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn assert_no_5xx(server: Server, fuzzed: &Fuzzed) -> Result<StatusCode, TestCaseError> {
    let (status, body) = send(server, fuzzed);
    // The one honest 5xx: a node proxy or log request for the seeded Node, which has no
    // agent to reach (no InternalIP): 503, as for any unreachable backend.
    let text = String::from_utf8_lossy(&body);
    if status == StatusCode::SERVICE_UNAVAILABLE
        && text.contains("node seed reports no InternalIP address")
    {
        return Ok(status);
    }
    prop_assert!(
        !status.is_server_error(),
        "{status} for {fuzzed:?}: {}",
        String::from_utf8_lossy(&body)
    );
    // Nor a 5xx inside a watch: an ERROR event carries a Status with its code.
    for line in body.split(|b| *b == b'\n') {
        if let Ok(event) = serde_json::from_slice::<Value>(line)
            && event["type"] == "ERROR"
        {
            let code = event["object"]["code"].as_u64().unwrap_or(0);
            prop_assert!(code < 500, "watch ERROR {code} for {fuzzed:?}: {event}");
        }
    }
    Ok(status)
}

proptest! {
    #![proptest_config(config())]

    /// Anything at all: no panic, no 5xx.
    #[test]
    fn arbitrary_requests_never_get_a_5xx(
        method in method(),
        path in any_path(),
        query in query(),
        content_type in media_type(),
        accept in media_type(),
        authorization in authorization(),
        body in any_body(),
    ) {
        assert_no_5xx(Server::Any, &Fuzzed { method, path, query, content_type, accept, authorization, body })?;
    }

    /// Writes of real kinds with garbage put in, and patches of every flavour, to the seeded
    /// objects and new names: a 4xx or success, never a 5xx.
    #[test]
    fn garbage_objects_never_get_a_5xx(
        (kind, name, (method, body, content_type)) in (0..KINDS.len(), prop_oneof![
            3 => Just("seed".to_string()),
            1 => "[a-z0-9-]{1,12}",
        ])
            .prop_flat_map(|(kind, name)| {
                let write = write(&KINDS[kind], name.clone());
                (Just(kind), Just(name), write)
            }),
        query in write_query(),
    ) {
        let kind = &KINDS[kind];
        let path = if method == Method::POST {
            kind.collection.to_string()
        } else {
            format!("{}/{name}", kind.collection)
        };
        let query = if content_type == "application/apply-patch+yaml" {
            format!("fieldManager=fuzz&{query}")
        } else {
            query
        };
        assert_no_5xx(Server::Writes, &Fuzzed {
            method,
            path,
            query,
            content_type: Some(content_type.as_bytes().to_vec()),
            accept: None,
            authorization: None,
            body,
        })?;
    }

    /// Lists and watches of real collections with arbitrary selectors, limits, continue tokens,
    /// resource versions and watch parameters: no 5xx, in the status or in a watch's events.
    #[test]
    fn lists_and_watches_never_get_a_5xx(
        kind in 0..KINDS.len(),
        watch in prop::sample::select(vec!["", "watch=true&", "watch=1&", "watch=false&"]),
        query in query(),
        accept in media_type(),
    ) {
        assert_no_5xx(Server::Any, &Fuzzed {
            method: Method::GET,
            path: KINDS[kind].collection.to_string(),
            query: format!("{watch}timeoutSeconds=1&{query}"),
            content_type: None,
            accept,
            authorization: None,
            body: Vec::new(),
        })?;
    }

    /// A body that is not JSON, sent as JSON, gets a 4xx whose body is a `Status`.
    #[test]
    fn bodies_that_are_not_json_get_a_4xx(
        kind in 0..KINDS.len(),
        bytes in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        prop_assume!(serde_json::from_slice::<Value>(&bytes).is_err());
        let fuzzed = Fuzzed {
            method: Method::POST,
            path: KINDS[kind].collection.to_string(),
            query: String::new(),
            content_type: Some(b"application/json".to_vec()),
            accept: None,
            authorization: None,
            body: bytes,
        };
        let (status, body) = send(Server::NotJson, &fuzzed);
        prop_assert!(status.is_client_error(), "{status} for {fuzzed:?}");
        let status_object: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        prop_assert_eq!(&status_object["kind"], "Status");
    }
}

/// YAML that expands exponentially (a "billion laughs" of aliases) and deeply nested JSON and
/// YAML are refused with a 4xx, promptly, rather than exhausting the server.
#[test]
fn decoding_bombs_get_a_4xx() {
    let mut laughs = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let mut previous = 'a';
    for name in 'b'..='i' {
        let refs = vec![format!("*{previous}"); 9].join(",");
        laughs.push_str(&format!("{name}: &{name} [{refs}]\n"));
        previous = name;
    }
    let deep_json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_yaml = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    for (content_type, body) in [
        ("application/yaml", laughs.into_bytes()),
        ("application/json", deep_json.into_bytes()),
        ("application/yaml", deep_yaml.into_bytes()),
    ] {
        let fuzzed = Fuzzed {
            method: Method::POST,
            path: "/api/v1/namespaces/default/configmaps".to_string(),
            query: String::new(),
            content_type: Some(content_type.as_bytes().to_vec()),
            accept: None,
            authorization: None,
            body,
        };
        let (status, body) = send(Server::NotJson, &fuzzed);
        assert!(
            status.is_client_error(),
            "{status} for a {content_type} bomb: {}",
            String::from_utf8_lossy(&body)
        );
    }
}
