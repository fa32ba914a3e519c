//! Watches on the embedded store.
//!
//! A watch subscribes to the writer's broadcast of committed batches *before* it reads anything,
//! then replays the persisted log from the requested revision in chunks (catch-up) and switches to
//! the live broadcast when the log has nothing newer. It tracks `seen`, the revision through which
//! every change (under any prefix) has been looked at, and drops anything at or below it, so the
//! overlap between log and broadcast yields no duplicates. A watcher too slow for the broadcast
//! buffer (it lagged), or one that notices a gap, simply goes back to reading the log: writers never
//! wait for watchers and no event is lost. Only when compaction overtakes a very slow watcher does
//! the stream end, with [`StoreError::Expired`] naming the revision to resume from.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::stream;
use redb::ReadableDatabase;
use tokio::sync::broadcast::{self, error::RecvError};

use super::Shared;
use super::tables::{LOG, META, META_COMPACTED, VERSIONS, read_log};
use super::writer::EventBatch;
use crate::store::{Result, Revision, StoreError, WatchEvent, WatchStream};

/// Log rows read per catch-up step.
const CATCH_UP_ROWS: usize = 1024;

enum Mode {
    CatchUp,
    Live,
}

struct State {
    shared: Arc<Shared>,
    prefix: String,
    events: broadcast::Receiver<Arc<EventBatch>>,
    seen: Revision,
    mode: Mode,
    buffer: VecDeque<WatchEvent>,
    done: bool,
}

/// A stream of every change under `prefix` after revision `from`.
pub(super) fn watch_stream(
    shared: Arc<Shared>,
    events: broadcast::Receiver<Arc<EventBatch>>,
    prefix: String,
    from: Revision,
) -> WatchStream {
    let state = State {
        shared,
        prefix,
        events,
        seen: from,
        mode: Mode::CatchUp,
        buffer: VecDeque::new(),
        done: false,
    };
    Box::pin(stream::unfold(state, |mut state| async move {
        let item = state.next().await?;
        Some((item, state))
    }))
}

impl State {
    async fn next(&mut self) -> Option<Result<WatchEvent>> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                return Some(Ok(event));
            }
            if self.done {
                return None;
            }
            let step = match self.mode {
                Mode::CatchUp => self.catch_up().await,
                Mode::Live => self.live().await,
            };
            if let Err(err) = step {
                self.done = true;
                return Some(Err(err));
            }
        }
    }

    /// Reads the next chunk of the log; switches to live once it is exhausted.
    async fn catch_up(&mut self) -> Result<()> {
        let shared = self.shared.clone();
        let prefix = self.prefix.clone();
        let after = self.seen;
        let read = tokio::task::spawn_blocking(move || read_chunk(&shared, &prefix, after))
            .await
            .map_err(|_| StoreError::Closed {
                what: self.shared.path.display().to_string(),
            })?;
        let (events, through) = read?;
        if through == self.seen {
            self.mode = Mode::Live;
        } else {
            self.seen = through;
            self.buffer.extend(events);
        }
        Ok(())
    }

    /// Takes the next committed batch from the writer.
    async fn live(&mut self) -> Result<()> {
        match self.events.recv().await {
            Ok(batch) => {
                if batch.last <= self.seen {
                    return Ok(());
                }
                if batch.first > self.seen + 1 {
                    // Something between was missed: the log has it.
                    self.mode = Mode::CatchUp;
                    return Ok(());
                }
                let seen = self.seen;
                self.buffer.extend(
                    batch
                        .events
                        .iter()
                        .filter(|e| e.revision() > seen && e.key().starts_with(&self.prefix))
                        .cloned(),
                );
                self.seen = batch.last;
                Ok(())
            }
            Err(RecvError::Lagged(_)) => {
                self.mode = Mode::CatchUp;
                Ok(())
            }
            Err(RecvError::Closed) => Err(StoreError::Closed {
                what: self.shared.path.display().to_string(),
            }),
        }
    }
}

/// One chunk of the log after `after`, in one read transaction.
fn read_chunk(
    shared: &Shared,
    prefix: &str,
    after: Revision,
) -> Result<(Vec<WatchEvent>, Revision)> {
    let wrap = |e: redb::Error| StoreError::embedded(&shared.path, e);
    let txn = shared.db.begin_read().map_err(|e| wrap(e.into()))?;
    let meta = txn.open_table(META).map_err(|e| wrap(e.into()))?;
    let compacted = meta
        .get(META_COMPACTED)
        .map_err(|e| wrap(e.into()))?
        .map_or(0, |v| v.value());
    if after + 1 < compacted {
        return Err(StoreError::Expired {
            requested: after,
            compacted: Some(compacted),
        });
    }
    let log = txn.open_table(LOG).map_err(|e| wrap(e.into()))?;
    let versions = txn.open_table(VERSIONS).map_err(|e| wrap(e.into()))?;
    read_log(&log, &versions, prefix, after, CATCH_UP_ROWS).map_err(|e| wrap(e.into()))
}
