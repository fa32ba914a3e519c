//! Encryption at rest, configured as Kubernetes' `--encryption-provider-config`.
//!
//! [`EncryptedStore`] wraps either backend; [`EncryptionConfig`] says which resources (usually
//! `secrets`) are encrypted and with which providers (`aesgcm` keys, `identity`). Values are
//! stored in Kubernetes' format, `k8s:enc:aesgcm:v1:<key name>:<nonce><ciphertext>`.
//!
//! Key rotation: put a new key first in the list and restart (new writes use it, old values
//! still read with the old key and are marked [`crate::store::KeyValue::stale`]); rewrite every
//! value — `kubectl get secrets -A -o json | kubectl replace -f -` or
//! [`EncryptedStore::rewrite_stale`] (`cox reencrypt`); then remove the old key.
//!
//! - [`config`]: the file and its checks; [`provider`]: `aesgcm`, `identity` and the format.
//! - [`encrypted_store`]: the wrapper; [`rewrite`]: re-encryption of stale values.

pub mod config;
pub mod encrypted_store;
pub mod provider;
pub mod rewrite;

pub use config::{EncryptionConfig, EncryptionConfigError};
pub use encrypted_store::EncryptedStore;
pub use provider::TransformError;
pub use rewrite::RewriteSummary;
