//! Objects the authenticators and authorizers read straight from the store (below
//! admission and watches, as kube-apiserver's authorizers read their informers): one object
//! by kind and name, or every object of a kind. An object that does not decode counts as
//! absent.

use coxswain_api::registry;
use serde::de::DeserializeOwned;

use crate::store::{ListOptions, Store, StoreError};

/// The object `name` of `kind` (`api_version`), in `namespace` when it is namespaced.
pub(crate) async fn get<T: DeserializeOwned>(
    store: &dyn Store,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<T>, StoreError> {
    let Ok(key) = registry::store_key(api_version, kind, namespace, name) else {
        return Ok(None);
    };
    Ok(store
        .get(&key)
        .await?
        .and_then(|kv| serde_json::from_slice(&kv.value).ok()))
}

/// Every object of `kind`, in `namespace` when given (else in all of them).
pub(crate) async fn list<T: DeserializeOwned>(
    store: &dyn Store,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
) -> Result<Vec<T>, StoreError> {
    let Some(prefix) =
        registry::lookup(api_version, kind).and_then(|k| k.store_prefix(namespace).ok())
    else {
        return Ok(Vec::new());
    };
    let page = store.list(&prefix, ListOptions::default()).await?;
    Ok(page
        .items
        .iter()
        .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
        .collect())
}
