//! The etcd backend (etcd 3.4+), through `etcd-client`.
//!
//! The store revision is etcd's revision and an object's revision its `mod_revision`.
//! Compare-and-swap is a transaction comparing `mod_revision` (or `create_revision` for
//! create/exists checks) whose failure branch reads the key, so a lost race reports the current
//! revision. Paginated lists pin every page to the first page's revision. Watches are in
//! `watch`.

mod watch;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, Txn, TxnOp,
    TxnOpResponse, TxnResponse,
};

use super::{
    ContinueToken, Deleted, KeyValue, ListOptions, ListPage, MAX_VALUE_BYTES, Result, Revision,
    Store, StoreError, WatchStream, check_key, check_write,
};

/// The etcd store.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    endpoint: String,
}

impl EtcdStore {
    /// Connects to etcd at `endpoints` (e.g. `["http://127.0.0.1:2379"]`).
    pub async fn connect(endpoints: &[String]) -> Result<Self> {
        let endpoint = endpoints.join(",");
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|source| StoreError::Etcd {
                endpoint: endpoint.clone(),
                source: Box::new(source),
            })?;
        Ok(EtcdStore { client, endpoint })
    }

    /// Maps an etcd error; `key` and `size` name the write for a too-large refusal, `revision`
    /// the revision asked for.
    fn error(&self, err: etcd_client::Error, context: ErrorContext<'_>) -> StoreError {
        if let etcd_client::Error::GRpcStatus(status) = &err {
            let message = status.message();
            if message.contains("required revision has been compacted") {
                return StoreError::Expired {
                    requested: context.revision.unwrap_or(0),
                    compacted: None,
                };
            }
            if message.contains("request is too large")
                && let Some((key, size)) = context.write
            {
                return StoreError::TooLarge {
                    key: key.to_owned(),
                    size,
                    limit: MAX_VALUE_BYTES,
                };
            }
        }
        StoreError::Etcd {
            endpoint: self.endpoint.clone(),
            source: Box::new(err),
        }
    }

    fn protocol(&self, message: impl Into<String>) -> StoreError {
        StoreError::EtcdProtocol {
            endpoint: self.endpoint.clone(),
            message: message.into(),
        }
    }

    async fn txn(&self, txn: Txn, context: ErrorContext<'_>) -> Result<TxnResponse> {
        self.client
            .kv_client()
            .txn(txn)
            .await
            .map_err(|e| self.error(e, context))
    }

    /// The revision a transaction committed at.
    fn header_revision(&self, response: &TxnResponse) -> Result<Revision> {
        response
            .header()
            .map(|h| h.revision() as Revision)
            .ok_or_else(|| self.protocol("transaction response without a header"))
    }

    /// After a failed compare: `NotFound`, or `Conflict` with the key's current revision.
    fn lost_compare(&self, key: &str, expected: Revision, response: &TxnResponse) -> StoreError {
        let current = response.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.mod_revision() as Revision),
            _ => None,
        });
        match current {
            Some(current) => StoreError::Conflict {
                key: key.to_owned(),
                expected,
                current,
            },
            None => StoreError::NotFound {
                key: key.to_owned(),
            },
        }
    }
}

/// What an etcd error is about, to turn it into a typed one.
#[derive(Clone, Copy, Default)]
struct ErrorContext<'a> {
    write: Option<(&'a str, usize)>,
    revision: Option<Revision>,
}

/// Converts etcd's key-value.
pub(super) fn to_kv(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: kv.create_revision() as Revision,
        mod_revision: kv.mod_revision() as Revision,
        stale: false,
    }
}

