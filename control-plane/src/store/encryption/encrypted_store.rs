//! [`EncryptedStore`]: a [`Store`] that encrypts the values of the configured resources on
//! their way into the store it wraps and decrypts them on the way out.
//!
//! It sits below the API server and above either backend, so lists, gets and watches see
//! plaintext objects and nothing above the store knows encryption exists — except through
//! [`KeyValue::stale`], which tells the update handler that an unchanged write must still be
//! made (that is how `kubectl replace` re-encrypts under a new key).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use super::config::EncryptionConfig;
use crate::store::{
    Deleted, KeyValue, ListOptions, ListPage, Result, Revision, Store, StoreError, WatchEvent,
    WatchStream,
};

/// A store whose configured resources are encrypted at rest in the store it wraps.
pub struct EncryptedStore {
    inner: Arc<dyn Store>,
    config: Arc<EncryptionConfig>,
}

impl EncryptedStore {
    /// Wraps `inner`: values of the resources `config` lists are encrypted as it says.
    pub fn new(inner: Arc<dyn Store>, config: EncryptionConfig) -> Self {
        EncryptedStore {
            inner,
            config: Arc::new(config),
        }
    }

    /// The wrapped store, which holds the encrypted bytes.
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    /// The configuration in force.
    pub fn config(&self) -> &EncryptionConfig {
        &self.config
    }

    fn seal(&self, key: &str, value: Bytes) -> Result<Bytes> {
        seal(&self.config, key, value)
    }
}

/// The stored form of `value` under `key`.
fn seal(config: &EncryptionConfig, key: &str, value: Bytes) -> Result<Bytes> {
    match config.transformer_for(key) {
        Some(transformer) => {
            transformer
                .encrypt(key, &value)
                .map_err(|source| StoreError::Transform {
                    key: key.to_string(),
                    source,
                })
        }
        None => Ok(value),
    }
}

/// The plaintext form of a stored key-value, with `stale` set.
pub(super) fn open(config: &EncryptionConfig, mut kv: KeyValue) -> Result<KeyValue> {
    if let Some(transformer) = config.transformer_for(&kv.key) {
        let read =
            transformer
                .decrypt(&kv.key, &kv.value)
                .map_err(|source| StoreError::Transform {
                    key: kv.key.clone(),
                    source,
                })?;
        kv.value = read.plaintext;
        kv.stale = read.stale;
    }
    Ok(kv)
}

/// A previous value, when it can be read: a watch event must not fail because the value
/// *before* a change was written under a key that has since been removed.
fn open_prev(config: &EncryptionConfig, prev: Option<KeyValue>) -> Option<KeyValue> {
    prev.and_then(|kv| match open(config, kv) {
        Ok(kv) => Some(kv),
        Err(error) => {
            tracing::warn!(%error, "previous value in a watch event cannot be decrypted; dropped");
            None
        }
    })
}

fn open_event(config: &EncryptionConfig, event: WatchEvent) -> Result<WatchEvent> {
    Ok(match event {
        WatchEvent::Put { kv, prev } => WatchEvent::Put {
            kv: open(config, kv)?,
            prev: open_prev(config, prev),
        },
        WatchEvent::Delete {
            key,
            revision,
            prev,
        } => WatchEvent::Delete {
            key,
            revision,
            prev: open_prev(config, prev),
        },
    })
}

#[async_trait]
impl Store for EncryptedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        match self.inner.get(key).await? {
            Some(kv) => open(&self.config, kv).map(Some),
            None => Ok(None),
        }
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListPage> {
        let mut page = self.inner.list(prefix, options).await?;
        page.items = page
            .items
            .into_iter()
            .map(|kv| open(&self.config, kv))
            .collect::<Result<_>>()?;
        Ok(page)
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision> {
        let sealed = self.seal(key, value)?;
        self.inner.create(key, sealed).await
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Option<Revision>,
    ) -> Result<Revision> {
        let sealed = self.seal(key, value)?;
        self.inner.update(key, sealed, expected).await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<Deleted> {
        let deleted = self.inner.delete(key, expected).await?;
        Ok(Deleted {
            prev: open(&self.config, deleted.prev)?,
            revision: deleted.revision,
        })
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream> {
        let stream = self.inner.watch(prefix, from).await?;
        let config = self.config.clone();
        // The stream ends after its first error, as the trait says streams do.
        let opened = stream.scan(false, move |failed, item| {
            let out = if *failed {
                None
            } else {
                let item = item.and_then(|event| open_event(&config, event));
                *failed = item.is_err();
                Some(item)
            };
            futures::future::ready(out)
        });
        Ok(Box::pin(opened))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.inner.compact(revision).await
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.inner.current_revision().await
    }
}
