//! Secrets encrypted at rest (`--encryption-provider-config`): the embedded store's file and
//! etcd hold no plaintext, the API and its watches see plaintext, keys rotate by replacing
//! every secret, and values under a key that is gone get a clear 500 — on both backends.
//!
//! "Restarting" a server here means a new API server over the same backend with a new
//! configuration: the backend is what persists, the encryption wrapper is rebuilt at start.
//! The etcd tests need `/usr/bin/etcd` (scripts/setup.sh); without it they fail, saying so.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use coxswain_control_plane::apiserver::ApiServer;
use coxswain_control_plane::store::{
    EmbeddedStore, EncryptedStore, EncryptionConfig, EtcdStore, LocalEtcd, Store,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const KEY1: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const KEY2: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";
const SECRETS: &str = "/api/v1/namespaces/default/secrets";
const OTHER_SECRETS: &str = "/api/v1/namespaces/other/secrets";
const CANARY: &str = "hunter2-canary-7f3a9c1e5b";

/// An `EncryptionConfiguration` for secrets with these `(name, secret)` aesgcm keys, then
/// identity when `identity`.
fn config(keys: &[(&str, &str)], identity: bool) -> EncryptionConfig {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(name, secret)| json!({"name": name, "secret": secret}))
        .collect();
    let mut providers = vec![json!({"aesgcm": {"keys": keys}})];
    if identity {
        providers.push(json!({"identity": {}}));
    }
    let text = json!({
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [{"resources": ["secrets"], "providers": providers}],
    });
    EncryptionConfig::parse(text.to_string().as_bytes()).expect("a valid config")
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// A backend that outlives the servers started on it.
struct Backend {
    store: Arc<dyn Store>,
    etcd: Option<LocalEtcd>,
    dir: tempfile::TempDir,
}

impl Backend {
    fn embedded() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path().join("store")).unwrap();
        Backend {
            store: Arc::new(store),
            etcd: None,
            dir,
        }
    }

    async fn etcd() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let etcd = LocalEtcd::start(&dir.path().join("etcd"))
            .await
            .unwrap_or_else(|err| panic!("cannot run the etcd encryption tests: {err}"));
        let store = EtcdStore::connect(&[etcd.endpoint().to_string()])
            .await
            .unwrap();
        Backend {
            store: Arc::new(store),
            etcd: Some(etcd),
            dir,
        }
    }

    /// Starts an API server on this backend, encrypting as `config` says.
    async fn serve(&self, config: Option<EncryptionConfig>) -> Server {
        let store: Arc<dyn Store> = match config {
            Some(config) => Arc::new(EncryptedStore::new(self.store.clone(), config)),
            None => self.store.clone(),
        };
        let shutdown = CancellationToken::new();
        let api = ApiServer::new(store, shutdown.clone()).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(api.serve(listener));
        Server {
            url,
            shutdown,
            http: reqwest::Client::new(),
        }
    }

    /// The bytes the backend holds for `key`, read without the API or the store trait: the
    /// embedded database file, or etcd's own client.
    async fn raw(&self, key: &str) -> Vec<u8> {
        match &self.etcd {
            Some(etcd) => {
                let mut client = etcd_client::Client::connect([etcd.endpoint()], None)
                    .await
                    .unwrap();
                let response = client.get(key, None).await.unwrap();
                response
                    .kvs()
                    .first()
                    .map(|kv| kv.value().to_vec())
                    .unwrap_or_else(|| panic!("etcd has no {key}"))
            }
            None => self.file_bytes(),
        }
    }

    /// The live value of `key` as the backend holds it (the embedded file also keeps every
    /// older value until compaction, so this asks the backend itself, without the wrapper).
    async fn live_raw(&self, key: &str) -> Vec<u8> {
        match self.etcd {
            Some(_) => self.raw(key).await,
            None => self
                .store
                .get(key)
                .await
                .unwrap()
                .expect("stored")
                .value
                .to_vec(),
        }
    }

    /// Every byte of every file of the embedded store.
    fn file_bytes(&self) -> Vec<u8> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.push(path);
                }
            }
        }
        let mut files = Vec::new();
        walk(&self.dir.path().join("store"), &mut files);
        assert!(!files.is_empty(), "the embedded store has no files");
        files
            .iter()
            .flat_map(|f| std::fs::read(f).unwrap())
            .collect()
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

struct Server {
    url: String,
    shutdown: CancellationToken,
    http: reqwest::Client,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Server {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let code = response.status().as_u16();
        (code, response.json().await.unwrap_or(Value::Null))
    }

