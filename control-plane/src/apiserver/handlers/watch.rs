//! `GET <resource>?watch=true`: a stream of `ADDED` / `MODIFIED` / `DELETED` events.
//!
//! Without a `resourceVersion` (or with `0`) the stream starts with a synthetic `ADDED` for every
//! existing object, then follows changes; with one it replays every change after it. An expired
//! revision ends the stream with an `ERROR` event carrying a 410 `Status`, as Kubernetes does.
//! `allowWatchBookmarks` adds periodic `BOOKMARK`s; `timeoutSeconds` ends the stream cleanly.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use coxswain_api::registry::KindInfo;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::Ctx;
use crate::apiserver::ApiState;
use crate::apiserver::negotiate::Format;
use crate::apiserver::objects::{from_store, set_meta};
use crate::apiserver::selectors::Selectors;
use crate::apiserver::status_error::ApiError;
use crate::apiserver::table::{self, IncludeObject};
use crate::store::{ListOptions, Revision, StoreError, WatchEvent};

/// How long a watch without `timeoutSeconds` lasts (clients re-watch after it ends).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How often an idle watch sends a bookmark, when the client allows them.
const BOOKMARK_EVERY: Duration = Duration::from_secs(10);

/// What a watch stream needs once the handler has returned.
struct WatchJob {
    state: ApiState,
    kind: &'static KindInfo,
    prefix: String,
    selectors: Selectors,
    table: Option<IncludeObject>,
    bookmarks: bool,
    initial: Vec<Value>,
    initial_end_bookmark: bool,
    from: Revision,
    timeout: Duration,
}

/// Serves `GET <resource>?watch=true`.
pub async fn watch(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let selectors = Selectors::from_query(&ctx.query)?;
    let bookmarks = ctx.query.flag("allowWatchBookmarks")?;
    let send_initial = ctx.query.flag("sendInitialEvents")?;
    let timeout = ctx
        .query
        .number("timeoutSeconds")?
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT);
    let prefix = ctx.prefix()?;
    let requested = ctx.query.resource_version()?;
    let (initial, from) = match requested {
        Some(revision) if !send_initial => (Vec::new(), revision),
        _ => initial_state(ctx.state, &prefix, &selectors).await?,
    };
    let table = match ctx.format {
        Format::Table => Some(IncludeObject::from_query(&ctx.query)?),
        _ => None,
    };
    let job = WatchJob {
        state: ctx.state.clone(),
        kind: ctx.path.kind,
        prefix,
        selectors,
        table,
        bookmarks,
        initial,
        initial_end_bookmark: send_initial && bookmarks,
        from,
        timeout,
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(256);
    tokio::spawn(job.run(tx));
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .unwrap_or_default())
}

/// Every object under `prefix` that the selectors pick, and the revision they are at.
async fn initial_state(
    state: &ApiState,
    prefix: &str,
    selectors: &Selectors,
) -> Result<(Vec<Value>, Revision), ApiError> {
    let mut objects = Vec::new();
    let mut options = ListOptions::default();
    loop {
        let page = state.store.list(prefix, options.clone()).await?;
        for kv in &page.items {
            let object = from_store(kv)?;
            if selectors.matches(&object) {
                objects.push(object);
            }
        }
        match page.continue_token {
            Some(token) => options.continue_token = Some(token),
            None => return Ok((objects, page.revision)),
        }
    }
}

impl WatchJob {
    async fn run(self, tx: mpsc::Sender<Result<Bytes, Infallible>>) {
        let send = |line: Value| {
            let tx = tx.clone();
            async move { tx.send(Ok(encode_line(&line))).await.is_ok() }
        };
        for object in &self.initial {
            if !send(self.event("ADDED", object.clone()).await).await {
                return;
            }
        }
        let mut last = self.from;
        if self.initial_end_bookmark {
            let mut bookmark = self.bookmark(last);
            bookmark["object"]["metadata"]["annotations"] =
                json!({"k8s.io/initial-events-end": "true"});
            if !send(bookmark).await {
                return;
            }
        }
        let mut stream = match self.state.store.watch(&self.prefix, self.from).await {
            Ok(stream) => stream,
            Err(error) => {
                send(error_event(error)).await;
                return;
            }
        };
        let deadline = tokio::time::sleep(self.timeout);
        tokio::pin!(deadline);
        let shutdown = self.state.shutdown.clone();
        loop {
            let tick = tokio::time::sleep(BOOKMARK_EVERY);
            tokio::select! {
                _ = &mut deadline => return,
                _ = shutdown.cancelled() => return,
                _ = tx.closed() => return,
                _ = tick, if self.bookmarks => {
                    if !send(self.bookmark(last)).await {
                        return;
                    }
                }
                next = stream.next() => match next {
                    None => return,
                    Some(Err(error)) => {
                        send(error_event(error)).await;
                        return;
                    }
                    Some(Ok(event)) => {
                        last = event.revision();
                        if let Some(line) = self.live_line(event).await
                            && tx.send(Ok(line)).await.is_err()
                        {
                            return;
                        }
                    }
                },
            }
        }
    }

