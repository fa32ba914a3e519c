//! The volume controller over the real API: claims bind to volumes, bad claims get a
//! clear reason, claims and volumes are protected while in use, and a deleted claim's
//! volume is released to its reclaim policy.

mod volumes_support;

use volumes_support::*;

fn volume_json(name: &str, size: &str, class: &str, policy: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": class,
            "persistentVolumeReclaimPolicy": policy,
            "csi": {"driver": DRIVER, "volumeHandle": name},
        }
    })
}

#[tokio::test]
async fn a_pending_claim_binds_to_the_smallest_fitting_available_volume() {
    let cluster = start_with_controller().await;
    for (name, size, class) in [
        ("pv-big", "10Gi", "manual"),
        ("pv-small", "2Gi", "manual"),
        ("pv-tiny", "512Mi", "manual"),
        ("pv-other-class", "2Gi", "other"),
    ] {
        create_volume(&cluster, volume_json(name, size, class, "Retain")).await;
    }
    let created = create_claim(&cluster, claim_json("data", "manual", "1Gi")).await;

    let claim = claim_in_phase(&cluster, "data", "Bound").await;
    let spec = claim.spec.as_ref().unwrap();
    assert_eq!(spec.volume_name.as_deref(), Some("pv-small"));
    let status = claim.status.as_ref().unwrap();
    assert_eq!(status.capacity.as_ref().unwrap()["storage"].0, "2Gi");
    assert_eq!(
        status.access_modes.as_deref(),
        Some(&["ReadWriteOnce".to_string()][..])
    );
    assert_eq!(
        annotation(&claim.metadata, volumes::BIND_COMPLETED),
        Some("yes")
    );
    assert_eq!(
        annotation(&claim.metadata, volumes::BOUND_BY_CONTROLLER),
        Some("yes")
    );
    assert!(finalizers(&claim.metadata).contains(&volumes::PVC_PROTECTION.to_string()));

    let volume = volume_in_phase(&cluster, "pv-small", "Bound").await;
    let reference = volume.spec.as_ref().unwrap().claim_ref.as_ref().unwrap();
    assert_eq!(reference.name.as_deref(), Some("data"));
    assert_eq!(reference.namespace.as_deref(), Some("default"));
    assert_eq!(reference.uid, created.metadata.uid);
    assert!(finalizers(&volume.metadata).contains(&volumes::PV_PROTECTION.to_string()));
    let other = volume_in_phase(&cluster, "pv-big", "Available").await;
    assert!(
        other.spec.unwrap().claim_ref.is_none(),
        "only one volume is bound"
    );
}

#[tokio::test]
async fn a_claim_naming_its_volume_binds_to_that_one() {
    let cluster = start_with_controller().await;
    create_volume(&cluster, volume_json("pv-a", "1Gi", "manual", "Retain")).await;
    create_volume(&cluster, volume_json("pv-b", "5Gi", "manual", "Retain")).await;
    let mut claim = claim_json("named", "manual", "1Gi");
    claim["spec"]["volumeName"] = json!("pv-b");
    create_claim(&cluster, claim).await;

    let claim = claim_in_phase(&cluster, "named", "Bound").await;
    assert_eq!(claim.spec.unwrap().volume_name.as_deref(), Some("pv-b"));
    assert_eq!(
        annotation(&claim.metadata, volumes::BOUND_BY_CONTROLLER),
        None,
        "the user chose the volume"
    );
    volume_in_phase(&cluster, "pv-b", "Bound").await;
}

#[tokio::test]
async fn a_zero_or_missing_storage_request_is_refused_naming_the_field() {
    let cluster = start_with_controller().await;
    for requests in [json!({"storage": "0"}), json!({})] {
        let claim: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "empty"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": requests}},
        }))
        .unwrap();
        let error = claims(&cluster)
            .create(&PostParams::default(), &claim)
            .await
            .unwrap_err();
        let kube::Error::Api(status) = error else {
            panic!("an API error, got {error:?}");
        };
        assert_eq!(status.code, 422, "{status:?}");
        assert!(
            status.message.contains("spec.resources.requests[storage]"),
            "{}",
            status.message
        );
    }
}

