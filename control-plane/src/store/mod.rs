//! The store: a `Store` trait with an embedded (redb) and an etcd backend.
//!
//! Keys are `/registry/<group>/<resource>/<namespace>/<name>` (cluster-scoped objects have no
//! namespace segment); values are opaque bytes. Every write gets the next value of one global,
//! monotonic revision counter, and an object's `resourceVersion` is its mod revision. Lists are
//! consistent at one revision (a continue token resumes at that same revision) and watches replay
//! every change after a revision for as long as it is inside the history window.

mod continue_token;
pub mod embedded;
pub mod encryption;
mod error;
pub mod etcd;
pub mod etcd_server;

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

pub use continue_token::ContinueToken;
pub use embedded::{EmbeddedOptions, EmbeddedStore};
pub use encryption::{EncryptedStore, EncryptionConfig};
pub use error::StoreError;
pub use etcd::EtcdStore;
pub use etcd_server::LocalEtcd;

/// A store revision: one global counter, bumped by every write.
pub type Revision = u64;

/// The largest value the store accepts: 1.5 MiB, etcd's default request limit.
pub const MAX_VALUE_BYTES: usize = 1_572_864;

/// Result of a store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A stream of watch events; it ends with an error (e.g. [`StoreError::Expired`]) when it cannot
/// go on, and the caller resumes from the last revision it saw.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent>> + Send>>;

/// One key and its value at some revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// The full key, e.g. `/registry/core/pods/default/web-0`.
    pub key: String,
    /// The stored bytes.
    pub value: Bytes,
    /// The revision that created this key (since it last did not exist).
    pub create_revision: Revision,
    /// The revision of the last write to this key: the object's `resourceVersion`.
    pub mod_revision: Revision,
    /// Whether the value was read with an encryption provider or key other than the one new
    /// writes use (an older key, or plaintext from before encryption): writing it back
    /// unchanged re-encrypts it, so an update must not skip it as a no-op. Always false
    /// without [`encryption`].
    pub stale: bool,
}

/// What `list` should return.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// At most this many items; 0 means no limit.
    pub limit: usize,
    /// A token from a previous page; the list resumes at that page's revision.
    pub continue_token: Option<String>,
}

/// One page of a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListPage {
    /// The items, in key order.
    pub items: Vec<KeyValue>,
    /// The revision the whole list is consistent at (the same for every page).
    pub revision: Revision,
    /// Present when more items follow: pass it back in [`ListOptions::continue_token`].
    pub continue_token: Option<String>,
}

/// The result of a delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deleted {
    /// The value the key had just before it was deleted.
    pub prev: KeyValue,
    /// The revision of the delete.
    pub revision: Revision,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// A key was created or updated.
    Put {
        /// The new value; its `mod_revision` is the event's revision.
        kv: KeyValue,
        /// The value before this write, when there was one and it is still known.
        prev: Option<KeyValue>,
    },
    /// A key was deleted.
    Delete {
        /// The deleted key.
        key: String,
        /// The revision of the delete.
        revision: Revision,
        /// The value before the delete, when still known.
        prev: Option<KeyValue>,
    },
}

impl WatchEvent {
    /// The revision of this change.
    pub fn revision(&self) -> Revision {
        match self {
            WatchEvent::Put { kv, .. } => kv.mod_revision,
            WatchEvent::Delete { revision, .. } => *revision,
        }
    }

    /// The key this change is about.
    pub fn key(&self) -> &str {
        match self {
            WatchEvent::Put { kv, .. } => &kv.key,
            WatchEvent::Delete { key, .. } => key,
        }
    }
}

/// A key-value store with revisions, compare-and-swap and resumable watches.
///
/// Object-safe: the API server holds an `Arc<dyn Store>`.
#[async_trait]
pub trait Store: Send + Sync {
    /// The current value of `key`, if it exists.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// The keys under `prefix`, in key order, consistent at one revision.
    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListPage>;

    /// Creates `key`; fails with [`StoreError::AlreadyExists`] if it exists. Returns the new revision.
    async fn create(&self, key: &str, value: Bytes) -> Result<Revision>;

    /// Replaces the value of an existing `key`. With `expected`, only if the key's mod revision is
    /// still that ([`StoreError::Conflict`] otherwise). Returns the new revision.
    async fn update(&self, key: &str, value: Bytes, expected: Option<Revision>)
    -> Result<Revision>;

    /// Deletes `key`, with `expected`, only if its mod revision is still that. Returns the value it had.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<Deleted>;

    /// Every change under `prefix` with a revision greater than `from`, in revision order,
    /// without gaps or duplicates. Fails with [`StoreError::Expired`] when that history was
    /// compacted (if a compaction races the call, the stream's first item is that error instead).
    /// To resume after the stream ends or is dropped, watch again from the last revision seen.
    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream>;

    /// Forgets the history before `revision` (etcd's meaning): lists at older revisions and
    /// watches whose first wanted change is older get [`StoreError::Expired`]. Compacting to a
    /// revision at or before the compacted one does nothing; a future one is refused.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// The revision of the latest acknowledged write.
    async fn current_revision(&self) -> Result<Revision>;
}

/// Refuses values over [`MAX_VALUE_BYTES`] and keys that cannot be stored.
pub(crate) fn check_write(key: &str, value: &[u8]) -> Result<()> {
    check_key(key)?;
    if value.len() > MAX_VALUE_BYTES {
        return Err(StoreError::TooLarge {
            key: key.to_owned(),
            size: value.len(),
            limit: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

/// Keys must be absolute paths such as `/registry/core/pods/default/web-0`.
pub(crate) fn check_key(key: &str) -> Result<()> {
    let reason = if !key.starts_with('/') {
        "must start with '/'"
    } else if key.contains('\0') {
        "must not contain NUL"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidKey {
        key: key.to_owned(),
        reason,
    })
}
