//! Read-modify-write of one object with compare-and-swap on its `resourceVersion`, retried on
//! conflicts, so concurrent writers (an agent, the lifecycle loop, an operator) never lose
//! each other's changes.

use std::fmt::Debug;

use kube::api::{Api, PostParams};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{CONFLICT_RETRIES, is_conflict};

/// Which part of the object a change writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// The object (metadata and spec; the API keeps the stored status).
    Object,
    /// The `status` subresource.
    Status,
}

/// Applies `change` to the current `name` and writes it back when `change` says it changed
/// something; `Ok(None)` when the object does not exist.
pub(crate) async fn modify<K, F>(
    api: &Api<K>,
    name: &str,
    part: Part,
    mut change: F,
) -> Result<Option<K>, kube::Error>
where
    K: kube::Resource + Clone + DeserializeOwned + Serialize + Debug,
    F: FnMut(&mut K) -> bool,
{
    let mut attempt = 0;
    loop {
        let Some(mut object) = api.get_opt(name).await? else {
            return Ok(None);
        };
        if !change(&mut object) {
            return Ok(Some(object));
        }
        let written = match part {
            Part::Object => api.replace(name, &PostParams::default(), &object).await,
            Part::Status => {
                api.replace_status(name, &PostParams::default(), &object)
                    .await
            }
        };
        match written {
            Ok(object) => return Ok(Some(object)),
            Err(e) if is_conflict(&e) && attempt < CONFLICT_RETRIES => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}
