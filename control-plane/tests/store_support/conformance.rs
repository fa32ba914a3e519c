//! The store conformance suite: one `async fn` per case, run unchanged against every backend
//! (`store_embedded.rs`, `store_etcd.rs`). Cases assert behaviour only, never timings.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use coxswain_control_plane::store::{
    ListOptions, MAX_VALUE_BYTES, Revision, Store, StoreError, WatchEvent, WatchStream,
};
use futures::StreamExt;

const PODS: &str = "/registry/core/pods/";

fn bytes(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// Create, get, update with and without CAS, delete, and every typed error on the way.
pub async fn crud_and_typed_errors(store: Arc<dyn Store>) {
    let key = "/registry/core/pods/default/web-0";
    assert_eq!(store.get(key).await.unwrap(), None);

    let created = store.create(key, bytes("v1")).await.unwrap();
    let kv = store.get(key).await.unwrap().expect("created key");
    assert_eq!(kv.value, bytes("v1"));
    assert_eq!((kv.create_revision, kv.mod_revision), (created, created));
    assert_eq!(store.current_revision().await.unwrap(), created);

    let err = store.create(key, bytes("again")).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err:?}");
    assert!(err.to_string().contains(key), "{err}");

    let updated = store.update(key, bytes("v2"), Some(created)).await.unwrap();
    assert!(updated > created);
    let kv = store.get(key).await.unwrap().unwrap();
    assert_eq!(kv.value, bytes("v2"));
    assert_eq!((kv.create_revision, kv.mod_revision), (created, updated));

    // A stale revision loses, and the error carries the current one.
    match store.update(key, bytes("stale"), Some(created)).await {
        Err(StoreError::Conflict {
            key: k,
            expected,
            current,
        }) => assert_eq!((k.as_str(), expected, current), (key, created, updated)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.get(key).await.unwrap().unwrap().value, bytes("v2"));

    let unconditional = store.update(key, bytes("v3"), None).await.unwrap();
    assert!(unconditional > updated);

    let missing = "/registry/core/pods/default/missing";
    for result in [
        store.update(missing, bytes("x"), None).await,
        store.update(missing, bytes("x"), Some(1)).await,
    ] {
        assert!(
            matches!(result, Err(StoreError::NotFound { .. })),
            "{result:?}"
        );
    }

    let deleted = store.delete(key, None).await.unwrap();
    assert_eq!(deleted.prev.value, bytes("v3"));
    assert_eq!(deleted.prev.mod_revision, unconditional);
    assert!(deleted.revision > unconditional);
    assert_eq!(store.get(key).await.unwrap(), None);
    assert_eq!(store.current_revision().await.unwrap(), deleted.revision);
    let err = store.delete(key, None).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");

    // A deleted key can be created again, with a new create revision.
    let recreated = store.create(key, bytes("v4")).await.unwrap();
    let kv = store.get(key).await.unwrap().unwrap();
    assert_eq!(
        (kv.create_revision, kv.mod_revision),
        (recreated, recreated)
    );

    let err = store.create("no-slash", bytes("x")).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidKey { .. }), "{err:?}");
}

