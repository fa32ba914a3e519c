//! Compaction of the embedded store's history.
//!
//! Compacting to revision `c` (etcd's meaning) keeps the state at `c` readable and every change
//! from `c` on replayable: for each log row before `c`, the version it superseded is removed (and
//! the row's own version too when it is a tombstone), then the row itself. Runs on the writer thread,
//! so it never races a write; its commits are not fsync'd on their own (the next durable write
//! commit persists them, and losing one to a crash only means compacting again).

use std::sync::atomic::Ordering;

use redb::{Durability, ReadableTable};

use super::Shared;
use super::tables::{LOG, META, META_COMPACTED, Record, VERSIONS};
use crate::store::{Result, Revision, StoreError};

/// Log rows removed per transaction, so no single commit grows without bound.
const ROWS_PER_TXN: usize = 8192;

/// Compacts up to `target`, removing at most `max_rows` log rows. Idempotent: compacting to a
/// revision at or before the compacted one does nothing.
pub(super) fn compact(shared: &Shared, target: Revision, max_rows: usize) -> Result<()> {
    let current = shared.revision.load(Ordering::Acquire);
    if target > current {
        return Err(StoreError::FutureRevision {
            requested: target,
            current,
        });
    }
    let mut budget = max_rows;
    loop {
        let compacted = shared.compacted.load(Ordering::Acquire);
        if compacted >= target || budget == 0 {
            return Ok(());
        }
        let rows = ROWS_PER_TXN.min(budget);
        let reached = compact_chunk(shared, compacted, target, rows)
            .map_err(|e| StoreError::embedded(&shared.path, e))?;
        budget = budget.saturating_sub(rows);
        shared.compacted.store(reached, Ordering::Release);
    }
}

/// Removes up to `rows` log rows in `[compacted, target)`; returns the new compacted revision.
fn compact_chunk(
    shared: &Shared,
    compacted: Revision,
    target: Revision,
    rows: usize,
) -> Result<Revision, redb::Error> {
    let mut txn = shared.db.begin_write()?;
    txn.set_durability(Durability::None)
        .map_err(|e| redb::Error::Io(std::io::Error::other(e.to_string())))?;
    let mut reached = compacted;
    {
        let mut versions = txn.open_table(VERSIONS)?;
        let mut log = txn.open_table(LOG)?;
        let mut doomed = Vec::with_capacity(rows);
        for entry in log.range(compacted..target)?.take(rows) {
            let (rev, row) = entry?;
            let (key, prev) = row.value();
            doomed.push((rev.value(), key.to_owned(), prev));
        }
        // Running out of rows before the budget means `target` is reached.
        reached = if doomed.len() < rows {
            target
        } else {
            doomed
                .last()
                .map_or(target, |(rev, _, _)| rev + 1)
                .max(reached)
        };
        for (rev, key, prev) in doomed {
            if prev != 0 {
                versions.remove((key.as_str(), prev))?;
            }
            let tombstone = matches!(
                versions
                    .get((key.as_str(), rev))?
                    .map(|v| Record::decode(v.value())),
                Some(Record::Tombstone)
            );
            if tombstone {
                versions.remove((key.as_str(), rev))?;
            }
            log.remove(rev)?;
        }
        txn.open_table(META)?.insert(META_COMPACTED, reached)?;
    }
    txn.commit()?;
    Ok(reached)
}
