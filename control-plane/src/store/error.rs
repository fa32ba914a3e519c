//! The store's error type, shared by both backends.

use std::path::PathBuf;

use super::Revision;

/// Everything a store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key does not exist.
    #[error("{key}: not found")]
    NotFound {
        /// The key asked for.
        key: String,
    },
    /// `create` of a key that exists.
    #[error("{key}: already exists")]
    AlreadyExists {
        /// The key asked for.
        key: String,
    },
    /// A compare-and-swap lost: the key changed since the caller read it (HTTP 409).
    #[error(
        "{key}: conflict: expected revision {expected}, current revision is {current} \
         (read it again and retry)"
    )]
    Conflict {
        /// The key asked for.
        key: String,
        /// The revision the caller expected.
        expected: Revision,
        /// The key's mod revision now.
        current: Revision,
    },
    /// A value over the size limit.
    #[error("{key}: value is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// The key asked for.
        key: String,
        /// The value's size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The revision asked for was compacted away (HTTP 410): list again and watch from there.
    #[error("revision {requested} has been compacted: list again and watch from the new revision")]
    Expired {
        /// The revision asked for.
        requested: Revision,
        /// The compacted revision (the oldest that can still be read), when the backend says.
        compacted: Option<Revision>,
    },
    /// A revision later than the store's current one.
    #[error("revision {requested} is in the future (current revision is {current})")]
    FutureRevision {
        /// The revision asked for.
        requested: Revision,
        /// The store's current revision.
        current: Revision,
    },
    /// A key the store cannot hold.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The key given.
        key: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A continue token this store did not issue for this prefix.
    #[error("invalid continue token {token:?}: {reason}")]
    InvalidContinue {
        /// The token given.
        token: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The embedded database failed.
    #[error("embedded store {path}: {source}")]
    Embedded {
        /// The database file.
        path: PathBuf,
        /// What redb said.
        #[source]
        source: Box<redb::Error>,
    },
    /// Creating or reading the data directory failed.
    #[error("embedded store {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// etcd failed or could not be reached.
    #[error("etcd {endpoint}: {source} (is etcd running and reachable?)")]
    Etcd {
        /// The endpoint(s) the client talks to.
        endpoint: String,
        /// What the client said.
        #[source]
        source: Box<etcd_client::Error>,
    },
    /// etcd answered something the store cannot make sense of.
    #[error("etcd {endpoint}: {message}")]
    EtcdProtocol {
        /// The endpoint(s) the client talks to.
        endpoint: String,
        /// What went wrong.
        message: String,
    },
    /// A value could not be encrypted or decrypted (see [`super::encryption`]).
    #[error("{key}: {source}")]
    Transform {
        /// The key whose value it was.
        key: String,
        /// What went wrong.
        #[source]
        source: super::encryption::TransformError,
    },
    /// The store was closed while the operation was in flight.
    #[error("store {what} is closed")]
    Closed {
        /// Which store (path or endpoint).
        what: String,
    },
}

impl StoreError {
    /// Wraps a redb error with the database path.
    pub(crate) fn embedded(path: &std::path::Path, source: impl Into<redb::Error>) -> Self {
        StoreError::Embedded {
            path: path.to_owned(),
            source: Box::new(source.into()),
        }
    }

    /// Whether the revision asked for was compacted away.
    pub fn is_expired(&self) -> bool {
        matches!(self, StoreError::Expired { .. })
    }

    /// Whether this is a lost compare-and-swap (read again, then retry).
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }
}
