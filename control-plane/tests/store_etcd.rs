//! The store conformance suite against the etcd backend, each case on its own etcd process.
//!
//! These tests need `/usr/bin/etcd` (run scripts/setup.sh); without it they fail, saying so.

mod store_support;

conformance_tests!(store_support::etcd:
    crud_and_typed_errors,
    delete_preconditions,
    list_pagination_is_consistent,
    concurrent_cas_increments,
    watch_resumes_without_gaps,
    watch_reports_previous_values,
    compacted_revisions_expire,
    oversized_values_are_refused,
);

use bytes::Bytes;
use coxswain_control_plane::store::{EtcdStore, LocalEtcd, Store};
use store_support::conformance::next_events;

/// A watch on etcd survives etcd being SIGKILLed and restarted: the stream reconnects by itself
/// and resumes from the last revision it delivered, with no gap and no duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_resumes_after_etcd_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = LocalEtcd::start(dir.path())
        .await
        .unwrap_or_else(|err| panic!("cannot run the etcd store tests: {err}"));
    let store = EtcdStore::connect(&[etcd.endpoint().to_owned()])
        .await
        .unwrap();
    let prefix = "/registry/core/pods/restart/";
    let start = store.current_revision().await.unwrap();
    let mut stream = store.watch(prefix, start).await.unwrap();
    let mut acked = Vec::new();
    for i in 0..20 {
        let key = format!("{prefix}before-{i}");
        acked.push(store.create(&key, Bytes::from_static(b"x")).await.unwrap());
    }
    let mut seen: Vec<u64> = next_events(&mut stream, 20)
        .await
        .iter()
        .map(|e| e.revision())
        .collect();

    etcd.restart().await.unwrap();
    // The client reconnects on its own; wait until it answers again.
    let mut tries = 0;
    while store.current_revision().await.is_err() {
        tries += 1;
        assert!(tries < 100, "etcd did not come back");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for i in 0..20 {
        let key = format!("{prefix}after-{i}");
        acked.push(store.create(&key, Bytes::from_static(b"y")).await.unwrap());
    }
    seen.extend(
        next_events(&mut stream, 20)
            .await
            .iter()
            .map(|e| e.revision()),
    );
    assert_eq!(seen, acked);
}
