//! Re-encryption: rewrite every stale value (an older key, or plaintext) with the provider and
//! key that write now — step three of a key rotation, after the new key was put first and the
//! server restarted, and before the old key is removed.
//!
//! Each rewrite is a compare-and-swap on the revision read, so a pass can run beside a live
//! server on etcd: a value that changed meanwhile was written with the current key anyway.

use crate::store::{ListOptions, Result, Store, StoreError};

use super::encrypted_store::{EncryptedStore, open};

/// Items per page while scanning.
const PAGE: usize = 500;

/// What a re-encryption pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RewriteSummary {
    /// Values of configured resources looked at.
    pub checked: usize,
    /// Stale values rewritten with the current key.
    pub rewritten: usize,
    /// Stale values that changed or went away before they could be rewritten (the newer
    /// write used the current key).
    pub raced: usize,
    /// Values that could not be read or written, with the error: `(key, message)`.
    pub failed: Vec<(String, String)>,
}

impl EncryptedStore {
    /// Rewrites every value of the configured resources that was not written with the first
    /// provider's first key. Values that cannot be decrypted are listed in
    /// [`RewriteSummary::failed`] and left alone; a failing scan is an error.
    pub async fn rewrite_stale(&self) -> Result<RewriteSummary> {
        let mut summary = RewriteSummary::default();
        for prefix in self.config().prefixes() {
            let mut options = ListOptions {
                limit: PAGE,
                continue_token: None,
            };
            loop {
                let page = self.inner().list(&prefix, options.clone()).await?;
                for raw in page.items {
                    if self.config().transformer_for(&raw.key).is_none() {
                        continue;
                    }
                    summary.checked += 1;
                    let key = raw.key.clone();
                    let kv = match open(self.config(), raw) {
                        Ok(kv) => kv,
                        Err(error) => {
                            summary.failed.push((key, error.to_string()));
                            continue;
                        }
                    };
                    if !kv.stale {
                        continue;
                    }
                    match self.update(&key, kv.value, Some(kv.mod_revision)).await {
                        Ok(_) => summary.rewritten += 1,
                        Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {
                            summary.raced += 1;
                        }
                        Err(error) => summary.failed.push((key, error.to_string())),
                    }
                }
                match page.continue_token {
                    Some(token) => options.continue_token = Some(token),
                    None => break,
                }
            }
        }
        Ok(summary)
    }
}
