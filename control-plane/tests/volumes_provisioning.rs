//! Provisioning through the node service's real transport: the test plays a node agent's
//! provisioner (WatchVolumes, ReportProvisioning, ReportVolumeDeleted) with the volume
//! controller running.

mod volumes_support;

use volumes_support::*;

async fn next_volume_event(
    stream: &mut tonic::Streaming<pb::VolumeEvent>,
) -> (VolumeEventType, pb::VolumeEvent) {
    let event = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a volume event within 10 s")
        .unwrap()
        .expect("the stream stays open");
    (VolumeEventType::try_from(event.r#type).unwrap(), event)
}

async fn watch_volumes(cluster: &Cluster, node: &str) -> tonic::Streaming<pb::VolumeEvent> {
    cluster
        .grpc
        .clone()
        .watch_volumes(pb::WatchVolumesRequest {
            node_name: node.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// Two nodes running the driver, a WaitForFirstConsumer class of it, and a claim the
/// scheduler placed on n1.
async fn setup(policy: &str) -> (Cluster, PersistentVolumeClaim) {
    let cluster = start_with_controller().await;
    register_with_drivers(&cluster, "n1", "10.0.0.1", &[DRIVER]).await;
    register_with_drivers(&cluster, "n2", "10.0.0.2", &[DRIVER]).await;
    create_class(
        &cluster,
        json!({
            "metadata": {"name": "local"},
            "provisioner": DRIVER,
            "reclaimPolicy": policy,
            "volumeBindingMode": "WaitForFirstConsumer",
            "parameters": {"csi.storage.k8s.io/fstype": "ext4"},
        }),
    )
    .await;
    let mut claim = claim_json("data", "local", "1Gi");
    claim["metadata"]["annotations"] = json!({volumes::SELECTED_NODE: "n1"});
    let claim = create_claim(&cluster, claim).await;
    (cluster, claim)
}

fn success(claim: &PersistentVolumeClaim, node: &str) -> pb::ReportProvisioningRequest {
    pb::ReportProvisioningRequest {
        node_name: node.to_string(),
        claim_namespace: "default".to_string(),
        claim_name: claim.metadata.name.clone().unwrap(),
        claim_uid: claim.metadata.uid.clone().unwrap(),
        error: String::new(),
        volume_id: "vol-abc".to_string(),
        capacity_bytes: 1 << 30,
        volume_context: [("path".to_string(), "/var/lib/cox-csi/vol-abc".to_string())].into(),
        driver: DRIVER.to_string(),
    }
}

#[tokio::test]
async fn the_selected_node_provisions_the_claim_and_the_volume_binds() {
    let (cluster, claim) = setup("Delete").await;
    let uid = claim.metadata.uid.clone().unwrap();

    let mut n1 = watch_volumes(&cluster, "n1").await;
    let (kind, event) = next_volume_event(&mut n1).await;
    assert_eq!(kind, VolumeEventType::Provision);
    let sent: PersistentVolumeClaim = serde_json::from_slice(&event.claim).unwrap();
    assert_eq!(sent.metadata.uid.as_deref(), Some(uid.as_str()));
    let class: StorageClass = serde_json::from_slice(&event.storage_class).unwrap();
    assert_eq!(class.provisioner, DRIVER);
    assert_eq!(next_volume_event(&mut n1).await.0, VolumeEventType::Synced);
    let mut n2 = watch_volumes(&cluster, "n2").await;
    assert_eq!(
        next_volume_event(&mut n2).await.0,
        VolumeEventType::Synced,
        "n2 was not selected: nothing to provision"
    );

    let refused = cluster
        .grpc
        .clone()
        .report_provisioning(success(&claim, "n2"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    let mut stale = success(&claim, "n1");
    stale.claim_uid = "an-older-claim".to_string();
    cluster
        .grpc
        .clone()
        .report_provisioning(stale)
        .await
        .unwrap();
    let name = format!("pvc-{uid}");
    assert!(
        volumes_api(&cluster)
            .get_opt(&name)
            .await
            .unwrap()
            .is_none(),
        "a report for another claim uid makes nothing"
    );

    for _ in 0..2 {
        cluster
            .grpc
            .clone()
            .report_provisioning(success(&claim, "n1"))
            .await
            .unwrap();
    }
    let claim = claim_in_phase(&cluster, "data", "Bound").await;
    assert_eq!(
        claim.spec.unwrap().volume_name.as_deref(),
        Some(name.as_str())
    );
    let volume = volume_in_phase(&cluster, &name, "Bound").await;
    let all = volumes_api(&cluster)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(
        all.items.len(),
        1,
        "a repeated report makes no second volume"
    );
    assert_eq!(
        annotation(&volume.metadata, volumes::PROVISIONED_BY),
        Some(DRIVER)
    );
    let spec = volume.spec.unwrap();
    let csi = spec.csi.unwrap();
    assert_eq!(
        (csi.driver.as_str(), csi.volume_handle.as_str()),
        (DRIVER, "vol-abc")
    );
    assert_eq!(csi.fs_type.as_deref(), Some("ext4"));
    assert_eq!(
        csi.volume_attributes.unwrap()["path"],
        "/var/lib/cox-csi/vol-abc"
    );
    assert_eq!(spec.capacity.unwrap()["storage"].0, "1Gi");
    assert_eq!(
        spec.persistent_volume_reclaim_policy.as_deref(),
        Some("Delete")
    );
    assert_eq!(spec.storage_class_name.as_deref(), Some("local"));
    assert_eq!(spec.claim_ref.unwrap().uid.as_deref(), Some(uid.as_str()));
    let term = &spec
        .node_affinity
        .unwrap()
        .required
        .unwrap()
        .node_selector_terms[0];
    let expression = &term.match_expressions.as_ref().unwrap()[0];
    assert_eq!(expression.key, "kubernetes.io/hostname");
    assert_eq!(expression.values.as_deref(), Some(&["n1".to_string()][..]));
}

#[tokio::test]
async fn a_driver_error_is_a_provisioning_failed_warning_on_the_claim() {
    let (cluster, claim) = setup("Delete").await;
    let mut report = success(&claim, "n1");
    report.error =
        "InvalidArgument: access mode MULTI_NODE_MULTI_WRITER is not supported".to_string();
    cluster
        .grpc
        .clone()
        .report_provisioning(report)
        .await
        .unwrap();

    let event = event_with_reason(&cluster, "default", "data", "ProvisioningFailed").await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    let message = event.message.unwrap();
    assert!(
        message.contains("MULTI_NODE_MULTI_WRITER is not supported"),
        "{message}"
    );
    let stored = claims(&cluster).get("data").await.unwrap();
    let condition = stored
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Provisioned")
        .unwrap();
    assert_eq!(condition.reason.as_deref(), Some("ProvisioningFailed"));
    assert!(
        condition
            .message
            .unwrap()
            .contains("MULTI_NODE_MULTI_WRITER")
    );
}

#[tokio::test]
async fn a_deleted_claims_volume_is_deleted_by_its_node() {
    let (cluster, claim) = setup("Delete").await;
    let name = format!("pvc-{}", claim.metadata.uid.clone().unwrap());
    cluster
        .grpc
        .clone()
        .report_provisioning(success(&claim, "n1"))
        .await
        .unwrap();
    claim_in_phase(&cluster, "data", "Bound").await;
    let mut n1 = watch_volumes(&cluster, "n1").await;
    assert_eq!(next_volume_event(&mut n1).await.0, VolumeEventType::Synced);

    claims(&cluster)
        .delete("data", &DeleteParams::default())
        .await
        .unwrap();
    let (kind, event) = next_volume_event(&mut n1).await;
    assert_eq!(kind, VolumeEventType::Delete);
    let volume: PersistentVolume = serde_json::from_slice(&event.persistent_volume).unwrap();
    assert_eq!(volume.metadata.name.as_deref(), Some(name.as_str()));
    let uid = volume.metadata.uid.clone().unwrap();

    let report = |node: &str, error: &str| pb::ReportVolumeDeletedRequest {
        node_name: node.to_string(),
        name: name.clone(),
        uid: uid.clone(),
        error: error.to_string(),
    };
    let refused = cluster
        .grpc
        .clone()
        .report_volume_deleted(report("n2", ""))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    cluster
        .grpc
        .clone()
        .report_volume_deleted(report("n1", "Internal: device busy"))
        .await
        .unwrap();
    let event = event_with_reason(&cluster, "default", &name, "VolumeFailedDelete").await;
    assert_eq!(event.message.as_deref(), Some("Internal: device busy"));
    assert!(
        volumes_api(&cluster)
            .get_opt(&name)
            .await
            .unwrap()
            .is_some()
    );

    cluster
        .grpc
        .clone()
        .report_volume_deleted(report("n1", ""))
        .await
        .unwrap();
    let api = volumes_api(&cluster);
    eventually(
        "the volume deleted",
        || async { api.get_opt(&name).await.unwrap() },
        Option::is_none,
    )
    .await;
}

#[tokio::test]
async fn a_retained_volume_is_released_and_never_sent_for_deletion() {
    let (cluster, claim) = setup("Retain").await;
    let name = format!("pvc-{}", claim.metadata.uid.clone().unwrap());
    cluster
        .grpc
        .clone()
        .report_provisioning(success(&claim, "n1"))
        .await
        .unwrap();
    claim_in_phase(&cluster, "data", "Bound").await;
    claims(&cluster)
        .delete("data", &DeleteParams::default())
        .await
        .unwrap();
    volume_in_phase(&cluster, &name, "Released").await;

    let mut n1 = watch_volumes(&cluster, "n1").await;
    assert_eq!(
        next_volume_event(&mut n1).await.0,
        VolumeEventType::Synced,
        "a Retain volume is not deleted"
    );
}

#[tokio::test]
async fn an_unselected_claim_follows_its_bound_pod_to_a_node_running_the_driver() {
    let cluster = start_with_controller().await;
    register_with_drivers(&cluster, "n1", "10.0.0.1", &[DRIVER]).await;
    register_with_drivers(&cluster, "plain", "10.0.0.3", &[]).await;
    create_class(
        &cluster,
        json!({
            "metadata": {"name": "local"},
            "provisioner": DRIVER,
            "volumeBindingMode": "WaitForFirstConsumer",
        }),
    )
    .await;
    create_claim(&cluster, claim_json("scratch", "local", "1Gi")).await;
    create_claim(&cluster, claim_json("stranded", "local", "1Gi")).await;
    let mut n1 = watch_volumes(&cluster, "n1").await;
    assert_eq!(
        next_volume_event(&mut n1).await.0,
        VolumeEventType::Synced,
        "no node chosen yet: nothing to provision"
    );

    for (pod, claim, node) in [("a", "scratch", "n1"), ("b", "stranded", "plain")] {
        create_pod(
            &cluster.client,
            json!({
                "metadata": {"name": pod, "namespace": "default"},
                "spec": {
                    "nodeName": node,
                    "containers": [{"name": "c", "image": "busybox"}],
                    "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}],
                }
            }),
        )
        .await;
    }
    let (kind, event) = next_volume_event(&mut n1).await;
    assert_eq!(kind, VolumeEventType::Provision);
    let sent: PersistentVolumeClaim = serde_json::from_slice(&event.claim).unwrap();
    assert_eq!(sent.metadata.name.as_deref(), Some("scratch"));
    assert_eq!(
        annotation(&sent.metadata, volumes::SELECTED_NODE),
        Some("n1")
    );

    let warning = event_with_reason(&cluster, "default", "stranded", "ProvisioningFailed").await;
    assert!(
        warning.message.unwrap().contains("does not run CSI driver"),
        "a node without the driver is named"
    );
    let stranded = claims(&cluster).get("stranded").await.unwrap();
    assert_eq!(annotation(&stranded.metadata, volumes::SELECTED_NODE), None);
}
