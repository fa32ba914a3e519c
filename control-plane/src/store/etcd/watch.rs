//! Watches on etcd, resumed across connection failures.
//!
//! The stream remembers the last revision it delivered (or that etcd's progress notifications
//! vouched for) and, when the gRPC stream breaks or etcd cancels the watch for a reason other
//! than compaction, opens a new watch from the next revision with backoff: the caller sees one
//! gap-free, duplicate-free sequence. Fragmented responses (`fragment`, for revisions too large
//! for one message) are not requested: coxswain writes one key per revision, and events are taken
//! one by one, so how etcd splits them into messages does not matter. Events older than the last
//! revision are dropped. A cancel with a compact revision ends the stream with
//! [`StoreError::Expired`].

use std::collections::VecDeque;
use std::time::Duration;

use etcd_client::{Client, EventType, WatchOptions, WatchResponse};
use futures::stream;

use super::{prefix_end, to_kv};
use crate::store::{Result, Revision, StoreError, WatchEvent, WatchStream};

/// Consecutive failed reconnects before the stream gives up with the last error.
const MAX_RECONNECTS: u32 = 10;

struct State {
    client: Client,
    endpoint: String,
    prefix: String,
    /// Every change up to here has been delivered.
    last: Revision,
    stream: Option<etcd_client::WatchStream>,
    buffer: VecDeque<WatchEvent>,
    failures: u32,
    done: bool,
}

/// A stream of every change under `prefix` after revision `from`.
pub(super) fn watch_stream(
    client: Client,
    endpoint: String,
    prefix: String,
    from: Revision,
) -> WatchStream {
    let state = State {
        client,
        endpoint,
        prefix,
        last: from,
        stream: None,
        buffer: VecDeque::new(),
        failures: 0,
        done: false,
    };
    Box::pin(stream::unfold(state, |mut state| async move {
        let item = state.next().await?;
        Some((item, state))
    }))
}

impl State {
    async fn next(&mut self) -> Option<Result<WatchEvent>> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                return Some(Ok(event));
            }
            if self.done {
                return None;
            }
            let Some(stream) = self.stream.as_mut() else {
                if let Err(err) = self.reconnect().await {
                    self.done = true;
                    return Some(Err(err));
                }
                continue;
            };
            match stream.message().await {
                Ok(Some(response)) => {
                    self.failures = 0;
                    if let Err(err) = self.absorb(response) {
                        self.done = true;
                        return Some(Err(err));
                    }
                }
                Ok(None) | Err(_) => {
                    // The connection broke: resume from `last` on a new stream.
                    self.stream = None;
                }
            }
        }
    }

    /// Opens a watch from `last + 1`, backing off after failures.
    async fn reconnect(&mut self) -> Result<()> {
        if self.failures > 0 {
            let backoff = Duration::from_millis(50 << self.failures.min(6));
            tokio::time::sleep(backoff).await;
        }
        let options = WatchOptions::new()
            .with_range(prefix_end(&self.prefix))
            .with_start_revision(self.last as i64 + 1)
            .with_prev_key()
            .with_progress_notify();
        match self.client.watch(self.prefix.as_str(), Some(options)).await {
            Ok(stream) => {
                self.stream = Some(stream);
                Ok(())
            }
            Err(source) => {
                self.failures += 1;
                if self.failures >= MAX_RECONNECTS {
                    return Err(StoreError::Etcd {
                        endpoint: self.endpoint.clone(),
                        source: Box::new(source),
                    });
                }
                Ok(())
            }
        }
    }

    /// Takes one response: events, progress, or a cancel.
    fn absorb(&mut self, response: WatchResponse) -> Result<()> {
        if response.canceled() {
            if response.compact_revision() > 0 {
                return Err(StoreError::Expired {
                    requested: self.last,
                    compacted: Some(response.compact_revision() as Revision),
                });
            }
            // Canceled for another reason (e.g. the member lost its leader): watch again.
            tracing::debug!(
                reason = response.cancel_reason(),
                "etcd watch canceled; resuming"
            );
            self.stream = None;
            return Ok(());
        }
        if response.events().is_empty() {
            // A progress notification: everything up to its revision has been sent.
            if !response.created()
                && let Some(header) = response.header()
            {
                self.last = self.last.max(header.revision() as Revision);
            }
            return Ok(());
        }
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let revision = kv.mod_revision() as Revision;
            // A revision can hold several keys (a multi-key transaction by another client), so
            // only older revisions are dropped; a resumed watch starts after `last` anyway.
            if revision < self.last {
                continue;
            }
            self.last = revision;
            let prev = event.prev_kv().map(to_kv);
            self.buffer.push_back(match event.event_type() {
                EventType::Put => WatchEvent::Put {
                    kv: to_kv(kv),
                    prev,
                },
                EventType::Delete => WatchEvent::Delete {
                    key: String::from_utf8_lossy(kv.key()).into_owned(),
                    revision,
                    prev,
                },
            });
        }
        Ok(())
    }
}
