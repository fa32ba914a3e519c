//! A test API server started in-process on 127.0.0.1:0, over the embedded store or over an etcd
//! started for the test, with a kubeconfig written beside it.

#![allow(dead_code, reason = "each test binary uses part of the support module")]

use std::path::PathBuf;
use std::sync::Arc;

use coxswain_control_plane::apiserver::{ApiServer, kubeconfig};
use coxswain_control_plane::store::{EmbeddedStore, EtcdStore, LocalEtcd, Store};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

/// Which store the server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded redb store.
    Embedded,
    /// etcd, started by the test.
    Etcd,
}

/// A running test server; stopped when dropped.
pub struct TestServer {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The kubeconfig pointing at it.
    pub kubeconfig: PathBuf,
    /// The server's store, for direct checks.
    pub store: Arc<dyn Store>,
    shutdown: CancellationToken,
    _etcd: Option<LocalEtcd>,
    _dir: TempDir,
}

impl TestServer {
    /// Starts a server on `backend`.
    pub async fn start(backend: Backend) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let (store, etcd): (Arc<dyn Store>, Option<LocalEtcd>) = match backend {
            Backend::Embedded => (
                Arc::new(EmbeddedStore::open(dir.path().join("store"))?),
                None,
            ),
            Backend::Etcd => {
                let etcd = LocalEtcd::start(&dir.path().join("etcd")).await?;
                let store = EtcdStore::connect(&[etcd.endpoint().to_string()]).await?;
                (Arc::new(store), Some(etcd))
            }
        };
        let shutdown = CancellationToken::new();
        let server = ApiServer::new(store.clone(), shutdown.clone()).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(server.serve(listener));
        let kubeconfig = dir.path().join("kubeconfig");
        kubeconfig::write(&kubeconfig, &url)?;
        Ok(TestServer {
            url,
            kubeconfig,
            store,
            shutdown,
            _etcd: etcd,
            _dir: dir,
        })
    }

    /// `url` + `path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// An HTTP client for tests.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .build()
        .expect("building an HTTP client")
}
