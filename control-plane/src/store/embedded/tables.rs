//! The embedded store's on-disk layout and the reads over it.
//!
//! - `versions`: `(key, revision) -> record`, every version of every key still inside the
//!   history window (a multi-version store like etcd's). A record is a tombstone for a delete.
//! - `log`: `revision -> (key, previous revision of that key)`, one row per write, in revision
//!   order: what watches replay.
//! - `meta`: the current and compacted revisions, written in the same commit as the data.

use bytes::Bytes;
use redb::{ReadableTable, TableDefinition};

use super::super::{KeyValue, Revision, WatchEvent};

/// Every version of every key inside the history window.
pub(super) const VERSIONS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("versions");
/// One row per revision: the key written and the revision of its previous version (0: none).
pub(super) const LOG: TableDefinition<u64, (&str, u64)> = TableDefinition::new("log");
/// Counters: [`META_REVISION`] and [`META_COMPACTED`].
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The latest revision written.
pub(super) const META_REVISION: &str = "revision";
/// The compacted revision: history before it is gone.
pub(super) const META_COMPACTED: &str = "compacted";

const TAG_TOMBSTONE: u8 = 0;
const TAG_LIVE: u8 = 1;

/// One version of a key as stored in `versions`.
#[derive(Clone, Debug)]
pub(super) enum Record {
    /// The key existed with this value.
    Live {
        /// The revision that created the key.
        create_revision: Revision,
        /// The value.
        value: Bytes,
    },
    /// The key was deleted at this version.
    Tombstone,
}

impl Record {
    /// Encodes a live record: tag, create revision, value.
    pub(super) fn encode_live(create_revision: Revision, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + value.len());
        out.push(TAG_LIVE);
        out.extend_from_slice(&create_revision.to_le_bytes());
        out.extend_from_slice(value);
        out
    }

    /// The encoding of a tombstone.
    pub(super) const TOMBSTONE: &'static [u8] = &[TAG_TOMBSTONE];

    /// Decodes a stored record.
    pub(super) fn decode(bytes: &[u8]) -> Record {
        match bytes.split_first() {
            Some((&TAG_LIVE, rest)) if rest.len() >= 8 => {
                let (create, value) = rest.split_at(8);
                Record::Live {
                    create_revision: u64::from_le_bytes(create.try_into().unwrap_or_default()),
                    value: Bytes::copy_from_slice(value),
                }
            }
            _ => Record::Tombstone,
        }
    }

    /// The record as a key-value, if live.
    pub(super) fn into_kv(self, key: &str, mod_revision: Revision) -> Option<KeyValue> {
        match self {
            Record::Live {
                create_revision,
                value,
            } => Some(KeyValue {
                key: key.to_owned(),
                value,
                create_revision,
                mod_revision,
                stale: false,
            }),
            Record::Tombstone => None,
        }
    }
}

/// The latest version of `key` and its revision.
pub(super) fn latest(
    versions: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    key: &str,
) -> Result<Option<(Revision, Record)>, redb::StorageError> {
    let mut range = versions.range((key, 0u64)..=(key, u64::MAX))?;
    match range.next_back() {
        Some(entry) => {
            let (k, v) = entry?;
            Ok(Some((k.value().1, Record::decode(v.value()))))
        }
        None => Ok(None),
    }
}

/// The live value of `key` right now.
pub(super) fn get_live(
    versions: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    key: &str,
) -> Result<Option<KeyValue>, redb::StorageError> {
    Ok(latest(versions, key)?.and_then(|(rev, record)| record.into_kv(key, rev)))
}

/// One page of the keys under `prefix` from `start`, as they were at `revision`.
///
/// Returns the items and whether a live key follows them.
pub(super) fn list_at(
    versions: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    prefix: &str,
    start: &str,
    revision: Revision,
    limit: usize,
) -> Result<(Vec<KeyValue>, bool), redb::StorageError> {
    let mut items = Vec::new();
    // The newest version at or before `revision` of the key being scanned.
    let mut current: Option<(String, Revision, Vec<u8>)> = None;
    let flush = |current: &mut Option<(String, Revision, Vec<u8>)>, items: &mut Vec<KeyValue>| {
        if let Some((key, rev, bytes)) = current.take()
            && let Some(kv) = Record::decode(&bytes).into_kv(&key, rev)
        {
            items.push(kv);
        }
    };
    for entry in versions.range((start, 0u64)..)? {
        let (k, v) = entry?;
        let (key, rev) = k.value();
        if !key.starts_with(prefix) {
            break;
        }
        let same_key = current.as_ref().is_some_and(|(k, _, _)| k == key);
        if !same_key {
            flush(&mut current, &mut items);
            if limit > 0 && items.len() > limit {
                break;
            }
        }
        if rev <= revision {
            current = Some((key.to_owned(), rev, v.value().to_vec()));
        }
    }
    flush(&mut current, &mut items);
    let more = limit > 0 && items.len() > limit;
    items.truncate(if limit > 0 { limit } else { items.len() });
    Ok((items, more))
}

/// The changes under `prefix` in `(after, after + max]`, and the last revision read.
pub(super) fn read_log(
    log: &impl ReadableTable<u64, (&'static str, u64)>,
    versions: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    prefix: &str,
    after: Revision,
    max: usize,
) -> Result<(Vec<WatchEvent>, Revision), redb::StorageError> {
    let mut events = Vec::new();
    let mut through = after;
    for entry in log.range(after + 1..)?.take(max) {
        let (rev, row) = entry?;
        let rev = rev.value();
        let (key, prev_rev) = row.value();
        through = rev;
        if !key.starts_with(prefix) {
            continue;
        }
        let record = match versions.get((key, rev))? {
            Some(bytes) => Record::decode(bytes.value()),
            None => Record::Tombstone,
        };
        let prev = if prev_rev == 0 {
            None
        } else {
            versions
                .get((key, prev_rev))?
                .and_then(|bytes| Record::decode(bytes.value()).into_kv(key, prev_rev))
        };
        events.push(match record.into_kv(key, rev) {
            Some(kv) => WatchEvent::Put { kv, prev },
            None => WatchEvent::Delete {
                key: key.to_owned(),
                revision: rev,
                prev,
            },
        });
    }
    Ok((events, through))
}