    async fn create_secret(&self, name: &str, value: &str) {
        let body = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                          "data": {"password": b64(value)}});
        let (code, answer) = self.send(reqwest::Method::POST, SECRETS, Some(body)).await;
        assert_eq!(code, 201, "{answer}");
    }

    /// The secret's `password`, decoded.
    async fn password(&self, name: &str) -> String {
        let (code, secret) = self.get(name).await;
        assert_eq!(code, 200, "{secret}");
        password_of(&secret)
    }

    async fn get(&self, name: &str) -> (u16, Value) {
        let path = format!("{SECRETS}/{name}");
        self.send(reqwest::Method::GET, &path, None).await
    }

    /// `kubectl get secrets -o json | kubectl replace -f -`: every secret written back as read.
    async fn replace_all(&self) -> usize {
        let (code, list) = self.send(reqwest::Method::GET, SECRETS, None).await;
        assert_eq!(code, 200, "{list}");
        let items = list["items"].as_array().unwrap().clone();
        for mut item in items.clone() {
            item["apiVersion"] = json!("v1");
            item["kind"] = json!("Secret");
            let path = format!("{SECRETS}/{}", item["metadata"]["name"].as_str().unwrap());
            let (code, answer) = self.send(reqwest::Method::PUT, &path, Some(item)).await;
            assert_eq!(code, 200, "{answer}");
        }
        items.len()
    }
}

fn password_of(secret: &Value) -> String {
    let encoded = secret["data"]["password"].as_str().expect("data.password");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    String::from_utf8(bytes).unwrap()
}

fn secret_key(name: &str) -> String {
    format!("/registry/core/secrets/default/{name}")
}

/// A secret is stored encrypted (no plaintext, no base64 of it) and read back in plaintext,
/// through GET, LIST and a watch; a ConfigMap (not in the config) holding the same text is
/// stored as it is, which shows the raw read would have found the plaintext.
async fn stored_encrypted(backend: Backend) {
    let server = backend.serve(Some(config(&[("key1", KEY1)], true))).await;
    let (_, list) = server.send(reqwest::Method::GET, SECRETS, None).await;
    let from = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let watch = server
        .http
        .get(format!(
            "{}{SECRETS}?watch=true&resourceVersion={from}&timeoutSeconds=30",
            server.url
        ))
        .send()
        .await
        .unwrap();

    server.create_secret("db", CANARY).await;
    let raw = backend.raw(&secret_key("db")).await;
    assert!(contains(&raw, "k8s:enc:aesgcm:v1:key1:"));
    assert!(!contains(&raw, CANARY), "the plaintext is in the store");
    assert!(
        !contains(&raw, &b64(CANARY)),
        "the base64 of the plaintext is in the store"
    );

    let configmap = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "plain"},
                           "data": {"note": CANARY}});
    let (code, answer) = server
        .send(
            reqwest::Method::POST,
            "/api/v1/namespaces/default/configmaps",
            Some(configmap),
        )
        .await;
    assert_eq!(code, 201, "{answer}");
    let raw_configmap = backend.raw("/registry/core/configmaps/default/plain").await;
    assert!(
        contains(&raw_configmap, CANARY),
        "configmaps are not encrypted"
    );

    assert_eq!(server.password("db").await, CANARY);
    let (_, list) = server.send(reqwest::Method::GET, SECRETS, None).await;
    let listed = list["items"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(password_of(&listed[0]), CANARY);
    assert_eq!(watched_password(watch, "db").await, CANARY);
}

/// The `password` of `name` in the first watch event about it.
async fn watched_password(mut watch: reqwest::Response, name: &str) -> String {
    let mut buffer = Vec::new();
    loop {
        let chunk = watch
            .chunk()
            .await
            .unwrap()
            .expect("the watch ended before the secret's event");
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let event: Value = serde_json::from_slice(&line).unwrap();
            if event["object"]["metadata"]["name"] == name {
                assert_eq!(event["type"], "ADDED", "{event}");
                return password_of(&event["object"]);
            }
        }
    }
}

#[tokio::test]
async fn secrets_are_encrypted_in_the_embedded_file() {
    stored_encrypted(Backend::embedded()).await;
}

#[tokio::test]
async fn secrets_are_encrypted_in_etcd() {
    stored_encrypted(Backend::etcd().await).await;
}

