//! WatchVolumes, ReportProvisioning, ReportVolumeDeleted: the node's CSI drivers
//! provision and delete volumes for the claims and released volumes of the node, as the
//! CSI external-provisioner does with `--node-deployment`.
//!
//! A node's work is computed from what is stored, never from the event that woke the
//! stream: PROVISION for each unbound claim whose class's provisioner the node announces
//! (`csi.volume.kubernetes.io/nodeid` on its Node) and whose
//! `volume.kubernetes.io/selected-node` names it; DELETE for each Released volume with
//! reclaim policy `Delete` that a driver of the node provisioned on it (its node affinity
//! names the node). Each piece is sent once while it stays pending (the agent retries a
//! failure with its own back-off); one that leaves and comes back is sent again.

use std::collections::{BTreeMap, HashMap, HashSet};

use coxswain_api::quantity::{ParsedQuantity, QuantityFormat};
use coxswain_proto::node::v1alpha1 as pb;
use coxswain_proto::node::v1alpha1::volume_event::Type;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, Node, PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec,
    VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::mpsc;
use tonic::Status;

use super::{EventStream, NodeService, api_status, is_conflict, is_not_found, require_node_name};
use crate::controllers::volumes::bind::claim_ref;
use crate::controllers::volumes::claim::set_provisioning_failed;
use crate::controllers::volumes::matching::{claim_class, requested_bytes};
use crate::controllers::volumes::volume::{phase, reclaim_policy};
use crate::controllers::volumes::{
    CSI_NODE_ID, FS_TYPE_PARAMETERS, PROVISIONED_BY, SELECTED_NODE, provisioned_name,
};
use crate::events::{EventRecorder, EventType};

/// The label naming a node in a volume's node affinity.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

type Sender = mpsc::Sender<Result<pb::VolumeEvent, Status>>;

/// Serves WatchVolumes: the stream runs until the agent hangs up or the server shuts down.
pub(crate) fn watch(
    service: &NodeService,
    request: pb::WatchVolumesRequest,
) -> Result<EventStream<pb::VolumeEvent>, Status> {
    super::server_stream(service, request.node_name, |client, node, tx| async move {
        stream_volumes(client, node, &tx).await
    })
}

/// A change to any kind the node's work depends on.
fn changes(client: &kube::Client) -> futures::stream::BoxStream<'static, ()> {
    fn of<K>(api: Api<K>) -> futures::stream::BoxStream<'static, ()>
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
        K::DynamicType: Default,
    {
        watcher(api, watcher::Config::default())
            .default_backoff()
            .map(|_| ())
            .boxed()
    }
    futures::stream::select_all([
        of(Api::<PersistentVolumeClaim>::all(client.clone())),
        of(Api::<PersistentVolume>::all(client.clone())),
        of(Api::<StorageClass>::all(client.clone())),
        of(Api::<Node>::all(client.clone())),
    ])
    .boxed()
}

