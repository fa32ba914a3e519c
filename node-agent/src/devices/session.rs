//! One registered plugin's session: dial its endpoint, read its options and (where
//! served) its device attributes, then hold `ListAndWatch` open and mirror every
//! list into the manager's state. When the stream ends (the plugin stopped or
//! restarted) the plugin's devices become unavailable until it registers again.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use coxswain_proto::deviceplugin::v1alpha1::device_attributes_client::DeviceAttributesClient;
use coxswain_proto::deviceplugin::v1alpha1::{DeviceAttributeSet, GetDeviceAttributesRequest};
use coxswain_proto::deviceplugin::v1beta1::device_plugin_client::DevicePluginClient;
use coxswain_proto::deviceplugin::v1beta1::{self as v1beta1, Empty, ListAndWatchResponse};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use super::manager::Shared;
use super::state::DeviceState;
use super::{Error, unix};

/// How often (and how long) a plugin's socket is dialled after it registers.
const DIAL_ATTEMPTS: u32 = 50;
const DIAL_INTERVAL: Duration = Duration::from_millis(100);

/// What identifies a session.
pub(super) struct SessionTarget {
    pub resource: String,
    pub socket: PathBuf,
    pub generation: u64,
}

async fn dial(socket: &std::path::Path) -> Result<Channel, Error> {
    let mut last = None;
    for _ in 0..DIAL_ATTEMPTS {
        match unix::connect(socket).await {
            Ok(channel) => return Ok(channel),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(DIAL_INTERVAL).await;
    }
    Err(last.unwrap_or(Error::Stopped))
}

/// The plugin's device attributes; `None` when it does not serve the service.
async fn attributes(
    channel: &Channel,
    resource: &str,
) -> Option<BTreeMap<String, DeviceAttributeSet>> {
    match DeviceAttributesClient::new(channel.clone())
        .get_device_attributes(GetDeviceAttributesRequest {})
        .await
    {
        Ok(response) => Some(
            response
                .into_inner()
                .devices
                .into_iter()
                .map(|d| (d.id.clone(), d))
                .collect(),
        ),
        Err(status) if status.code() == tonic::Code::Unimplemented => None,
        Err(status) => {
            tracing::warn!(resource, error = %status.message(), "device attributes unavailable; using v1beta1 only");
            None
        }
    }
}

fn devices_of(list: &ListAndWatchResponse) -> BTreeMap<String, DeviceState> {
    list.devices
        .iter()
        .map(|d| {
            let numa_node = d
                .topology
                .as_ref()
                .and_then(|t| t.nodes.first())
                .map(|n| n.id);
            (
                d.id.clone(),
                DeviceState {
                    healthy: d.health == v1beta1::HEALTHY,
                    numa_node,
                },
            )
        })
        .collect()
}

/// Runs the session until the stream ends or `cancel` fires.
pub(super) async fn run(shared: Arc<Shared>, target: SessionTarget, cancel: CancellationToken) {
    let outcome = tokio::select! {
        outcome = stream(&shared, &target) => outcome,
        () = cancel.cancelled() => Ok(()),
    };
    if let Err(e) = &outcome {
        tracing::warn!(resource = %target.resource, error = %e, "device plugin session ended");
    }
    shared.update(|state| {
        if let Some(plugin) = state.plugins.get_mut(&target.resource)
            && plugin.generation == target.generation
        {
            plugin.session_running = false;
            plugin.streaming = false;
            plugin.channel = None;
            plugin.devices.clear();
        }
    });
}

async fn stream(shared: &Arc<Shared>, target: &SessionTarget) -> Result<(), Error> {
    let resource = target.resource.clone();
    let rpc = |call: &'static str| {
        let resource = resource.clone();
        move |status: tonic::Status| Error::Rpc {
            resource,
            call,
            status: Box::new(status),
        }
    };
    let channel = dial(&target.socket).await?;
    let mut client = DevicePluginClient::new(channel.clone());
    let options = client
        .get_device_plugin_options(Empty {})
        .await
        .map_err(rpc("GetDevicePluginOptions"))?
        .into_inner();
    let mut attrs = attributes(&channel, &target.resource).await;
    let serves_attributes = attrs.is_some();
    let mut stream = client
        .list_and_watch(Empty {})
        .await
        .map_err(rpc("ListAndWatch"))?
        .into_inner();
    shared.update(|state| {
        if let Some(plugin) = state.plugins.get_mut(&target.resource)
            && plugin.generation == target.generation
        {
            plugin.options = options;
            plugin.channel = Some(channel.clone());
        }
    });
    while let Some(list) = stream.message().await.map_err(rpc("ListAndWatch"))? {
        let devices = devices_of(&list);
        let unknown = attrs
            .as_ref()
            .is_some_and(|a| devices.keys().any(|id| !a.contains_key(id)));
        if serves_attributes && unknown {
            attrs = attributes(&channel, &target.resource).await.or(attrs);
        }
        tracing::info!(
            resource = %target.resource,
            devices = devices.len(),
            healthy = devices.values().filter(|d| d.healthy).count(),
            "device list"
        );
        let attributes = attrs.clone().unwrap_or_default();
        shared.update(|state| {
            if let Some(plugin) = state.plugins.get_mut(&target.resource)
                && plugin.generation == target.generation
            {
                plugin.devices = devices;
                plugin.attributes = attributes;
                plugin.streaming = true;
            }
        });
    }
    Ok(())
}
