//! Cost of encryption at rest (figures for docs/security.md; not a test).
//!
//! 1. CPU: AES-256-GCM encrypt and decrypt of a stored Secret of 1 KiB and 64 KiB, next to a
//!    JSON parse of the same bytes (which every read already pays).
//! 2. End to end: durable creates of 1 KiB Secrets through the embedded store, plain and wrapped
//!    in [`EncryptedStore`], one writer and 16 writers.
//!
//! `cargo run --release -p coxswain-control-plane --example encryption_bench`

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use coxswain_control_plane::store::{EmbeddedStore, EncryptedStore, EncryptionConfig, Store};
use serde_json::json;

const CONFIG: &str = "apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - aesgcm: {keys: [{name: key1, secret: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=}]}
      - identity: {}
";

const KEY: &str = "/registry/core/secrets/default/bench";

fn secret(bytes: usize) -> Bytes {
    let payload = base64::engine::general_purpose::STANDARD.encode(vec![7u8; bytes * 3 / 4]);
    let object = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "bench", "namespace": "default", "uid": "x"},
        "data": {"payload": payload}});
    Bytes::from(serde_json::to_vec(&object).unwrap())
}

fn per_op(start: Instant, ops: usize) -> String {
    let ns = start.elapsed().as_nanos() as f64 / ops as f64;
    if ns > 10_000.0 {
        format!("{:.1} µs", ns / 1000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

fn cpu(config: &EncryptionConfig) {
    let transformer = config.transformer_for(KEY).expect("secrets are covered");
    for size in [1024, 65536] {
        let plain = secret(size);
        let ops = if size > 4096 { 2_000 } else { 50_000 };
        let start = Instant::now();
        let mut sealed = Bytes::new();
        for _ in 0..ops {
            sealed = transformer.encrypt(KEY, &plain).unwrap();
        }
        let encrypt = per_op(start, ops);
        let start = Instant::now();
        for _ in 0..ops {
            std::hint::black_box(transformer.decrypt(KEY, &sealed).unwrap());
        }
        let decrypt = per_op(start, ops);
        let start = Instant::now();
        for _ in 0..ops {
            std::hint::black_box(serde_json::from_slice::<serde_json::Value>(&plain).unwrap());
        }
        let parse = per_op(start, ops);
        println!(
            "{} B secret: encrypt {encrypt}, decrypt {decrypt}, JSON parse {parse}; stored size +{} B",
            plain.len(),
            sealed.len() - plain.len()
        );
    }
}

async fn creates(store: Arc<dyn Store>, writers: usize, ops: usize) -> f64 {
    let value = secret(1024);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (store, value) = (store.clone(), value.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..ops / writers {
                let key = format!("/registry/core/secrets/default/w{w}-{i}");
                store.create(&key, value.clone()).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    ops as f64 / start.elapsed().max(Duration::from_micros(1)).as_secs_f64()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = EncryptionConfig::parse(CONFIG.as_bytes())?;
    cpu(&config);
    for writers in [1, 16] {
        let ops = if writers == 1 { 1_000 } else { 8_000 };
        let dir = tempfile::tempdir()?;
        let plain: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path().join("plain"))?);
        let plain_rate = creates(plain, writers, ops).await;
        let inner: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path().join("enc"))?);
        let config = EncryptionConfig::parse(CONFIG.as_bytes())?;
        let encrypted = Arc::new(EncryptedStore::new(inner, config));
        let encrypted_rate = creates(encrypted, writers, ops).await;
        println!(
            "embedded store, {writers} writer(s), 1 KiB secrets: plain {plain_rate:.0} creates/s, \
             encrypted {encrypted_rate:.0} creates/s"
        );
    }
    Ok(())
}
