//! Ephemeral inline volumes, as Kubernetes' CSI ephemeral volumes use a driver: the
//! kubelet (here the agent) calls NodePublishVolume for a pod's inline `csi` volume with
//! `csi.storage.k8s.io/ephemeral: "true"` in the volume context and no stage; the driver
//! makes the volume then (named after the request's volume ID, sized by the `size`
//! attribute or `--default-size`, the other attributes as its parameters), stages it under
//! its own state directory and publishes it. NodeUnpublishVolume of that ID unpublishes,
//! unstages and deletes it: the data lives as long as the pod.

use std::collections::HashMap;

use coxswain_proto::csi::v1::{CapacityRange, CreateVolumeRequest, VolumeCapability};

use super::Driver;
use super::provision::parse_bytes;
use crate::Error;

/// The volume-context key that marks a publish of an ephemeral inline volume.
pub const EPHEMERAL_CONTEXT: &str = "csi.storage.k8s.io/ephemeral";
/// The attribute giving an ephemeral volume's size (`64Mi`).
const SIZE_ATTRIBUTE: &str = "size";

/// The name an ephemeral volume is created under, from the CO's volume ID.
fn ephemeral_name(id: &str) -> String {
    format!("ephemeral-{id}")
}

/// Whether a publish's volume context asks for an ephemeral volume.
pub(super) fn is_ephemeral(context: &HashMap<String, String>) -> bool {
    context.get(EPHEMERAL_CONTEXT).map(String::as_str) == Some("true")
}

impl Driver {
    /// NodePublishVolume of an ephemeral inline volume: create, stage, publish
    /// (each idempotent, so a retried publish finishes what a failed one began).
    pub(super) fn publish_ephemeral(
        &self,
        id: &str,
        target: &str,
        capability: VolumeCapability,
        context: &HashMap<String, String>,
        readonly: bool,
    ) -> Result<(), Error> {
        if id.is_empty() {
            return Err(Error::missing("volume_id"));
        }
        let size = context
            .get(SIZE_ATTRIBUTE)
            .map(|s| {
                parse_bytes(s)
                    .map_err(|e| Error::InvalidArgument(format!("volume_context[size]: {e}")))
            })
            .transpose()?;
        let parameters = context
            .iter()
            .filter(|(k, _)| !k.starts_with("csi.storage.k8s.io/") && *k != SIZE_ATTRIBUTE)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let volume = self.create_volume(CreateVolumeRequest {
            name: ephemeral_name(id),
            capacity_range: size.map(|bytes| CapacityRange {
                required_bytes: bytes as i64,
                limit_bytes: 0,
            }),
            parameters,
            volume_capabilities: vec![capability],
            ..Default::default()
        })?;
        let staging = self.dir.root().join("ephemeral").join(&volume.volume_id);
        let staging = staging.display().to_string();
        self.stage(&volume.volume_id, &staging)?;
        self.publish(&volume.volume_id, &staging, target, readonly)
    }

    /// NodeUnpublishVolume of `id` when it names an ephemeral volume: unpublish,
    /// unstage, delete. `None` when `id` is no ephemeral volume of this driver.
    pub(super) fn unpublish_ephemeral(&self, id: &str, target: &str) -> Option<Result<(), Error>> {
        let name = ephemeral_name(id);
        let record = self.lock().values().find(|v| v.name == name).cloned()?;
        let staging = self.dir.root().join("ephemeral").join(&record.id);
        let staging = staging.display().to_string();
        Some(
            self.unpublish(&record.id, target)
                .and_then(|()| self.unstage(&record.id, &staging))
                .and_then(|()| self.delete_volume(&record.id)),
        )
    }
}
