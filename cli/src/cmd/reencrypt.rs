//! `cox reencrypt`: rewrites every stored value of the resources the encryption config covers
//! that is not yet under its first key (a key rotation's third step), straight in the store.
//!
//! With the embedded store the server must be stopped (the database file is locked while it
//! runs); with etcd it may run beside the server (`kubectl get secrets -A -o json | kubectl
//! replace -f -` through the API does the same online). Also the `cox server` plumbing of
//! `--encryption-provider-config`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use coxswain_control_plane::store::{
    EmbeddedStore, EncryptedStore, EncryptionConfig, EtcdStore, Store,
};

/// Arguments of `cox reencrypt`.
#[derive(Args)]
pub struct ReencryptArgs {
    /// The server's data directory (the embedded store is in `<data-dir>/store`).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// etcd client URLs (comma-separated), when the server runs on etcd.
    #[arg(long, value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// The `EncryptionConfiguration` the server runs with; its first key is written.
    #[arg(long, value_name = "FILE")]
    pub encryption_provider_config: PathBuf,
}

/// Reads `--encryption-provider-config`, if given; a bad file is a one-line error naming the
/// field.
pub fn load_config(path: Option<&Path>) -> anyhow::Result<Option<EncryptionConfig>> {
    let Some(path) = path else {
        return Ok(None);
    };
    let config = EncryptionConfig::load(path)
        .with_context(|| format!("--encryption-provider-config {}", path.display()))?;
    if !config.encrypts_anything() {
        eprintln!(
            "cox server: {}: every resource is written with identity (unencrypted)",
            path.display()
        );
    }
    Ok(Some(config))
}

/// `store`, encrypted as `config` says when there is one.
pub fn encrypted(store: Arc<dyn Store>, config: Option<EncryptionConfig>) -> Arc<dyn Store> {
    match config {
        Some(config) => Arc::new(EncryptedStore::new(store, config)),
        None => store,
    }
}

/// Runs `cox reencrypt`.
pub fn run(args: ReencryptArgs) -> anyhow::Result<()> {
    let config = load_config(Some(&args.encryption_provider_config))?
        .context("--encryption-provider-config is required")?;
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(async move {
        let store: Arc<dyn Store> = if args.etcd_endpoints.is_empty() {
            let dir = args.data_dir.join("store");
            Arc::new(EmbeddedStore::open(&dir).with_context(|| {
                format!(
                    "opening the embedded store in {} (stop cox server first)",
                    dir.display()
                )
            })?)
        } else {
            Arc::new(
                EtcdStore::connect(&args.etcd_endpoints)
                    .await
                    .context("connecting to etcd")?,
            )
        };
        let summary = EncryptedStore::new(store, config)
            .rewrite_stale()
            .await
            .context("scanning the store")?;
        println!(
            "checked {}, rewrote {}, changed meanwhile {}, failed {}",
            summary.checked,
            summary.rewritten,
            summary.raced,
            summary.failed.len()
        );
        for (key, error) in &summary.failed {
            eprintln!("{key}: {error}");
        }
        if summary.failed.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("{} values could not be re-encrypted", summary.failed.len())
        }
    })
}