/// Deletes preconditioned on a revision: a stale one conflicts and deletes nothing.
pub async fn delete_preconditions(store: Arc<dyn Store>) {
    let key = "/registry/core/configmaps/default/settings";
    let first = store.create(key, bytes("a")).await.unwrap();
    let second = store.update(key, bytes("b"), None).await.unwrap();

    match store.delete(key, Some(first)).await {
        Err(StoreError::Conflict {
            expected, current, ..
        }) => assert_eq!((expected, current), (first, second)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.get(key).await.unwrap().unwrap().value, bytes("b"));

    let deleted = store.delete(key, Some(second)).await.unwrap();
    assert_eq!(deleted.prev.value, bytes("b"));
    assert_eq!(deleted.prev.mod_revision, second);

    let err = store.delete(key, Some(second)).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
}

/// Pages of a list all read at the first page's revision, whatever is written in between.
pub async fn list_pagination_is_consistent(store: Arc<dyn Store>) {
    let prefix = "/registry/core/pods/ns1/";
    let mut expected = BTreeMap::new();
    for i in 0..25 {
        let key = format!("{prefix}pod-{i:02}");
        store.create(&key, bytes(&format!("v{i}"))).await.unwrap();
        expected.insert(key, bytes(&format!("v{i}")));
    }
    // Neighbours that the prefix must not pick up.
    store
        .create("/registry/core/pods/ns10/x", bytes("no"))
        .await
        .unwrap();
    store
        .create("/registry/core/pods/ns0/x", bytes("no"))
        .await
        .unwrap();
    store
        .create("/registry/core/podsx/ns1/x", bytes("no"))
        .await
        .unwrap();

    let first = store
        .list(
            prefix,
            ListOptions {
                limit: 10,
                continue_token: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(first.items.len(), 10);
    let at = first.revision;
    assert_eq!(at, store.current_revision().await.unwrap());

    // Writes after the first page must not show in the next pages.
    store
        .delete(&format!("{prefix}pod-15"), None)
        .await
        .unwrap();
    store
        .update(&format!("{prefix}pod-20"), bytes("changed"), None)
        .await
        .unwrap();
    store
        .create(&format!("{prefix}pod-12a"), bytes("new"))
        .await
        .unwrap();

    let mut seen: Vec<(String, Bytes)> = first
        .items
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect();
    let mut token = first.continue_token.clone();
    let mut pages = 1;
    while let Some(t) = token {
        let page = store
            .list(
                prefix,
                ListOptions {
                    limit: 10,
                    continue_token: Some(t),
                },
            )
            .await
            .unwrap();
        assert_eq!(
            page.revision, at,
            "every page reads at the first page's revision"
        );
        assert!(page.items.len() <= 10);
        assert!(page.items.iter().all(|kv| kv.mod_revision <= at));
        seen.extend(
            page.items
                .iter()
                .map(|kv| (kv.key.clone(), kv.value.clone())),
        );
        token = page.continue_token;
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, expected.clone().into_iter().collect::<Vec<_>>());

    // A fresh list sees the new state; limit 0 means everything.
    let now = store.list(prefix, ListOptions::default()).await.unwrap();
    assert!(now.revision > at);
    assert_eq!(now.continue_token, None);
    assert_eq!(now.items.len(), 25);
    assert!(now.items.iter().any(|kv| kv.key.ends_with("pod-12a")));
    assert!(!now.items.iter().any(|kv| kv.key.ends_with("pod-15")));
    let keys: Vec<_> = now.items.iter().map(|kv| kv.key.clone()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "items come in key order");

    // An exact page boundary has no dangling token.
    let exact = store
        .list(
            prefix,
            ListOptions {
                limit: 25,
                continue_token: None,
            },
        )
        .await
        .unwrap();
    assert_eq!((exact.items.len(), exact.continue_token), (25, None));

    let err = store
        .list(
            prefix,
            ListOptions {
                limit: 10,
                continue_token: Some("bogus".into()),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidContinue { .. }), "{err:?}");
    let other = store
        .list(
            "/registry/core/nodes/",
            ListOptions {
                limit: 1,
                continue_token: first.continue_token,
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(other, StoreError::InvalidContinue { .. }),
        "{other:?}"
    );
}

/// 32 writers doing read / compare-and-swap / retry increments of one counter lose nothing.
pub async fn concurrent_cas_increments(store: Arc<dyn Store>) {
    const WRITERS: u64 = 32;
    const EACH: u64 = 10;
    let key = "/registry/coxswain.dev/counters/default/c";
    store.create(key, bytes("0")).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0u64;
            for _ in 0..EACH {
                loop {
                    let kv = store.get(key).await.unwrap().unwrap();
                    let n: u64 = std::str::from_utf8(&kv.value).unwrap().parse().unwrap();
                    let next = bytes(&(n + 1).to_string());
                    match store.update(key, next, Some(kv.mod_revision)).await {
                        Ok(_) => break,
                        Err(StoreError::Conflict { .. }) => conflicts += 1,
                        Err(err) => panic!("increment failed: {err}"),
                    }
                }
            }
            conflicts
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let kv = store.get(key).await.unwrap().unwrap();
    assert_eq!(kv.value, bytes(&(WRITERS * EACH).to_string()));
}

/// What a watcher must see for one acknowledged write.
#[derive(Clone, Debug, PartialEq)]
enum Change {
    Put(String, Bytes),
    Delete(String),
}

fn change_of(event: &WatchEvent) -> Change {
    match event {
        WatchEvent::Put { kv, .. } => Change::Put(kv.key.clone(), kv.value.clone()),
        WatchEvent::Delete { key, .. } => Change::Delete(key.clone()),
    }
}

/// A watcher that drops its stream every few events and resumes from the last revision it saw,
/// while writes go on, sees every change under its prefix exactly once, in revision order.
pub async fn watch_resumes_without_gaps(store: Arc<dyn Store>) {
    let prefix = "/registry/core/pods/watched/";
    let start = store.current_revision().await.unwrap();
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut acked = BTreeMap::new();
            for i in 0..300u32 {
                let key = format!("{prefix}pod-{}", i % 20);
                let value = bytes(&format!("value-{i}"));
                let (revision, change) = if i % 7 == 6 {
                    match store.delete(&key, None).await {
                        Ok(deleted) => (deleted.revision, Change::Delete(key)),
                        Err(StoreError::NotFound { .. }) => continue,
                        Err(err) => panic!("{err}"),
                    }
                } else {
                    let revision = match store.update(&key, value.clone(), None).await {
                        Ok(rev) => rev,
                        Err(StoreError::NotFound { .. }) => {
                            store.create(&key, value.clone()).await.unwrap()
                        }
                        Err(err) => panic!("{err}"),
                    };
                    (revision, Change::Put(key, value))
                };
                acked.insert(revision, change);
                // Writes outside the prefix must not show up.
                if i.is_multiple_of(5) {
                    let other = format!("/registry/core/nodes/node-{i}");
                    store.create(&other, bytes("node")).await.unwrap();
                }
                if i.is_multiple_of(16) {
                    tokio::task::yield_now().await;
                }
            }
            acked
        })
    };

    let mut seen: Vec<(Revision, Change)> = Vec::new();
    let mut last = start;
    let mut reconnects = 0;
    let mut writer = writer;
    let mut acked: Option<BTreeMap<Revision, Change>> = None;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut stream = store.watch(prefix, last).await.unwrap();
    loop {
        if acked.is_none() && writer.is_finished() {
            acked = Some((&mut writer).await.unwrap());
        }
        // Done once the writer is done and its last write under the prefix has been seen.
        if let Some(acked) = &acked
            && acked.keys().next_back().is_none_or(|max| last >= *max)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "watch stalled at {last}"
        );
        let next = tokio::time::timeout(std::time::Duration::from_millis(200), stream.next()).await;
        let event = match next {
            Ok(Some(Ok(event))) => event,
            Ok(Some(Err(err))) => panic!("watch failed: {err}"),
            Ok(None) => panic!("watch ended"),
            Err(_) => continue,
        };
        let revision = event.revision();
        assert!(
            revision > last,
            "revision {revision} after {last}: out of order or duplicate"
        );
        assert!(
            event.key().starts_with(prefix),
            "{} is outside the prefix",
            event.key()
        );
        last = revision;
        seen.push((revision, change_of(&event)));
        if seen.len().is_multiple_of(37) {
            // Drop the stream and resume from the last revision seen.
            drop(stream);
            reconnects += 1;
            stream = store.watch(prefix, last).await.unwrap();
        }
    }
    // Nothing beyond the writes: no stray event follows.
    let extra = tokio::time::timeout(std::time::Duration::from_millis(200), stream.next()).await;
    assert!(extra.is_err(), "unexpected event {extra:?}");
    assert!(reconnects >= 5, "only {reconnects} reconnects");
    let expected: Vec<(Revision, Change)> = acked.unwrap_or_default().into_iter().collect();
    assert_eq!(seen.len(), expected.len());
    assert_eq!(seen, expected);
}

