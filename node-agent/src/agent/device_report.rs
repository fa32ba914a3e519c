//! The device report task: sends the device manager's inventory (ResourceSlices,
//! extended-resource capacity and allocatable) with `NodeService.ReportDevices` at
//! the start of every session and on every change of the inventory.

use std::time::Duration;

use coxswain_proto::node::v1alpha1::ReportDevicesRequest;
use coxswain_proto::node::v1alpha1::node_service_client::NodeServiceClient;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::devices::DeviceInventory;

/// Longest wait for one report; a failed report is retried.
const REPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before retrying a failed report.
const RETRY: Duration = Duration::from_secs(1);

/// The request reporting `inventory` for `node_name`.
pub fn report_request(node_name: &str, inventory: &DeviceInventory) -> ReportDevicesRequest {
    ReportDevicesRequest {
        node_name: node_name.to_string(),
        resource_slices: inventory
            .resource_slices
            .iter()
            .map(|s| serde_json::to_vec(s).unwrap_or_default())
            .collect(),
        capacity: inventory.capacity.clone().into_iter().collect(),
        allocatable: inventory.allocatable.clone().into_iter().collect(),
    }
}

/// Runs until `shutdown`: reports whenever a new session starts or the inventory
/// changes, retrying failures.
pub async fn run(
    node_name: String,
    mut inventory: watch::Receiver<DeviceInventory>,
    mut channel: watch::Receiver<Option<Channel>>,
    shutdown: CancellationToken,
) {
    loop {
        let Some(ch) = super::connected(&mut channel, &shutdown).await else {
            return;
        };
        let request = report_request(&node_name, &inventory.borrow_and_update());
        let sent = tokio::time::timeout(
            REPORT_TIMEOUT,
            NodeServiceClient::new(ch).report_devices(request),
        )
        .await;
        match sent {
            Ok(Ok(_)) => {
                // Wait for the next change, or for the session to end.
                tokio::select! {
                    changed = inventory.changed() => if changed.is_err() { return },
                    _ = channel.changed() => {}
                    _ = shutdown.cancelled() => return,
                }
            }
            Ok(Err(status)) => {
                tracing::warn!("report devices: {}", status.message());
                tokio::select! {
                    _ = tokio::time::sleep(RETRY) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
            Err(_) => tracing::warn!("report devices: no answer within {REPORT_TIMEOUT:?}"),
        }
    }
}
