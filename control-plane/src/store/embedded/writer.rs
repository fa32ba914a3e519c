//! The embedded store's single writer thread: group commit.
//!
//! Every write is a [`Request`] on one channel. The writer thread (a plain OS thread, so redb's
//! blocking calls and fsyncs never run on a tokio worker) takes the first request, drains every
//! other pending one, applies them all in one write transaction, commits once with an fsync, and
//! only then answers each request and publishes the batch's events to watchers. Concurrent
//! writers therefore share fsyncs: the more writers, the larger the batches.
//!
//! A request that fails its precondition (exists, conflict, not found) writes nothing and does not
//! consume a revision; a batch in which nothing succeeded is not committed at all.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use redb::Durability;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::Shared;
use super::compaction;
use super::tables::{LOG, META, META_REVISION, Record, VERSIONS, latest};
use crate::store::{Deleted, KeyValue, Result, Revision, StoreError, WatchEvent};

/// The most requests applied in one transaction.
const MAX_BATCH: usize = 4096;

/// A change to apply.
pub(super) enum Op {
    /// Create a key that must not exist.
    Create { key: String, value: Bytes },
    /// Replace an existing key, optionally only at an expected revision.
    Update {
        key: String,
        value: Bytes,
        expected: Option<Revision>,
    },
    /// Delete an existing key, optionally only at an expected revision.
    Delete {
        key: String,
        expected: Option<Revision>,
    },
    /// Forget history before a revision.
    Compact { revision: Revision },
}

/// What a successful request produced.
pub(super) enum Outcome {
    /// A create or update, at this revision.
    Written(Revision),
    /// A delete.
    Deleted(Deleted),
    /// A compaction.
    Compacted,
}

/// One request and where its answer goes.
pub(super) struct Request {
    /// The change.
    pub op: Op,
    /// Answered after the commit that made the change durable.
    pub reply: oneshot::Sender<Result<Outcome>>,
}

/// The events of one commit: revisions `first..=last`, every one of them, in order.
pub(super) struct EventBatch {
    /// The first revision of the commit.
    pub first: Revision,
    /// The last revision of the commit.
    pub last: Revision,
    /// One event per revision.
    pub events: Vec<WatchEvent>,
}

/// The writer thread's state.
pub(super) struct Writer {
    pub shared: Arc<Shared>,
    pub requests: mpsc::Receiver<Request>,
    pub events: broadcast::Sender<Arc<EventBatch>>,
    /// How many revisions of history automatic compaction keeps.
    pub history: Revision,
}

type Applied = (Vec<Result<Outcome>>, Vec<WatchEvent>, Revision);

impl Writer {
    /// Runs until every request sender is gone.
    pub fn run(mut self) {
        let mut pending = Vec::new();
        while let Some(first) = self.requests.blocking_recv() {
            pending.push(first);
            while pending.len() < MAX_BATCH {
                match self.requests.try_recv() {
                    Ok(request) => pending.push(request),
                    Err(_) => break,
                }
            }
            let (compactions, writes): (Vec<_>, Vec<_>) = pending
                .drain(..)
                .partition(|r| matches!(r.op, Op::Compact { .. }));
            self.commit(writes);
            for request in compactions {
                if let Op::Compact { revision } = request.op {
                    let result = compaction::compact(&self.shared, revision, usize::MAX);
                    let _ = request.reply.send(result.map(|()| Outcome::Compacted));
                }
            }
            self.auto_compact();
        }
    }

    /// Applies a batch of writes in one transaction, commits, answers, publishes.
    fn commit(&mut self, batch: Vec<Request>) {
        if batch.is_empty() {
            return;
        }
        let base = self.shared.revision.load(Ordering::Acquire);
        match self.apply(&batch, base) {
            Ok((results, events, last)) => {
                self.shared.revision.store(last, Ordering::Release);
                if last > base {
                    // No receivers is fine: nobody watches.
                    let _ = self.events.send(Arc::new(EventBatch {
                        first: base + 1,
                        last,
                        events,
                    }));
                }
                for (request, result) in batch.into_iter().zip(results) {
                    let _ = request.reply.send(result);
                }
            }
            Err(err) => {
                tracing::error!(path = %self.shared.path.display(), error = %err, "store commit failed");
                let message = err.to_string();
                for request in batch {
                    let source = redb::Error::Io(std::io::Error::other(message.clone()));
                    let _ = request
                        .reply
                        .send(Err(StoreError::embedded(&self.shared.path, source)));
                }
            }
        }
    }