/// Watch events carry the previous value where the backend has it.
pub async fn watch_reports_previous_values(store: Arc<dyn Store>) {
    let key = "/registry/core/secrets/default/token";
    let start = store.current_revision().await.unwrap();
    let mut stream = store.watch("/registry/core/secrets/", start).await.unwrap();
    let r1 = store.create(key, bytes("one")).await.unwrap();
    let r2 = store.update(key, bytes("two"), Some(r1)).await.unwrap();
    let r3 = store.delete(key, Some(r2)).await.unwrap().revision;
    let events = next_events(&mut stream, 3).await;
    match &events[0] {
        WatchEvent::Put { kv, prev } => {
            assert_eq!((kv.mod_revision, kv.create_revision, prev), (r1, r1, &None));
        }
        other => panic!("{other:?}"),
    }
    match &events[1] {
        WatchEvent::Put { kv, prev } => {
            assert_eq!((kv.mod_revision, kv.value.clone()), (r2, bytes("two")));
            let prev = prev.as_ref().expect("previous value");
            assert_eq!((prev.mod_revision, prev.value.clone()), (r1, bytes("one")));
        }
        other => panic!("{other:?}"),
    }
    match &events[2] {
        WatchEvent::Delete {
            key: k,
            revision,
            prev,
        } => {
            assert_eq!((k.as_str(), *revision), (key, r3));
            assert_eq!(prev.as_ref().expect("previous value").value, bytes("two"));
        }
        other => panic!("{other:?}"),
    }
}

