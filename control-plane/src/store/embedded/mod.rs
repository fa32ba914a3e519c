//! The embedded store: one redb file in a data directory, nothing else to run.
//!
//! Writes go through the group-commit `writer` thread and are fsync'd before they are
//! acknowledged; reads run in redb read transactions on tokio's blocking pool; watches replay the
//! persisted log and then follow the writer's broadcast (`watch`). History older than a window
//! of revisions is compacted automatically (`compaction`). The file is grown with written zeros
//! (`prefilled_file`) so that a commit's fsync does not also have to commit filesystem metadata.

mod compaction;
mod prefilled_file;
mod tables;
mod watch;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use async_trait::async_trait;
use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable};
use tokio::sync::{broadcast, mpsc, oneshot};

use self::prefilled_file::PrefilledFile;
use self::tables::{LOG, META, META_COMPACTED, META_REVISION, VERSIONS, get_live, list_at};
use self::writer::{EventBatch, Op, Outcome, Request, Writer};
use super::{
    ContinueToken, Deleted, KeyValue, ListOptions, ListPage, Result, Revision, Store, StoreError,
    WatchStream, check_key, check_write,
};

/// The database file inside the data directory.
pub const DB_FILE: &str = "store.redb";

/// Settings of the embedded store.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// How many revisions of history are kept for watches and paginated lists; older history is
    /// compacted automatically.
    pub history_revisions: Revision,
    /// How many committed batches the live broadcast to watchers holds; a watcher that falls
    /// further behind reads the persisted log instead.
    pub watch_buffer: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            history_revisions: 100_000,
            watch_buffer: 4096,
        }
    }
}

/// What the writer thread, readers and watchers share.
pub(super) struct Shared {
    db: Database,
    path: PathBuf,
    /// The latest committed revision.
    revision: AtomicU64,
    /// The compacted revision.
    compacted: AtomicU64,
}