async fn stream_volumes(client: kube::Client, node: String, tx: &Sender) {
    let mut changes = changes(&client);
    let mut sent_claims = HashSet::new();
    let mut sent_volumes = HashSet::new();
    let mut synced = false;
    loop {
        match work(&client, &node).await {
            Ok(work) => {
                if !send_new(tx, work, &mut sent_claims, &mut sent_volumes).await {
                    return;
                }
                if !synced {
                    synced = true;
                    let event = pb::VolumeEvent {
                        r#type: Type::Synced as i32,
                        ..Default::default()
                    };
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
            }
            Err(error) => tracing::warn!(%node, %error, "computing the node's volume work"),
        }
        if changes.next().await.is_none() {
            return;
        }
        // Everything that changed meanwhile is covered by one recomputation.
        while let Some(Some(())) = changes.next().now_or_never() {}
    }
}

/// What a node should do now.
struct Work {
    /// Claims to provision, each with its class, by claim uid.
    provision: BTreeMap<String, (PersistentVolumeClaim, StorageClass)>,
    /// Released volumes to delete, by volume uid.
    delete: BTreeMap<String, PersistentVolume>,
}

async fn send_new(
    tx: &Sender,
    work: Work,
    sent_claims: &mut HashSet<String>,
    sent_volumes: &mut HashSet<String>,
) -> bool {
    sent_claims.retain(|uid| work.provision.contains_key(uid));
    sent_volumes.retain(|uid| work.delete.contains_key(uid));
    for (uid, (claim, class)) in work.provision {
        if !sent_claims.insert(uid) {
            continue;
        }
        let event = pb::VolumeEvent {
            r#type: Type::Provision as i32,
            claim: serde_json::to_vec(&claim).unwrap_or_default(),
            storage_class: serde_json::to_vec(&class).unwrap_or_default(),
            persistent_volume: Vec::new(),
        };
        if tx.send(Ok(event)).await.is_err() {
            return false;
        }
    }
    for (uid, volume) in work.delete {
        if !sent_volumes.insert(uid) {
            continue;
        }
        let event = pb::VolumeEvent {
            r#type: Type::Delete as i32,
            persistent_volume: serde_json::to_vec(&volume).unwrap_or_default(),
            ..Default::default()
        };
        if tx.send(Ok(event)).await.is_err() {
            return false;
        }
    }
    true
}

/// The CSI drivers `node` announces (the keys of its `csi.volume.kubernetes.io/nodeid`).
pub fn node_drivers(node: &Node) -> HashSet<String> {
    let annotation = node.annotations().get(CSI_NODE_ID);
    let parsed = annotation.and_then(|a| serde_json::from_str::<HashMap<String, String>>(a).ok());
    parsed.unwrap_or_default().into_keys().collect()
}

/// The node a volume's required node affinity names (`kubernetes.io/hostname In [node]`).
pub fn volume_node(volume: &PersistentVolume) -> Option<&str> {
    let required = volume
        .spec
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required
        .as_ref()?;
    let expressions = required
        .node_selector_terms
        .iter()
        .flat_map(|t| t.match_expressions.iter().flatten());
    expressions
        .filter(|e| e.key == HOSTNAME_LABEL && e.operator == "In")
        .find_map(|e| e.values.as_ref()?.first().map(String::as_str))
}

async fn work(client: &kube::Client, node_name: &str) -> Result<Work, kube::Error> {
    let node = Api::<Node>::all(client.clone()).get_opt(node_name).await?;
    let drivers = node.as_ref().map(node_drivers).unwrap_or_default();
    let mut work = Work {
        provision: BTreeMap::new(),
        delete: BTreeMap::new(),
    };
    if drivers.is_empty() {
        return Ok(work);
    }
    let all = ListParams::default();
    let classes: HashMap<String, StorageClass> = Api::<StorageClass>::all(client.clone())
        .list(&all)
        .await?
        .items
        .into_iter()
        .map(|c| (c.name_any(), c))
        .collect();
    let claims = Api::<PersistentVolumeClaim>::all(client.clone())
        .list(&all)
        .await?;
    for claim in claims.items {
        let unbound = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .is_none_or(str::is_empty);
        let selected =
            claim.annotations().get(SELECTED_NODE).map(String::as_str) == Some(node_name);
        let Some(class) = classes.get(claim_class(&claim)) else {
            continue;
        };
        if unbound
            && selected
            && claim.metadata.deletion_timestamp.is_none()
            && drivers.contains(&class.provisioner)
        {
            let uid = claim.metadata.uid.clone().unwrap_or_default();
            work.provision.insert(uid, (claim, class.clone()));
        }
    }
    let volumes = Api::<PersistentVolume>::all(client.clone())
        .list(&all)
        .await?;
    for volume in volumes.items {
        let driver = volume.annotations().get(PROVISIONED_BY);
        if phase(&volume) == "Released"
            && reclaim_policy(&volume) == "Delete"
            && driver.is_some_and(|d| drivers.contains(d))
            && volume_node(&volume) == Some(node_name)
        {
            work.delete
                .insert(volume.metadata.uid.clone().unwrap_or_default(), volume);
        }
    }
    Ok(work)
}

/// Serves ReportProvisioning.
pub(crate) async fn report_provisioning(
    service: &NodeService,
    request: pb::ReportProvisioningRequest,
) -> Result<pb::ReportProvisioningResponse, Status> {
    require_node_name(&request.node_name)?;
    if request.claim_namespace.is_empty() || request.claim_name.is_empty() {
        return Err(Status::invalid_argument(
            "claim_namespace, claim_name: required",
        ));
    }
    let key = format!("{}/{}", request.claim_namespace, request.claim_name);
    let claims: Api<PersistentVolumeClaim> =
        Api::namespaced(service.client.clone(), &request.claim_namespace);
    let what = format!("claim {key}");
    let Some(claim) = claims
        .get_opt(&request.claim_name)
        .await
        .map_err(|e| api_status(&what, e))?
    else {
        return Ok(pb::ReportProvisioningResponse {});
    };
    if claim.metadata.uid.as_deref() != Some(request.claim_uid.as_str()) {
        tracing::debug!(claim = %key, uid = %request.claim_uid, "a provisioning report for an older claim dropped");
        return Ok(pb::ReportProvisioningResponse {});
    }
    let selected = claim
        .annotations()
        .get(SELECTED_NODE)
        .cloned()
        .unwrap_or_default();
    if selected != request.node_name {
        return Err(Status::permission_denied(format!(
            "{what}: selected for node {selected:?}, not {:?}",
            request.node_name
        )));
    }
    let class_name = claim_class(&claim).to_string();
    let class = Api::<StorageClass>::all(service.client.clone())
        .get_opt(&class_name)
        .await
        .map_err(|e| api_status(&format!("storage class {class_name}"), e))?;
    let driver = match (&request.driver, &class) {
        (d, _) if !d.is_empty() => d.clone(),
        (_, Some(class)) => class.provisioner.clone(),
        _ => "external-provisioner".to_string(),
    };
    if !request.error.is_empty() {
        let message = format!(
            "failed to provision volume with StorageClass \"{class_name}\": {}",
            request.error
        );
        EventRecorder::new(
            service.client.clone(),
            format!("{driver}_{}", request.node_name),
        )
        .with_host(&request.node_name)
        .publish(&claim, EventType::Warning, "ProvisioningFailed", &message)
        .await;
        set_provisioning_failed(&claims, &request.claim_name, "ProvisioningFailed", &message)
            .await
            .map_err(|e| api_status(&what, e))?;
        return Ok(pb::ReportProvisioningResponse {});
    }
    if request.volume_id.is_empty() {
        return Err(Status::invalid_argument(
            "volume_id: required when error is empty",
        ));
    }
    if request.driver.is_empty() {
        return Err(Status::invalid_argument(
            "driver: required when error is empty",
        ));
    }
    let Some(class) = class else {
        return Err(Status::failed_precondition(format!(
            "{what}: storage class {class_name:?} not found"
        )));
    };
    if class.provisioner != request.driver {
        return Err(Status::invalid_argument(format!(
            "driver: {:?} is not the provisioner {:?} of storage class {class_name:?}",
            request.driver, class.provisioner
        )));
    }
    let volume = provisioned_volume(&claim, &class, &request);
    let volumes: Api<PersistentVolume> = Api::all(service.client.clone());
    match volumes.create(&PostParams::default(), &volume).await {
        Ok(_) => {
            let message = format!("Successfully provisioned volume {}", volume.name_any());
            EventRecorder::new(
                service.client.clone(),
                format!("{driver}_{}", request.node_name),
            )
            .with_host(&request.node_name)
            .publish(&claim, EventType::Normal, "ProvisioningSucceeded", &message)
            .await;
        }
        // A repeated report: the volume exists already.
        Err(e) if is_conflict(&e) => {}
        Err(e) => return Err(api_status(&format!("volume {}", volume.name_any()), e)),
    }
    Ok(pb::ReportProvisioningResponse {})
}

/// The volume the report describes, pre-bound to `claim`, pinned to the reporting node.
fn provisioned_volume(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    request: &pb::ReportProvisioningRequest,
) -> PersistentVolume {
    let parameters = class.parameters.clone().unwrap_or_default();
    let fs_type = FS_TYPE_PARAMETERS
        .iter()
        .find_map(|p| parameters.get(*p).cloned());
    let bytes = if request.capacity_bytes > 0 {
        i128::from(request.capacity_bytes)
    } else {
        requested_bytes(claim)
    };
    let claim_spec = claim.spec.clone().unwrap_or_default();
    let affinity: VolumeNodeAffinity = serde_json::from_value(serde_json::json!({
        "required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": HOSTNAME_LABEL, "operator": "In", "values": [request.node_name]},
        ]}]}
    }))
    .unwrap_or_default();
    let mut volume = PersistentVolume {
        spec: Some(PersistentVolumeSpec {
            access_modes: claim_spec.access_modes.clone(),
            capacity: Some(BTreeMap::from([(
                "storage".to_string(),
                storage_quantity(bytes),
            )])),
            claim_ref: Some(claim_ref(claim)),
            csi: Some(CSIPersistentVolumeSource {
                driver: request.driver.clone(),
                volume_handle: request.volume_id.clone(),
                fs_type,
                volume_attributes: (!request.volume_context.is_empty())
                    .then(|| request.volume_context.clone().into_iter().collect()),
                ..CSIPersistentVolumeSource::default()
            }),
            mount_options: class.mount_options.clone(),
            node_affinity: Some(affinity),
            persistent_volume_reclaim_policy: Some(
                class
                    .reclaim_policy
                    .clone()
                    .unwrap_or_else(|| "Delete".to_string()),
            ),
            storage_class_name: Some(class.name_any()),
            volume_mode: claim_spec.volume_mode.clone(),
            ..PersistentVolumeSpec::default()
        }),
        ..PersistentVolume::default()
    };
    volume.metadata.name = Some(provisioned_name(
        claim.metadata.uid.as_deref().unwrap_or_default(),
    ));
    volume
        .annotations_mut()
        .insert(PROVISIONED_BY.to_string(), request.driver.clone());
    volume
}