/// After a compaction, watching or paging from before it is `Expired`; from it, it works.
pub async fn compacted_revisions_expire(store: Arc<dyn Store>) {
    let prefix = "/registry/core/events/default/";
    let mut revisions = Vec::new();
    for i in 0..20 {
        revisions.push(
            store
                .create(&format!("{prefix}e-{i:02}"), bytes("e"))
                .await
                .unwrap(),
        );
    }
    let first_page = store
        .list(
            prefix,
            ListOptions {
                limit: 5,
                continue_token: None,
            },
        )
        .await
        .unwrap();
    for i in 0..5 {
        store
            .update(&format!("{prefix}e-{i:02}"), bytes("f"), None)
            .await
            .unwrap();
    }
    let current = store.current_revision().await.unwrap();
    let compact_at = current - 2;
    store.compact(compact_at).await.unwrap();
    // Compacting to the same revision again is harmless.
    store.compact(compact_at).await.unwrap();

    let err = expect_watch_error(&*store, prefix, revisions[0]).await;
    assert!(matches!(err, StoreError::Expired { .. }), "{err:?}");
    assert!(err.to_string().contains("compacted"), "{err}");

    let err = store
        .list(
            prefix,
            ListOptions {
                limit: 5,
                continue_token: first_page.continue_token,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Expired { .. }), "{err:?}");

    // From the compacted revision on, watching works and replays what followed.
    let mut stream = store.watch(prefix, compact_at).await.unwrap();
    let events = next_events(&mut stream, 2).await;
    assert_eq!(
        events.iter().map(WatchEvent::revision).collect::<Vec<_>>(),
        vec![current - 1, current]
    );
    let r = store
        .create(&format!("{prefix}late"), bytes("l"))
        .await
        .unwrap();
    assert_eq!(next_events(&mut stream, 1).await[0].revision(), r);

    let err = store.compact(r + 1000).await.unwrap_err();
    assert!(matches!(err, StoreError::FutureRevision { .. }), "{err:?}");
}

/// Values over 1.5 MiB are refused with an error that states the size and the limit.
pub async fn oversized_values_are_refused(store: Arc<dyn Store>) {
    let key = "/registry/core/configmaps/default/huge";
    let huge = Bytes::from(vec![b'x'; MAX_VALUE_BYTES + 1]);
    let err = store.create(key, huge.clone()).await.unwrap_err();
    match &err {
        StoreError::TooLarge { size, limit, .. } => {
            assert_eq!((*size, *limit), (MAX_VALUE_BYTES + 1, MAX_VALUE_BYTES));
        }
        other => panic!("expected too large, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("1572865") && message.contains("1572864"),
        "{message}"
    );
    assert!(message.contains(key), "{message}");
    assert_eq!(store.get(key).await.unwrap(), None);

    // Exactly the limit is fine.
    let big = Bytes::from(vec![b'y'; MAX_VALUE_BYTES]);
    let rev = store.create(key, big.clone()).await.unwrap();
    let err = store.update(key, huge, Some(rev)).await.unwrap_err();
    assert!(matches!(err, StoreError::TooLarge { .. }), "{err:?}");
    assert_eq!(store.get(key).await.unwrap().unwrap().value, big);
}

/// The next `n` events, failing the test if they do not come.
pub async fn next_events(stream: &mut WatchStream, n: usize) -> Vec<WatchEvent> {
    let mut events = Vec::new();
    while events.len() < n {
        let next = tokio::time::timeout(std::time::Duration::from_secs(30), stream.next())
            .await
            .expect("a watch event within 30s");
        events.push(next.expect("watch ended").expect("watch failed"));
    }
    events
}

/// The error a watch from `from` fails with: at once, or as its first item (etcd may only say
/// so once the watch is open).
pub async fn expect_watch_error(store: &dyn Store, prefix: &str, from: Revision) -> StoreError {
    match store.watch(prefix, from).await {
        Err(err) => err,
        Ok(mut stream) => {
            let next = tokio::time::timeout(std::time::Duration::from_secs(30), stream.next())
                .await
                .expect("an answer within 30s");
            match next {
                Some(Err(err)) => err,
                other => panic!("expected the watch to fail, got {other:?}"),
            }
        }
    }
}
