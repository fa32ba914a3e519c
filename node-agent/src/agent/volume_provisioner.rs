//! The node-deployment provisioner task: follows `WatchVolumes` on every session
//! and runs each piece of work ([`crate::csi::provision`]) until the control plane
//! took a successful report: PROVISION → CreateVolume → ReportProvisioning,
//! DELETE → DeleteVolume → ReportVolumeDeleted. A failure is reported too (the
//! control plane records an Event) and retried with back-off (1 s doubling to
//! 5 min). One task per claim or volume; a new session starts again from its
//! snapshot. A control plane that answers Unimplemented is asked again after a minute.

use std::collections::BTreeMap;
use std::time::Duration;

use coxswain_proto::node::v1alpha1::node_service_client::NodeServiceClient;
use coxswain_proto::node::v1alpha1::volume_event::Type as EventType;
use coxswain_proto::node::v1alpha1::{VolumeEvent, WatchVolumesRequest};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use super::Backoff;
use crate::csi::{CsiDrivers, provision};

/// Runs until `shutdown`.
pub async fn run(
    node_name: String,
    drivers: CsiDrivers,
    mut channel: watch::Receiver<Option<Channel>>,
    shutdown: CancellationToken,
) {
    loop {
        let Some(ch) = super::connected(&mut channel, &shutdown).await else {
            return;
        };
        let session = shutdown.child_token();
        let pause = tokio::select! {
            pause = follow(&node_name, &drivers, ch, &session) => pause,
            _ = channel.changed() => Duration::ZERO,
        };
        session.cancel();
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Follows one WatchVolumes stream; returns how long to wait before the next.
async fn follow(
    node_name: &str,
    drivers: &CsiDrivers,
    channel: Channel,
    session: &CancellationToken,
) -> Duration {
    let mut client = NodeServiceClient::new(channel.clone());
    let request = WatchVolumesRequest {
        node_name: node_name.to_string(),
    };
    let mut stream = match client.watch_volumes(request).await {
        Ok(stream) => stream.into_inner(),
        Err(status) if status.code() == tonic::Code::Unimplemented => {
            tracing::debug!("watch volumes: the control plane does not provision volumes yet");
            return Duration::from_secs(60);
        }
        Err(status) => {
            tracing::warn!("watch volumes: {}", status.message());
            return Duration::from_secs(1);
        }
    };
    let mut work: BTreeMap<String, CancellationToken> = BTreeMap::new();
    loop {
        let event = tokio::select! {
            message = stream.message() => match message {
                Ok(Some(event)) => event,
                Ok(None) => return Duration::from_secs(1),
                Err(status) => {
                    tracing::warn!("volume stream: {}", status.message());
                    return Duration::from_secs(1);
                }
            },
            _ = session.cancelled() => return Duration::ZERO,
        };
        let Some(key) = work_key(&event) else {
            continue;
        };
        let token = session.child_token();
        if let Some(previous) = work.insert(key, token.clone()) {
            // Newer work for the same object replaces the running one.
            previous.cancel();
        }
        tokio::spawn(run_work(
            node_name.to_string(),
            drivers.clone(),
            channel.clone(),
            event,
            token,
        ));
    }
}

/// `claim/<uid>` or `volume/<uid>`; `None` for SYNCED and malformed events.
fn work_key(event: &VolumeEvent) -> Option<String> {
    match EventType::try_from(event.r#type).ok()? {
        EventType::Provision => {
            let claim: PersistentVolumeClaim = serde_json::from_slice(&event.claim).ok()?;
            Some(format!("claim/{}", claim.metadata.uid?))
        }
        EventType::Delete => {
            let pv: PersistentVolume = serde_json::from_slice(&event.persistent_volume).ok()?;
            Some(format!("volume/{}", pv.metadata.uid?))
        }
        EventType::Synced => None,
    }
}

/// Does one piece of work and reports it, until a success is taken or `token`.
async fn run_work(
    node_name: String,
    drivers: CsiDrivers,
    channel: Channel,
    event: VolumeEvent,
    token: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
    let mut client = NodeServiceClient::new(channel);
    loop {
        let (failed, sent) = match EventType::try_from(event.r#type) {
            Ok(EventType::Provision) => {
                let (Ok(claim), Ok(class)) = (
                    serde_json::from_slice::<PersistentVolumeClaim>(&event.claim),
                    serde_json::from_slice::<StorageClass>(&event.storage_class),
                ) else {
                    tracing::warn!("volume stream: a PROVISION event without a claim and class");
                    return;
                };
                let report = tokio::select! {
                    r = provision::provision(&node_name, &claim, &class, &drivers) => r,
                    _ = token.cancelled() => return,
                };
                let failed = !report.error.is_empty();
                if failed {
                    tracing::warn!(claim = %report.claim_name, "provisioning failed: {}", report.error);
                }
                (failed, client.report_provisioning(report).await.map(|_| ()))
            }
            Ok(EventType::Delete) => {
                let Ok(pv) = serde_json::from_slice::<PersistentVolume>(&event.persistent_volume)
                else {
                    return;
                };
                let report = tokio::select! {
                    r = provision::delete(&node_name, &pv, &drivers) => r,
                    _ = token.cancelled() => return,
                };
                let failed = !report.error.is_empty();
                if failed {
                    tracing::warn!(volume = %report.name, "deleting failed: {}", report.error);
                }
                (
                    failed,
                    client.report_volume_deleted(report).await.map(|_| ()),
                )
            }
            _ => return,
        };
        match sent {
            Ok(()) if !failed => return,
            Ok(()) => {}
            Err(status) if status.code() == tonic::Code::NotFound => return,
            Err(status) => tracing::warn!("volume report: {}", status.message()),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = token.cancelled() => return,
        }
    }
}
