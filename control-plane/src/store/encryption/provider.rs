//! The providers (`aesgcm`, `identity`) and a rule's ordered list of them, the [`Transformer`].
//!
//! Stored values use Kubernetes' format, so an etcd written by either can be read by the other
//! with the same key: `k8s:enc:aesgcm:v1:<key name>:` + 12-byte nonce + AES-256-GCM ciphertext
//! and tag. The nonce is random for every write; the store key (`/registry/core/secrets/ns/n`)
//! is the authenticated data, so a value copied under another key does not decrypt.
//!
//! The first provider writes. Reads pick the provider by the value's prefix; a value without
//! one is plaintext, readable only while `identity` is listed. A value read with anything but
//! the first provider (an older key, or plaintext) is *stale*: rewriting it re-encrypts it.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use bytes::{BufMut, Bytes, BytesMut};

/// Bytes of an AES-256 key.
pub const KEY_BYTES: usize = 32;
/// Bytes of an AES-GCM nonce.
const NONCE_BYTES: usize = 12;
/// Bytes of an AES-GCM tag.
const TAG_BYTES: usize = 16;
/// What every encrypted value starts with.
const ENCRYPTED_PREFIX: &str = "k8s:enc:";
/// The `aesgcm` provider's prefix, before the key name.
const AESGCM_PREFIX: &str = "k8s:enc:aesgcm:v1:";

/// Why a value could not be encrypted or decrypted.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// The value names an `aesgcm` key the configuration does not have.
    #[error(
        "encrypted with aesgcm key {0:?}, which is not configured (add the key back to the \
         encryption provider config)"
    )]
    UnknownKey(String),
    /// The value was written by a provider coxswain does not implement.
    #[error("encrypted with provider {0:?}, which coxswain does not support")]
    UnsupportedProvider(String),
    /// A plaintext value where `identity` is not a provider.
    #[error(
        "stored unencrypted, and identity is not among the providers (list identity: {{}} last \
         to read values written before encryption was turned on)"
    )]
    Plaintext,
    /// The ciphertext does not authenticate under the key it names.
    #[error(
        "cannot decrypt with aesgcm key {0:?}: the value is damaged, was encrypted under another \
         store key, or the key's secret changed"
    )]
    Authentication(String),
    /// The value is shorter than a nonce and a tag, or its prefix is malformed.
    #[error("malformed encrypted value: {0}")]
    Malformed(&'static str),
    /// Encryption itself failed.
    #[error("encrypting with aesgcm key {0:?} failed")]
    Encrypt(String),
}

/// One named AES-256-GCM key.
pub struct AesGcmKey {
    name: String,
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for AesGcmKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("AesGcmKey")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl AesGcmKey {
    /// A key named `name` with the 32 secret bytes `secret`.
    pub fn new(name: &str, secret: &[u8; KEY_BYTES]) -> Self {
        AesGcmKey {
            name: name.to_string(),
            cipher: Aes256Gcm::new(secret.into()),
        }
    }

    /// The key's name, as written in stored values.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn encrypt(&self, store_key: &str, plaintext: &[u8]) -> Result<Bytes, TransformError> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: store_key.as_bytes(),
                },
            )
            .map_err(|_| TransformError::Encrypt(self.name.clone()))?;
        let mut out = BytesMut::with_capacity(
            AESGCM_PREFIX.len() + self.name.len() + 1 + NONCE_BYTES + sealed.len(),
        );
        out.put_slice(AESGCM_PREFIX.as_bytes());
        out.put_slice(self.name.as_bytes());
        out.put_u8(b':');
        out.put_slice(&nonce);
        out.put_slice(&sealed);
        Ok(out.freeze())
    }

    /// Decrypts `sealed` (nonce, ciphertext and tag, the prefix already removed).
    fn decrypt(&self, store_key: &str, sealed: &[u8]) -> Result<Bytes, TransformError> {
        if sealed.len() < NONCE_BYTES + TAG_BYTES {
            return Err(TransformError::Malformed("shorter than a nonce and a tag"));
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: store_key.as_bytes(),
                },
            )
            .map(Bytes::from)
            .map_err(|_| TransformError::Authentication(self.name.clone()))
    }
}

/// One provider of a rule.
#[derive(Debug)]
pub enum Provider {
    /// AES-256-GCM with these keys; the first one encrypts.
    AesGcm(Vec<AesGcmKey>),
    /// No encryption: writes plaintext, reads values without a prefix.
    Identity,
}

/// A value read back from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decrypted {
    /// The plaintext.
    pub plaintext: Bytes,
    /// Whether it was read with something other than the provider and key that write now.
    pub stale: bool,
}

/// A rule's providers, in order: the first writes, any of them reads.
#[derive(Debug)]
pub struct Transformer {
    providers: Vec<Provider>,
}

impl Transformer {
    /// A transformer over `providers` (not empty; the configuration checks that).
    pub fn new(providers: Vec<Provider>) -> Self {
        Transformer { providers }
    }

    /// The provider new writes use.
    pub fn write_provider(&self) -> &Provider {
        self.providers.first().unwrap_or(&Provider::Identity)
    }

    /// The stored form of `plaintext` under `store_key`.
    pub fn encrypt(&self, store_key: &str, plaintext: &[u8]) -> Result<Bytes, TransformError> {
        match self.write_provider() {
            Provider::Identity => Ok(Bytes::copy_from_slice(plaintext)),
            Provider::AesGcm(keys) => match keys.first() {
                Some(key) => key.encrypt(store_key, plaintext),
                None => Ok(Bytes::copy_from_slice(plaintext)),
            },
        }
    }