/// The embedded (redb) store.
///
/// Dropping it finishes the writes in flight and closes the database, unless a watch stream
/// still holds it (the file stays open until the last one is dropped).
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    requests: Option<mpsc::Sender<Request>>,
    events: broadcast::Sender<Arc<EventBatch>>,
    writer: Option<JoinHandle<()>>,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`, with default options.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(dir, EmbeddedOptions::default())
    }

    /// Opens (or creates) the store in `dir`.
    pub fn open_with(dir: impl AsRef<Path>, options: EmbeddedOptions) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(DB_FILE);
        let wrap = |e: redb::Error| StoreError::embedded(&path, e);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
        let backend = PrefilledFile::new(file).map_err(|e| wrap(e.into()))?;
        let db = redb::Builder::new()
            .create_with_backend(backend)
            .map_err(|e| wrap(e.into()))?;
        let (revision, compacted) = init_tables(&db).map_err(wrap)?;
        let shared = Arc::new(Shared {
            db,
            path: path.clone(),
            revision: AtomicU64::new(revision),
            compacted: AtomicU64::new(compacted),
        });
        let (requests, requests_rx) = mpsc::channel(8192);
        let (events, _) = broadcast::channel(options.watch_buffer.max(1));
        let writer = Writer {
            shared: shared.clone(),
            requests: requests_rx,
            events: events.clone(),
            history: options.history_revisions.max(1),
        };
        let writer = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run())
            .map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(EmbeddedStore {
            shared,
            requests: Some(requests),
            events,
            writer: Some(writer),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The compacted revision: the oldest revision that can still be listed (watches may start
    /// one before it: their first event is at it).
    pub fn compacted_revision(&self) -> Revision {
        self.shared.compacted.load(Ordering::Acquire)
    }

    fn closed(&self) -> StoreError {
        StoreError::Closed {
            what: self.shared.path.display().to_string(),
        }
    }

    /// Hands a change to the writer and waits for the durable commit.
    async fn submit(&self, op: Op) -> Result<Outcome> {
        let (reply, answer) = oneshot::channel();
        let requests = self.requests.as_ref().ok_or_else(|| self.closed())?;
        requests
            .send(Request { op, reply })
            .await
            .map_err(|_| self.closed())?;
        answer.await.map_err(|_| self.closed())?
    }

    /// Runs a read on tokio's blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Shared) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || f(&shared))
            .await
            .map_err(|_| self.closed())?
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // Closing the channel stops the writer after its last batch; joining it means the
        // database is closed (unless a watch still holds it) when drop returns.
        self.requests.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// Creates the tables if needed and reads the counters.
fn init_tables(db: &Database) -> Result<(Revision, Revision), redb::Error> {
    let txn = db.begin_write()?;
    let counters = {
        txn.open_table(VERSIONS)?;
        txn.open_table(LOG)?;
        let meta = txn.open_table(META)?;
        let read = |name| -> Result<Revision, redb::Error> {
            Ok(meta.get(name)?.map_or(0, |v| v.value()))
        };
        (read(META_REVISION)?, read(META_COMPACTED)?)
    };
    txn.commit()?;
    Ok(counters)
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        check_key(key)?;
        let key = key.to_owned();
        self.read(move |shared| {
            let wrap = |e: redb::Error| StoreError::embedded(&shared.path, e);
            let txn = shared.db.begin_read().map_err(|e| wrap(e.into()))?;
            let versions = txn.open_table(VERSIONS).map_err(|e| wrap(e.into()))?;
            get_live(&versions, &key).map_err(|e| wrap(e.into()))
        })
        .await
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListPage> {
        let (at, start) = match &options.continue_token {
            Some(token) => {
                let token = ContinueToken::decode(token, prefix)?;
                (Some(token.revision), token.start)
            }
            None => (None, prefix.to_owned()),
        };
        let prefix = prefix.to_owned();
        self.read(move |shared| {
            let wrap = |e: redb::Error| StoreError::embedded(&shared.path, e);
            let txn = shared.db.begin_read().map_err(|e| wrap(e.into()))?;
            let meta = txn.open_table(META).map_err(|e| wrap(e.into()))?;
            let counter = |name| -> Result<Revision> {
                Ok(meta
                    .get(name)
                    .map_err(|e| wrap(e.into()))?
                    .map_or(0, |v| v.value()))
            };
            let (current, compacted) = (counter(META_REVISION)?, counter(META_COMPACTED)?);
            let revision = at.unwrap_or(current);
            if revision < compacted {
                return Err(StoreError::Expired {
                    requested: revision,
                    compacted: Some(compacted),
                });
            }
            if revision > current {
                return Err(StoreError::FutureRevision {
                    requested: revision,
                    current,
                });
            }
            let versions = txn.open_table(VERSIONS).map_err(|e| wrap(e.into()))?;
            let (items, more) = list_at(&versions, &prefix, &start, revision, options.limit)
                .map_err(|e| wrap(e.into()))?;
            let continue_token = match items.last() {
                Some(last) if more => Some(ContinueToken::after(revision, &last.key).encode()),
                _ => None,
            };
            Ok(ListPage {
                items,
                revision,
                continue_token,
            })
        })
        .await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision> {
        check_write(key, &value)?;
        let key = key.to_owned();
        match self.submit(Op::Create { key, value }).await? {
            Outcome::Written(revision) => Ok(revision),
            _ => Err(self.closed()),
        }
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Option<Revision>,
    ) -> Result<Revision> {
        check_write(key, &value)?;
        let key = key.to_owned();
        match self
            .submit(Op::Update {
                key,
                value,
                expected,
            })
            .await?
        {
            Outcome::Written(revision) => Ok(revision),
            _ => Err(self.closed()),
        }
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<Deleted> {
        check_key(key)?;
        let key = key.to_owned();
        match self.submit(Op::Delete { key, expected }).await? {
            Outcome::Deleted(deleted) => Ok(deleted),
            _ => Err(self.closed()),
        }
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream> {
        // Subscribe before anything is read, so nothing committed from now on can be missed.
        let events = self.events.subscribe();
        let compacted = self.compacted_revision();
        // Like etcd: the first event wanted (from + 1) must not be older than the compacted one.
        if from + 1 < compacted {
            return Err(StoreError::Expired {
                requested: from,
                compacted: Some(compacted),
            });
        }
        Ok(watch::watch_stream(
            self.shared.clone(),
            events,
            prefix.to_owned(),
            from,
        ))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        match self.submit(Op::Compact { revision }).await? {
            Outcome::Compacted => Ok(()),
            _ => Err(self.closed()),
        }
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.revision.load(Ordering::Acquire))
    }
}