#[tokio::test]
async fn an_unknown_storage_class_leaves_the_claim_pending_with_a_warning() {
    let cluster = start_with_controller().await;
    create_claim(&cluster, claim_json("lost", "no-such-class", "1Gi")).await;

    let event = event_with_reason(&cluster, "default", "lost", "ProvisioningFailed").await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    let message = event.message.unwrap_or_default();
    assert!(message.contains("\"no-such-class\" not found"), "{message}");
    let claim = claims(&cluster).get("lost").await.unwrap();
    let status = claim.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    let condition = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Provisioned")
        .expect("a Provisioned condition");
    assert_eq!(condition.status, "False");
    assert_eq!(condition.reason.as_deref(), Some("StorageClassNotFound"));
    assert!(condition.message.unwrap().contains("no-such-class"));
}

#[tokio::test]
async fn a_claim_used_by_a_running_pod_is_removed_only_after_the_pod_finishes() {
    let cluster = start_with_controller().await;
    create_volume(&cluster, volume_json("pv-used", "1Gi", "manual", "Retain")).await;
    create_claim(&cluster, claim_json("used", "manual", "1Gi")).await;
    claim_in_phase(&cluster, "used", "Bound").await;
    let pod = create_pod(
        &cluster.client,
        json!({
            "metadata": {"name": "user", "namespace": "default"},
            "spec": {
                "containers": [{"name": "c", "image": "busybox"}],
                "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "used"}}],
            }
        }),
    )
    .await;

    claims(&cluster)
        .delete("used", &DeleteParams::default())
        .await
        .unwrap();
    let held = claims(&cluster).get("used").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    assert!(finalizers(&held.metadata).contains(&volumes::PVC_PROTECTION.to_string()));

    // The pod is still Pending (not finished): the claim stays. Finishing it frees the claim.
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let mut finished = pod.clone();
    finished.status = Some(serde_json::from_value(json!({"phase": "Succeeded"})).unwrap());
    let still = claims(&cluster).get_opt("used").await.unwrap();
    assert!(still.is_some(), "a claim in use is not removed");
    pods.replace_status("user", &PostParams::default(), &finished)
        .await
        .unwrap();
    let api = claims(&cluster);
    eventually(
        "the claim removed",
        || async { api.get_opt("used").await.unwrap() },
        Option::is_none,
    )
    .await;
    // Retain: the volume is Released and kept.
    let volume = volume_in_phase(&cluster, "pv-used", "Released").await;
    assert!(volume.metadata.deletion_timestamp.is_none());
}

#[tokio::test]
async fn a_bound_volume_is_protected_until_its_claim_is_gone() {
    let cluster = start_with_controller().await;
    create_volume(&cluster, volume_json("pv-kept", "1Gi", "manual", "Retain")).await;
    create_claim(&cluster, claim_json("keeper", "manual", "1Gi")).await;
    claim_in_phase(&cluster, "keeper", "Bound").await;
    volume_in_phase(&cluster, "pv-kept", "Bound").await;

    volumes_api(&cluster)
        .delete("pv-kept", &DeleteParams::default())
        .await
        .unwrap();
    let held = volumes_api(&cluster).get("pv-kept").await.unwrap();
    assert!(
        held.metadata.deletion_timestamp.is_some(),
        "held by pv-protection"
    );

    claims(&cluster)
        .delete("keeper", &DeleteParams::default())
        .await
        .unwrap();
    let api = volumes_api(&cluster);
    eventually(
        "the released volume removed",
        || async { api.get_opt("pv-kept").await.unwrap() },
        Option::is_none,
    )
    .await;
}