/// The first key after every key that starts with `prefix`.
pub(super) fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Compare: the key exists (or, with `expected`, is at exactly that revision).
fn exists_at(key: &str, expected: Option<Revision>) -> Compare {
    match expected {
        Some(rev) => Compare::mod_revision(key, CompareOp::Equal, rev as i64),
        None => Compare::create_revision(key, CompareOp::Greater, 0),
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        check_key(key)?;
        let response = self
            .client
            .kv_client()
            .get(key, None)
            .await
            .map_err(|e| self.error(e, ErrorContext::default()))?;
        Ok(response.kvs().first().map(to_kv))
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListPage> {
        let (at, start) = match &options.continue_token {
            Some(token) => {
                let token = ContinueToken::decode(token, prefix)?;
                (Some(token.revision), token.start)
            }
            None => (None, prefix.to_owned()),
        };
        let mut get = GetOptions::new().with_range(prefix_end(prefix));
        if let Some(rev) = at {
            get = get.with_revision(rev as i64);
        }
        if options.limit > 0 {
            get = get.with_limit(options.limit as i64);
        }
        let context = ErrorContext {
            revision: at,
            ..Default::default()
        };
        let response = self
            .client
            .kv_client()
            .get(start, Some(get))
            .await
            .map_err(|e| self.error(e, context))?;
        let revision = match at {
            Some(rev) => rev,
            None => response
                .header()
                .map(|h| h.revision() as Revision)
                .ok_or_else(|| self.protocol("range response without a header"))?,
        };
        let items: Vec<KeyValue> = response.kvs().iter().map(to_kv).collect();
        let continue_token = match items.last() {
            Some(last) if response.more() => {
                Some(ContinueToken::after(revision, &last.key).encode())
            }
            _ => None,
        };
        Ok(ListPage {
            items,
            revision,
            continue_token,
        })
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision> {
        check_write(key, &value)?;
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value.to_vec(), None)]);
        let context = ErrorContext {
            write: Some((key, value.len())),
            ..Default::default()
        };
        let response = self.txn(txn, context).await?;
        if !response.succeeded() {
            return Err(StoreError::AlreadyExists {
                key: key.to_owned(),
            });
        }
        self.header_revision(&response)
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Option<Revision>,
    ) -> Result<Revision> {
        check_write(key, &value)?;
        let txn = Txn::new()
            .when([exists_at(key, expected)])
            .and_then([TxnOp::put(key, value.to_vec(), None)])
            .or_else([TxnOp::get(key, None)]);
        let context = ErrorContext {
            write: Some((key, value.len())),
            ..Default::default()
        };
        let response = self.txn(txn, context).await?;
        if !response.succeeded() {
            return Err(self.lost_compare(key, expected.unwrap_or(0), &response));
        }
        self.header_revision(&response)
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<Deleted> {
        check_key(key)?;
        let txn = Txn::new()
            .when([exists_at(key, expected)])
            .and_then([TxnOp::delete(
                key,
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let response = self.txn(txn, ErrorContext::default()).await?;
        if !response.succeeded() {
            return Err(self.lost_compare(key, expected.unwrap_or(0), &response));
        }
        let revision = self.header_revision(&response)?;
        let prev = response.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Delete(delete) => delete.prev_kvs().first().map(to_kv),
            _ => None,
        });
        match prev {
            Some(prev) => Ok(Deleted { prev, revision }),
            // Deleted between the compare and the delete: impossible in one transaction.
            None => Err(self.protocol(format!("delete of {key} returned no previous value"))),
        }
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream> {
        // A range at the first wanted revision fails exactly when a watch from it would be
        // compacted, so callers get `Expired` from `watch` itself, as with the embedded store.
        let probe = GetOptions::new()
            .with_revision(from as i64 + 1)
            .with_keys_only()
            .with_limit(1);
        let context = ErrorContext {
            revision: Some(from),
            ..Default::default()
        };
        // A future revision is fine (the watch waits for it); other errors show on the stream.
        if let Err(err) = self.client.kv_client().get(prefix, Some(probe)).await
            && let expired @ StoreError::Expired { .. } = self.error(err, context)
        {
            return Err(expired);
        }
        Ok(watch::watch_stream(
            self.client.clone(),
            self.endpoint.clone(),
            prefix.to_owned(),
            from,
        ))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let context = ErrorContext {
            revision: Some(revision),
            ..Default::default()
        };
        match self
            .client
            .kv_client()
            .compact(revision as i64, None)
            .await
            .map_err(|e| self.error(e, context))
        {
            Ok(_) | Err(StoreError::Expired { .. }) => Ok(()),
            Err(StoreError::Etcd { source, .. })
                if source.to_string().contains("future revision") =>
            {
                Err(StoreError::FutureRevision {
                    requested: revision,
                    current: self.current_revision().await?,
                })
            }
            Err(err) => Err(err),
        }
    }

    async fn current_revision(&self) -> Result<Revision> {
        let response = self
            .client
            .kv_client()
            .get("/", Some(GetOptions::new().with_keys_only().with_limit(1)))
            .await
            .map_err(|e| self.error(e, ErrorContext::default()))?;
        response
            .header()
            .map(|h| h.revision() as Revision)
            .ok_or_else(|| self.protocol("range response without a header"))
    }
}
