//! The store conformance suite against the embedded backend, plus what only it has: restarts,
//! automatic compaction, slow watchers and durability across SIGKILL.

mod store_support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;

use bytes::Bytes;
use coxswain_control_plane::store::{EmbeddedOptions, EmbeddedStore, Store, StoreError};
use futures::StreamExt;
use store_support::conformance::{expect_watch_error, next_events};

conformance_tests!(store_support::embedded:
    crud_and_typed_errors,
    delete_preconditions,
    list_pagination_is_consistent,
    concurrent_cas_increments,
    watch_resumes_without_gaps,
    watch_reports_previous_values,
    compacted_revisions_expire,
    oversized_values_are_refused,
);

fn bytes(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// Revisions keep increasing across a restart, and a watch resumes from before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revisions_and_history_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store
            .create("/registry/core/pods/a/x", bytes("1"))
            .await
            .unwrap();
        let rev = store
            .update("/registry/core/pods/a/x", bytes("2"), None)
            .await
            .unwrap();
        store
            .delete("/registry/core/pods/a/x", Some(rev))
            .await
            .unwrap();
        store.current_revision().await.unwrap()
    };
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(store.current_revision().await.unwrap(), before);
    let after = store
        .create("/registry/core/pods/a/x", bytes("3"))
        .await
        .unwrap();
    assert_eq!(after, before + 1);
    let mut stream = store.watch("/registry/core/pods/", 0).await.unwrap();
    let revisions: Vec<_> = next_events(&mut stream, 4)
        .await
        .iter()
        .map(|e| e.revision())
        .collect();
    assert_eq!(revisions, vec![1, 2, 3, 4]);
}

/// Automatic compaction keeps about the configured window of history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_compaction_keeps_the_window() {
    let fixture = store_support::embedded_with(EmbeddedOptions {
        history_revisions: 40,
        ..EmbeddedOptions::default()
    })
    .await;
    let store = fixture.store.clone();
    for i in 0..200 {
        store
            .create(&format!("/registry/core/pods/a/p{i}"), bytes("x"))
            .await
            .unwrap();
    }
    let current = store.current_revision().await.unwrap();
    let err = expect_watch_error(&*store, "/registry/", 1).await;
    assert!(matches!(err, StoreError::Expired { .. }), "{err:?}");
    // The last 40 revisions are still there to watch from.
    let mut stream = store.watch("/registry/", current - 40).await.unwrap();
    assert_eq!(
        next_events(&mut stream, 40)
            .await
            .last()
            .unwrap()
            .revision(),
        current
    );
    // And the data itself is intact.
    let all = store
        .list("/registry/core/pods/a/", Default::default())
        .await
        .unwrap();
    assert_eq!(all.items.len(), 200);
}

/// A watcher that does not read while many commits go by neither blocks the writers nor loses
/// anything: it falls back to the persisted log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watcher_falls_back_to_the_log() {
    let fixture = store_support::embedded_with(EmbeddedOptions {
        watch_buffer: 2,
        ..EmbeddedOptions::default()
    })
    .await;
    let store = fixture.store.clone();
    let start = store.current_revision().await.unwrap();
    let mut stream = store.watch("/registry/", start).await.unwrap();
    // Read one event so the watch is live on the broadcast, then stall it.
    let first = store
        .create("/registry/core/pods/a/first", bytes("x"))
        .await
        .unwrap();
    assert_eq!(next_events(&mut stream, 1).await[0].revision(), first);
    let mut acked = Vec::new();
    for i in 0..100 {
        acked.push(
            store
                .create(&format!("/registry/core/pods/a/p{i}"), bytes("x"))
                .await
                .unwrap(),
        );
    }
    let seen: Vec<_> = next_events(&mut stream, 100)
        .await
        .iter()
        .map(|e| e.revision())
        .collect();
    assert_eq!(seen, acked);
}

/// The writer side of `acknowledged_writes_survive_sigkill`, run in a child process.
#[tokio::test]
#[ignore = "child process of acknowledged_writes_survive_sigkill"]
async fn sigkill_child_writer() {
    let Ok(dir) = std::env::var("COX_STORE_SIGKILL_DIR") else {
        return;
    };
    let store = Arc::new(EmbeddedStore::open(&dir).unwrap());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for writer in 0..8 {
        let store = store.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            for i in 0.. {
                let key = format!("/registry/core/pods/w{writer}/p{i}");
                // 4 KiB values: the file grows (and is extended) many times before the kill.
                let value = Bytes::from(format!("{writer}-{i}-").repeat(512));
                let rev = store.create(&key, value).await.unwrap();
                if tx.send(format!("ACK {key} {rev}")).is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    let mut out = std::io::stdout().lock();
    while let Some(line) = rx.recv().await {
        writeln!(out, "{line}").unwrap();
        out.flush().unwrap();
    }
}

/// Every write a SIGKILLed writer had acknowledged is there after reopening, and revisions go on
/// increasing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "sigkill_child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("COX_STORE_SIGKILL_DIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while acked.len() < 1500 {
        let line = lines.next().expect("the child stopped writing").unwrap();
        if let Some(ack) = line.strip_prefix("ACK ") {
            let (key, rev) = ack.split_once(' ').unwrap();
            acked.push((key.to_owned(), rev.parse::<u64>().unwrap()));
        }
    }
    child.kill().unwrap(); // SIGKILL, mid-stream
    child.wait().unwrap();

    let store = EmbeddedStore::open(dir.path()).unwrap();
    let max = acked.iter().map(|(_, rev)| *rev).max().unwrap();
    for (key, rev) in &acked {
        let kv = store
            .get(key)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{key} lost"));
        assert_eq!(kv.mod_revision, *rev, "{key}");
    }
    let current = store.current_revision().await.unwrap();
    assert!(current >= max);
    let next = store
        .create("/registry/core/pods/after/restart", bytes("x"))
        .await
        .unwrap();
    assert_eq!(next, current + 1);
    // The persisted history is whole: one event per revision, none missing.
    let mut stream = store.watch("/registry/", 0).await.unwrap();
    for expected in 1..=next {
        let event = stream.next().await.unwrap().unwrap();
        assert_eq!(event.revision(), expected);
    }
}