    fn apply(&self, batch: &[Request], base: Revision) -> Result<Applied, redb::Error> {
        let mut txn = self.shared.db.begin_write()?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| redb::Error::Io(std::io::Error::other(e.to_string())))?;
        let mut results = Vec::with_capacity(batch.len());
        let mut events = Vec::new();
        let mut revision = base;
        {
            let mut versions = txn.open_table(VERSIONS)?;
            let mut log = txn.open_table(LOG)?;
            for request in batch {
                match apply_one(&mut versions, &mut log, &request.op, revision + 1)? {
                    Ok((outcome, event)) => {
                        revision += 1;
                        events.push(event);
                        results.push(Ok(outcome));
                    }
                    Err(err) => results.push(Err(err)),
                }
            }
            if revision > base {
                txn.open_table(META)?.insert(META_REVISION, revision)?;
            }
        }
        if revision > base {
            txn.commit()?;
        } else {
            txn.abort()?;
        }
        Ok((results, events, revision))
    }

    /// Keeps the history window: compacts a slice of the oldest history when it has grown
    /// past the window by more than a slack, so each pass is short and writers barely wait.
    fn auto_compact(&self) {
        let revision = self.shared.revision.load(Ordering::Acquire);
        let compacted = self.shared.compacted.load(Ordering::Acquire);
        let slack = (self.history / 8).clamp(1, 4096);
        let target = revision.saturating_sub(self.history);
        if target >= compacted + slack
            && let Err(err) = compaction::compact(&self.shared, target, 8192)
        {
            tracing::warn!(path = %self.shared.path.display(), error = %err, "automatic compaction failed");
        }
    }
}

type VersionsTable<'t> = redb::Table<'t, (&'static str, u64), &'static [u8]>;
type LogTable<'t> = redb::Table<'t, u64, (&'static str, u64)>;

/// Applies one change at revision `next`. The outer error is the database's; the inner one the
/// request's own (it then writes nothing).
fn apply_one(
    versions: &mut VersionsTable<'_>,
    log: &mut LogTable<'_>,
    op: &Op,
    next: Revision,
) -> Result<Result<(Outcome, WatchEvent)>, redb::Error> {
    let (key, expected) = match op {
        Op::Create { key, value } => {
            let prev_rev = match latest(&*versions, key)? {
                Some((_, Record::Live { .. })) => {
                    return Ok(Err(StoreError::AlreadyExists { key: key.clone() }));
                }
                Some((rev, Record::Tombstone)) => rev,
                None => 0,
            };
            versions.insert(
                (key.as_str(), next),
                Record::encode_live(next, value).as_slice(),
            )?;
            log.insert(next, (key.as_str(), prev_rev))?;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: next,
                mod_revision: next,
                stale: false,
            };
            return Ok(Ok((
                Outcome::Written(next),
                WatchEvent::Put { kv, prev: None },
            )));
        }
        Op::Update { key, expected, .. } | Op::Delete { key, expected } => (key, *expected),
        Op::Compact { .. } => unreachable!("compactions are not batched with writes"),
    };
    let (current, create_revision, old) = match latest(&*versions, key)? {
        Some((
            rev,
            Record::Live {
                create_revision,
                value,
            },
        )) => (rev, create_revision, value),
        _ => return Ok(Err(StoreError::NotFound { key: key.clone() })),
    };
    if let Some(expected) = expected
        && expected != current
    {
        return Ok(Err(StoreError::Conflict {
            key: key.clone(),
            expected,
            current,
        }));
    }
    let prev = KeyValue {
        key: key.clone(),
        value: old,
        create_revision,
        mod_revision: current,
        stale: false,
    };
    log.insert(next, (key.as_str(), current))?;
    if let Op::Update { value, .. } = op {
        versions.insert(
            (key.as_str(), next),
            Record::encode_live(create_revision, value).as_slice(),
        )?;
        let kv = KeyValue {
            key: key.clone(),
            value: value.clone(),
            create_revision,
            mod_revision: next,
            stale: false,
        };
        Ok(Ok((
            Outcome::Written(next),
            WatchEvent::Put {
                kv,
                prev: Some(prev),
            },
        )))
    } else {
        versions.insert((key.as_str(), next), Record::TOMBSTONE)?;
        let event = WatchEvent::Delete {
            key: key.clone(),
            revision: next,
            prev: Some(prev.clone()),
        };
        Ok(Ok((
            Outcome::Deleted(Deleted {
                prev,
                revision: next,
            }),
            event,
        )))
    }
}