    /// The plaintext of `stored`, read from `store_key`.
    pub fn decrypt(&self, store_key: &str, stored: &Bytes) -> Result<Decrypted, TransformError> {
        // Position in the flattened list (every key of every provider, then identity): only
        // position 0 is what writes use now.
        let mut position = 0usize;
        let Some(rest) = stored.strip_prefix(ENCRYPTED_PREFIX.as_bytes()) else {
            for provider in &self.providers {
                match provider {
                    Provider::Identity => {
                        return Ok(Decrypted {
                            plaintext: stored.clone(),
                            stale: position != 0,
                        });
                    }
                    Provider::AesGcm(keys) => position += keys.len(),
                }
            }
            return Err(TransformError::Plaintext);
        };
        let Some(named) = stored.strip_prefix(AESGCM_PREFIX.as_bytes()) else {
            let provider = rest.split(|b| *b == b':').next().unwrap_or_default();
            return Err(TransformError::UnsupportedProvider(
                String::from_utf8_lossy(provider).into_owned(),
            ));
        };
        let Some(colon) = named.iter().position(|b| *b == b':') else {
            return Err(TransformError::Malformed("no key name"));
        };
        let (name, sealed) = (&named[..colon], &named[colon + 1..]);
        for provider in &self.providers {
            match provider {
                Provider::Identity => position += 1,
                Provider::AesGcm(keys) => {
                    for key in keys {
                        if key.name.as_bytes() == name {
                            return Ok(Decrypted {
                                plaintext: key.decrypt(store_key, sealed)?,
                                stale: position != 0,
                            });
                        }
                        position += 1;
                    }
                }
            }
        }
        Err(TransformError::UnknownKey(
            String::from_utf8_lossy(name).into_owned(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "/registry/core/secrets/default/s";

    fn aes(names: &[(&str, u8)]) -> Provider {
        Provider::AesGcm(
            names
                .iter()
                .map(|(n, b)| AesGcmKey::new(n, &[*b; KEY_BYTES]))
                .collect(),
        )
    }

    #[test]
    fn round_trip_names_the_key_and_hides_the_plaintext() {
        let t = Transformer::new(vec![aes(&[("k1", 1)]), Provider::Identity]);
        let stored = t.encrypt(KEY, b"{\"hello\":1}").unwrap();
        assert!(stored.starts_with(b"k8s:enc:aesgcm:v1:k1:"));
        assert!(!stored.windows(5).any(|w| w == b"hello"));
        let read = t.decrypt(KEY, &stored).unwrap();
        assert_eq!(&read.plaintext[..], b"{\"hello\":1}");
        assert!(!read.stale);
    }

    #[test]
    fn two_writes_of_the_same_value_differ() {
        let t = Transformer::new(vec![aes(&[("k1", 1)])]);
        assert_ne!(t.encrypt(KEY, b"x").unwrap(), t.encrypt(KEY, b"x").unwrap());
    }

    #[test]
    fn older_keys_and_plaintext_read_as_stale() {
        let old = Transformer::new(vec![aes(&[("k1", 1)]), Provider::Identity]);
        let new = Transformer::new(vec![aes(&[("k2", 2), ("k1", 1)]), Provider::Identity]);
        let by_k1 = old.encrypt(KEY, b"v").unwrap();
        assert!(new.decrypt(KEY, &by_k1).unwrap().stale);
        assert!(new.decrypt(KEY, &Bytes::from_static(b"{}")).unwrap().stale);
        let by_k2 = new.encrypt(KEY, b"v").unwrap();
        assert!(!new.decrypt(KEY, &by_k2).unwrap().stale);
        let identity_first = Transformer::new(vec![Provider::Identity, aes(&[("k1", 1)])]);
        assert!(
            !identity_first
                .decrypt(KEY, &Bytes::from_static(b"{}"))
                .unwrap()
                .stale
        );
        assert!(identity_first.decrypt(KEY, &by_k1).unwrap().stale);
    }

    #[test]
    fn refusals_are_typed() {
        let t = Transformer::new(vec![aes(&[("k1", 1)])]);
        let other = Transformer::new(vec![aes(&[("k9", 9)])]);
        let stored = other.encrypt(KEY, b"v").unwrap();
        assert!(matches!(t.decrypt(KEY, &stored), Err(TransformError::UnknownKey(n)) if n == "k9"));
        assert!(matches!(
            t.decrypt(KEY, &Bytes::from_static(b"{}")),
            Err(TransformError::Plaintext)
        ));
        assert!(matches!(
            t.decrypt(KEY, &Bytes::from_static(b"k8s:enc:kms:v2:x:abc")),
            Err(TransformError::UnsupportedProvider(p)) if p == "kms"
        ));
        assert!(matches!(
            t.decrypt(KEY, &Bytes::from_static(b"k8s:enc:aesgcm:v1:k1:short")),
            Err(TransformError::Malformed(_))
        ));
        let mine = t.encrypt(KEY, b"v").unwrap();
        assert!(matches!(
            t.decrypt("/registry/core/secrets/default/other", &mine),
            Err(TransformError::Authentication(_))
        ));
        let mut flipped = mine.to_vec();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(
            t.decrypt(KEY, &Bytes::from(flipped)),
            Err(TransformError::Authentication(_))
        ));
    }
}