    /// The encoded line a live store change becomes, if the selectors pick it. JSON lines are
    /// shared between watchers through the server's watch cache; tables are rendered per watcher.
    async fn live_line(&self, event: WatchEvent) -> Option<Bytes> {
        let (key, revision) = (event.key().to_string(), event.revision());
        let (kind, object) = self.translate(event)?;
        if self.table.is_some() {
            let object = Arc::unwrap_or_clone(object);
            return Some(encode_line(&self.event(kind, object).await));
        }
        let cache = &self.state.watch_cache;
        Some(cache.line(&key, revision, kind, || {
            encode_line(&json!({"type": kind, "object": &*object}))
        }))
    }

    /// The watch event type and object a store change becomes, if the selectors pick it.
    fn translate(&self, event: WatchEvent) -> Option<(&'static str, Arc<Value>)> {
        let cache = &self.state.watch_cache;
        match event {
            WatchEvent::Put { kv, prev } => {
                let object = cache.object(&kv)?;
                let now = self.selectors.matches(&object);
                // Without selectors there are no transitions to detect: skip decoding `prev`.
                let before = prev
                    .filter(|_| kv.create_revision != kv.mod_revision && !self.selectors.is_empty())
                    .and_then(|p| cache.object(&p))
                    .map(|p| self.selectors.matches(&p));
                match (before, now) {
                    (None, true) if kv.create_revision == kv.mod_revision => {
                        Some(("ADDED", object))
                    }
                    (Some(false), true) => Some(("ADDED", object)),
                    (None | Some(true), true) => Some(("MODIFIED", object)),
                    (Some(true), false) => Some(("DELETED", object)),
                    (_, false) => None,
                }
            }
            WatchEvent::Delete {
                key,
                revision,
                prev,
            } => {
                let mut object = match prev {
                    Some(prev) => Arc::unwrap_or_clone(cache.object(&prev)?),
                    None => object_from_key(self.kind, &key),
                };
                set_meta(&mut object, "resourceVersion", json!(revision.to_string()));
                self.selectors
                    .matches(&object)
                    .then_some(("DELETED", Arc::new(object)))
            }
        }
    }

    async fn event(&self, kind: &str, object: Value) -> Value {
        let object = match self.table {
            Some(include) => {
                let revision = object
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0);
                table::render(&self.state, self.kind, include, &[object], revision, None)
                    .await
                    .unwrap_or_else(|e| e.to_status())
            }
            None => object,
        };
        json!({"type": kind, "object": object})
    }

    fn bookmark(&self, revision: Revision) -> Value {
        json!({
            "type": "BOOKMARK",
            "object": {
                "kind": self.kind.kind,
                "apiVersion": self.kind.api_version,
                "metadata": {"resourceVersion": revision.to_string()},
            },
        })
    }
}

/// One event as a line of the stream.
fn encode_line(event: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(event).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// The `ERROR` event a failed watch ends with (410 Gone for an expired revision).
fn error_event(error: StoreError) -> Value {
    json!({"type": "ERROR", "object": ApiError::from(error).to_status()})
}

/// A minimal object for a delete whose previous value the store no longer has.
fn object_from_key(kind: &KindInfo, key: &str) -> Value {
    let parts: Vec<&str> = key.trim_start_matches('/').split('/').collect();
    let name = parts.last().copied().unwrap_or_default();
    let mut meta = json!({"name": name});
    if kind.namespaced && parts.len() >= 2 {
        meta["namespace"] = json!(parts[parts.len() - 2]);
    }
    json!({"apiVersion": kind.api_version, "kind": kind.kind, "metadata": meta})
}
