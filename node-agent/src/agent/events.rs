//! The agent's Event sender: queues Events (about the node or a pod bound to it)
//! and sends them with `NodeService.RecordEvent` whenever the control plane is
//! connected. Fire and forget: recording never blocks a pod or the device
//! manager; when the queue is full or the control plane refuses an Event it is
//! dropped with a log line, as a kubelet's event recorder does.

use std::time::Duration;

use coxswain_proto::node::v1alpha1::node_service_client::NodeServiceClient;
use coxswain_proto::node::v1alpha1::{InvolvedObject, RecordEventRequest};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::devices::{EventKind, EventSink};

/// Events waiting to be sent; beyond this new ones are dropped.
const QUEUE: usize = 256;
/// Longest wait for one RecordEvent.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Tries per Event while the control plane is unreachable.
const ATTEMPTS: u32 = 5;

/// Sends the agent's Events. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EventSender {
    queue: mpsc::Sender<RecordEventRequest>,
    node_name: String,
}

impl EventSender {
    /// A sender for node `node_name`, sending through whichever `channel` is up
    /// until `shutdown`.
    pub fn start(
        node_name: String,
        channel: watch::Receiver<Option<Channel>>,
        shutdown: CancellationToken,
    ) -> Self {
        let (queue, pending) = mpsc::channel(QUEUE);
        tokio::spawn(send_all(pending, channel, shutdown));
        Self { queue, node_name }
    }
}

impl EventSink for EventSender {
    fn record(&self, object: InvolvedObject, kind: EventKind, reason: &str, message: &str) {
        let request = RecordEventRequest {
            node_name: self.node_name.clone(),
            involved_object: Some(object),
            r#type: kind.as_str().to_string(),
            reason: reason.to_string(),
            message: message.to_string(),
        };
        if self.queue.try_send(request).is_err() {
            tracing::warn!(reason, "event dropped: the event queue is full or closed");
        }
    }
}

async fn send_all(
    mut pending: mpsc::Receiver<RecordEventRequest>,
    mut channel: watch::Receiver<Option<Channel>>,
    shutdown: CancellationToken,
) {
    loop {
        let request = tokio::select! {
            next = pending.recv() => match next {
                Some(request) => request,
                None => return,
            },
            () = shutdown.cancelled() => return,
        };
        for attempt in 1..=ATTEMPTS {
            let Some(ch) = super::connected(&mut channel, &shutdown).await else {
                return;
            };
            let sent = tokio::time::timeout(
                SEND_TIMEOUT,
                NodeServiceClient::new(ch).record_event(request.clone()),
            )
            .await;
            match sent {
                Ok(Ok(_)) => break,
                Ok(Err(status)) if status.code() != tonic::Code::Unavailable => {
                    tracing::warn!(reason = %request.reason, "event not recorded: {}", status.message());
                    break;
                }
                _ if attempt < ATTEMPTS => {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))) => {}
                        () = shutdown.cancelled() => return,
                    }
                }
                _ => {
                    tracing::warn!(reason = %request.reason, "event dropped: the control plane did not take it")
                }
            }
        }
    }
}