/// `bytes` as Kubernetes writes a byte count in binary SI (`1073741824` → `1Gi`).
fn storage_quantity(bytes: i128) -> Quantity {
    let parsed = bytes
        .checked_mul(1000)
        .and_then(|millis| ParsedQuantity::from_millis(millis, QuantityFormat::BinarySi).ok());
    Quantity(parsed.map_or_else(|| bytes.to_string(), |q| q.to_string()))
}

/// Serves ReportVolumeDeleted.
pub(crate) async fn report_deleted(
    service: &NodeService,
    request: pb::ReportVolumeDeletedRequest,
) -> Result<pb::ReportVolumeDeletedResponse, Status> {
    require_node_name(&request.node_name)?;
    if request.name.is_empty() {
        return Err(Status::invalid_argument("name: required"));
    }
    let what = format!("volume {}", request.name);
    let volumes: Api<PersistentVolume> = Api::all(service.client.clone());
    let Some(volume) = volumes
        .get_opt(&request.name)
        .await
        .map_err(|e| api_status(&what, e))?
    else {
        return Ok(pb::ReportVolumeDeletedResponse {});
    };
    let uid = volume.metadata.uid.clone().unwrap_or_default();
    if !request.uid.is_empty() && request.uid != uid {
        return Ok(pb::ReportVolumeDeletedResponse {});
    }
    if volume_node(&volume) != Some(request.node_name.as_str()) {
        return Err(Status::permission_denied(format!(
            "{what}: not provisioned on node {:?}",
            request.node_name
        )));
    }
    if !request.error.is_empty() {
        let driver = volume
            .annotations()
            .get(PROVISIONED_BY)
            .cloned()
            .unwrap_or_default();
        EventRecorder::new(
            service.client.clone(),
            format!("{driver}_{}", request.node_name),
        )
        .with_host(&request.node_name)
        .publish(
            &volume,
            EventType::Warning,
            "VolumeFailedDelete",
            &request.error,
        )
        .await;
        return Ok(pb::ReportVolumeDeletedResponse {});
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match volumes.delete(&request.name, &params).await {
        Ok(_) => Ok(pb::ReportVolumeDeletedResponse {}),
        Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(pb::ReportVolumeDeletedResponse {}),
        Err(e) => Err(api_status(&what, e)),
    }
}