/// Rotation: key2 put first, restart, replace every secret of `default`: the stored values
/// name key2 and still read once key1 is removed. A secret in another namespace, left out of the
/// replace, then gets a 500 naming key1, and the server goes on serving.
async fn rotation(backend: Backend) {
    let first = backend.serve(Some(config(&[("key1", KEY1)], true))).await;
    for name in ["a", "b", "c"] {
        first.create_secret(name, &format!("{CANARY}-{name}")).await;
    }
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}});
    let (code, answer) = first
        .send(reqwest::Method::POST, "/api/v1/namespaces", Some(namespace))
        .await;
    assert_eq!(code, 201, "{answer}");
    let body = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "left-out"},
                      "data": {"password": b64(CANARY)}});
    let (code, answer) = first
        .send(reqwest::Method::POST, OTHER_SECRETS, Some(body))
        .await;
    assert_eq!(code, 201, "{answer}");
    drop(first);

    let rotated = backend
        .serve(Some(config(&[("key2", KEY2), ("key1", KEY1)], true)))
        .await;
    assert_eq!(rotated.replace_all().await, 3);
    drop(rotated);
    for name in ["a", "b", "c"] {
        assert!(
            backend
                .live_raw(&secret_key(name))
                .await
                .starts_with(b"k8s:enc:aesgcm:v1:key2:"),
            "{name} was not re-encrypted with key2"
        );
    }
    let left_out = "/registry/core/secrets/other/left-out";
    assert!(
        backend
            .live_raw(left_out)
            .await
            .starts_with(b"k8s:enc:aesgcm:v1:key1:")
    );

    let key1_removed = backend.serve(Some(config(&[("key2", KEY2)], true))).await;
    for name in ["a", "b", "c"] {
        assert_eq!(
            key1_removed.password(name).await,
            format!("{CANARY}-{name}")
        );
    }
    let path = format!("{OTHER_SECRETS}/left-out");
    let (code, status) = key1_removed.send(reqwest::Method::GET, &path, None).await;
    assert_eq!(code, 500, "{status}");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains("aesgcm key \"key1\", which is not configured"),
        "{message}"
    );
    assert!(message.contains(left_out), "{message}");
    let (code, _) = key1_removed
        .send(reqwest::Method::GET, OTHER_SECRETS, None)
        .await;
    assert_eq!(code, 500, "a list including it fails too, as in Kubernetes");
    assert_eq!(key1_removed.password("a").await, format!("{CANARY}-a"));
}

#[tokio::test]
async fn rotation_by_replace_on_the_embedded_store() {
    rotation(Backend::embedded()).await;
}

#[tokio::test]
async fn rotation_by_replace_on_etcd() {
    rotation(Backend::etcd().await).await;
}

/// Secrets written before encryption was turned on: a server without a config reads them; with
/// identity listed they read and `rewrite_stale` encrypts them; without identity they are a 500.
#[tokio::test]
async fn plaintext_from_before_encryption() {
    let backend = Backend::embedded();
    let plain = backend.serve(None).await;
    plain.create_secret("old", CANARY).await;
    drop(plain);
    assert_eq!(backend.serve(None).await.password("old").await, CANARY);
    let raw = backend
        .store
        .get(&secret_key("old"))
        .await
        .unwrap()
        .unwrap();
    assert!(contains(&raw.value, &b64(CANARY)));

    let strict = backend.serve(Some(config(&[("key1", KEY1)], false))).await;
    let (code, status) = strict.get("old").await;
    assert_eq!(code, 500, "{status}");
    assert!(status["message"].as_str().unwrap().contains("identity"));
    drop(strict);

    let wrapped = EncryptedStore::new(backend.store.clone(), config(&[("key1", KEY1)], true));
    let summary = wrapped.rewrite_stale().await.unwrap();
    assert_eq!((summary.checked, summary.rewritten), (1, 1), "{summary:?}");
    assert!(summary.failed.is_empty());
    let again = wrapped.rewrite_stale().await.unwrap();
    assert_eq!(
        (again.checked, again.rewritten),
        (1, 0),
        "nothing is stale any more"
    );
    let raw = backend
        .store
        .get(&secret_key("old"))
        .await
        .unwrap()
        .unwrap();
    assert!(raw.value.starts_with(b"k8s:enc:aesgcm:v1:key1:"));
    assert!(!contains(&raw.value, &b64(CANARY)));
    let strict = backend.serve(Some(config(&[("key1", KEY1)], false))).await;
    assert_eq!(strict.password("old").await, CANARY);
}

/// `rewrite_stale` after a rotation moves every value to the new key and reports values it
/// cannot read instead of failing the pass.
#[tokio::test]
async fn rewrite_stale_moves_every_secret_to_the_first_key() {
    let backend = Backend::embedded();
    let server = backend.serve(Some(config(&[("key1", KEY1)], true))).await;
    for i in 0..7 {
        server.create_secret(&format!("s{i}"), CANARY).await;
    }
    drop(server);
    let rotated = EncryptedStore::new(
        backend.store.clone(),
        config(&[("key2", KEY2), ("key1", KEY1)], true),
    );
    let summary = rotated.rewrite_stale().await.unwrap();
    assert_eq!((summary.checked, summary.rewritten), (7, 7), "{summary:?}");
    for i in 0..7 {
        let raw = backend
            .store
            .get(&secret_key(&format!("s{i}")))
            .await
            .unwrap()
            .unwrap();
        assert!(raw.value.starts_with(b"k8s:enc:aesgcm:v1:key2:"));
        let read = rotated
            .get(&secret_key(&format!("s{i}")))
            .await
            .unwrap()
            .unwrap();
        assert!(!read.stale);
    }
    let unknown = EncryptedStore::new(backend.store.clone(), config(&[("key3", KEY1)], true));
    let summary = unknown.rewrite_stale().await.unwrap();
    assert_eq!(summary.failed.len(), 7, "{summary:?}");
    assert!(summary.failed[0].1.contains("\"key2\""));
}
