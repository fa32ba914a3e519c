//! Shared support for the store tests: fixtures for both backends and the conformance suite.

#![allow(dead_code)]

pub mod conformance;

use std::any::Any;
use std::sync::Arc;

use coxswain_control_plane::store::{EmbeddedOptions, EmbeddedStore, EtcdStore, LocalEtcd, Store};

/// A store under test and whatever must live as long as it (temp dirs, an etcd process).
pub struct Fixture {
    /// The store (declared first: it drops, and closes, before the guards).
    pub store: Arc<dyn Store>,
    /// Dropped after the store: the data directory, the etcd process.
    _guards: Vec<Box<dyn Any + Send>>,
}

/// A fresh embedded store in a temporary directory.
pub async fn embedded() -> Fixture {
    embedded_with(EmbeddedOptions::default()).await
}

/// A fresh embedded store with `options`.
pub async fn embedded_with(options: EmbeddedOptions) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open_with(dir.path(), options).expect("open embedded store");
    Fixture {
        store: Arc::new(store),
        _guards: vec![Box::new(dir)],
    }
}

/// A store on a fresh etcd started for this test (killed when the fixture drops).
///
/// Fails, never skips, when etcd is not installed: the message says to run scripts/setup.sh.
pub async fn etcd() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let etcd = match LocalEtcd::start(dir.path()).await {
        Ok(etcd) => etcd,
        Err(err) => panic!("cannot run the etcd store tests: {err}"),
    };
    let store = EtcdStore::connect(&[etcd.endpoint().to_owned()])
        .await
        .expect("connect to the test etcd");
    Fixture {
        store: Arc::new(store),
        _guards: vec![Box::new(etcd), Box::new(dir)],
    }
}

/// Generates one `#[tokio::test]` per conformance case, each on a fresh store from `$fixture`.
#[macro_export]
macro_rules! conformance_tests {
    ($fixture:path: $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let fixture = $fixture().await;
                store_support::conformance::$case(fixture.store.clone()).await;
            }
        )*
    };
}
