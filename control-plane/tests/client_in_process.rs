//! The in-process client drives the API like kubectl does: typed CRUD and kube-runtime watchers.

use std::sync::Arc;

use coxswain_control_plane::apiserver::ApiServer;
use coxswain_control_plane::client::in_process;
use coxswain_control_plane::store::EmbeddedStore;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn typed_create_list_and_watch_go_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let server = ApiServer::new(store, CancellationToken::new())
        .await
        .unwrap();
    let client = in_process(&server);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p1"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap();
    let created = pods.create(&PostParams::default(), &pod).await.unwrap();
    assert!(
        created.metadata.uid.is_some(),
        "the API server assigns a uid"
    );
    let mut events = watcher(pods.clone(), watcher::Config::default()).boxed();
    let mut seen = Vec::new();
    while let Some(event) = events.next().await {
        match event.unwrap() {
            watcher::Event::InitApply(p) => seen.push(p.metadata.name.unwrap()),
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(seen, vec!["p1".to_string()]);
    let err = pods.create(&PostParams::default(), &pod).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409),
        "{err:?}"
    );
}
