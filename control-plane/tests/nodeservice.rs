//! The node service over its real transport: a tonic client on the loopback listener that
//! `serve` shares with the REST API, and a kube client checking what landed in the API.

mod nodeservice_support;

use nodeservice_support::*;

#[tokio::test]
async fn register_assigns_the_lowest_free_pod_cidr_and_keeps_it() {
    let cluster = start().await;
    let first = register(&cluster, "n1", "10.0.0.1").await;
    assert_eq!(pod_cidr(&first), "10.244.0.0/24");
    assert_eq!(stored_cidr(&cluster, "n1").await, "10.244.0.0/24");
    let second = register(&cluster, "n2", "10.0.0.2").await;
    assert_eq!(pod_cidr(&second), "10.244.1.0/24");

    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let stored = nodes.get("n1").await.unwrap();
    assert_eq!(ready_status(&stored).0, "True");
    assert_eq!(
        stored.spec.as_ref().unwrap().pod_cidrs,
        Some(vec!["10.244.0.0/24".to_string()])
    );
    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), "kube-node-lease");
    let lease = leases.get("n1").await.unwrap();
    assert!(lease.spec.unwrap().renew_time.is_some());

    // An operator cordons and labels n1; registering again keeps both and the CIDR.
    let patch = json!({
        "metadata": {"labels": {"team": "ml"}},
        "spec": {"unschedulable": true, "taints": [{"key": "gpu", "effect": "NoSchedule"}]},
    });
    nodes
        .patch("n1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let again = register(&cluster, "n1", "10.0.0.1").await;
    assert_eq!(pod_cidr(&again), "10.244.0.0/24");
    let stored = nodes.get("n1").await.unwrap();
    let spec = stored.spec.clone().unwrap();
    assert_eq!(spec.unschedulable, Some(true));
    assert_eq!(spec.taints.unwrap()[0].key, "gpu");
    let labels = stored.metadata.labels.clone().unwrap();
    assert_eq!(labels.get("team").map(String::as_str), Some("ml"));
    assert_eq!(
        labels.get("kubernetes.io/hostname").map(String::as_str),
        Some("n1")
    );
}

#[tokio::test]
async fn register_refuses_bad_json_naming_the_field() {
    let cluster = start().await;
    let mut grpc = cluster.grpc.clone();
    let error = grpc
        .register(pb::RegisterRequest {
            node: b"{not json".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert!(error.message().starts_with("node:"), "{}", error.message());
    let error = grpc
        .register(pb::RegisterRequest {
            node: serde_json::to_vec(&json!({"metadata": {}})).unwrap(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert!(
        error.message().contains("metadata.name"),
        "{}",
        error.message()
    );
}

#[tokio::test]
async fn a_deleted_nodes_cidr_goes_to_the_next_node() {
    let cluster = start().await;
    for (name, ip) in [("a", "10.0.0.1"), ("b", "10.0.0.2"), ("c", "10.0.0.3")] {
        register(&cluster, name, ip).await;
    }
    assert_eq!(stored_cidr(&cluster, "b").await, "10.244.1.0/24");
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    nodes.delete("b", &DeleteParams::default()).await.unwrap();
    let d = register(&cluster, "d", "10.0.0.4").await;
    assert_eq!(pod_cidr(&d), "10.244.1.0/24");
    let e = register(&cluster, "e", "10.0.0.5").await;
    assert_eq!(pod_cidr(&e), "10.244.3.0/24");
}

#[tokio::test]
async fn concurrent_registrations_never_share_a_cidr() {
    let cluster = start().await;
    let registrations = (0..5).map(|i| {
        let cluster = &cluster;
        async move { register(cluster, &format!("node-{i}"), &format!("10.0.0.{i}")).await }
    });
    let nodes = futures::future::join_all(registrations).await;
    let cidrs: BTreeSet<String> = nodes.iter().map(pod_cidr).collect();
    let expected: BTreeSet<String> = (0..5).map(|i| format!("10.244.{i}.0/24")).collect();
    assert_eq!(cidrs, expected);
    let mut stored = BTreeSet::new();
    for i in 0..5 {
        stored.insert(stored_cidr(&cluster, &format!("node-{i}")).await);
    }
    assert_eq!(stored, expected);
}

#[tokio::test]
async fn watch_pods_sends_the_bound_pods_then_synced_then_changes() {
    let cluster = start().await;
    register(&cluster, "n1", "10.0.0.1").await;
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), "default");
    let config_maps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "default");
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "creds"}, "stringData": {"k": "v"}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    config_maps
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "settings"}, "data": {"a": "b"}}))
                .unwrap(),
        )
        .await
        .unwrap();
    create_pod(
        &cluster.client,
        json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "nodeName": "n1",
                "containers": [{
                    "name": "c", "image": "busybox",
                    "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "k"}}}],
                    "envFrom": [{"secretRef": {"name": "missing"}}],
                }],
                "volumes": [{"name": "v", "configMap": {"name": "settings"}}],
            }
        }),
    )
    .await;
    create_pod(&cluster.client, pod_on("elsewhere", "n2")).await;

    let mut stream = cluster
        .grpc
        .clone()
        .watch_pods(pb::WatchPodsRequest {
            node_name: "n1".to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    let (kind, pod, event) = next_pod_event(&mut stream).await;
    assert_eq!(kind, PodEventType::Added);
    assert_eq!(pod.unwrap().metadata.name.as_deref(), Some("web"));
    assert_eq!(event.secrets.len(), 1, "the missing secret is left out");
    let secret: Secret = serde_json::from_slice(&event.secrets[0]).unwrap();
    assert_eq!(secret.metadata.name.as_deref(), Some("creds"));
    assert_eq!(event.config_maps.len(), 1);
    let config_map: ConfigMap = serde_json::from_slice(&event.config_maps[0]).unwrap();
    assert_eq!(config_map.metadata.name.as_deref(), Some("settings"));
    let (kind, pod, _) = next_pod_event(&mut stream).await;
    assert_eq!((kind, pod.is_none()), (PodEventType::Synced, true));

    // A pod bound later arrives as ADDED; its deletion ends as DELETED.
    create_pod(
        &cluster.client,
        json!({"metadata": {"name": "late"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    pods.patch(
        "late",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"nodeName": "n1"}})),
    )
    .await
    .unwrap();
    let (kind, pod, _) = next_pod_event(&mut stream).await;
    assert_eq!(kind, PodEventType::Added);
    let late = pod.unwrap();
    assert_eq!(late.metadata.name.as_deref(), Some("late"));

    // Deleting a bound pod is graceful: MODIFIED with a deletionTimestamp, then the agent's
    // PodTerminated removes it and the stream says DELETED.
    pods.delete("late", &DeleteParams::default()).await.unwrap();
    let (kind, pod, _) = next_pod_event(&mut stream).await;
    assert_eq!(kind, PodEventType::Modified);
    assert!(pod.unwrap().metadata.deletion_timestamp.is_some());
    assert!(
        pods.get_opt("late").await.unwrap().is_some(),
        "still terminating"
    );
    let terminated = pb::PodTerminatedRequest {
        node_name: "n1".to_string(),
        namespace: "default".to_string(),
        name: "late".to_string(),
        uid: late.metadata.uid.clone().unwrap(),
    };
    cluster
        .grpc
        .clone()
        .pod_terminated(terminated.clone())
        .await
        .unwrap();
    let (kind, pod, _) = next_pod_event(&mut stream).await;
    assert_eq!(kind, PodEventType::Deleted);
    assert_eq!(pod.unwrap().metadata.name.as_deref(), Some("late"));
    assert!(pods.get_opt("late").await.unwrap().is_none());
    // Idempotent: the pod is gone, the call still succeeds.
    cluster
        .grpc
        .clone()
        .pod_terminated(terminated)
        .await
        .unwrap();
}

#[tokio::test]
async fn update_pod_status_writes_only_the_nodes_own_pods() {
    let cluster = start().await;
    register(&cluster, "n1", "10.0.0.1").await;
    let mine = create_pod(&cluster.client, pod_on("mine", "n1")).await;
    let theirs = create_pod(&cluster.client, pod_on("theirs", "n2")).await;
    let status = json!({
        "phase": "Running",
        "podIP": "10.244.0.5",
        "conditions": [{"type": "Ready", "status": "True"}],
    });
    let request = |name: &str, uid: &str| pb::UpdatePodStatusRequest {
        node_name: "n1".to_string(),
        namespace: "default".to_string(),
        name: name.to_string(),
        uid: uid.to_string(),
        status: serde_json::to_vec(&status).unwrap(),
    };
    let mut grpc = cluster.grpc.clone();
    grpc.update_pod_status(request("mine", mine.metadata.uid.as_deref().unwrap()))
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let stored = pods.get("mine").await.unwrap();
    let stored_status = stored.status.unwrap();
    assert_eq!(stored_status.phase.as_deref(), Some("Running"));
    assert_eq!(stored_status.pod_ip.as_deref(), Some("10.244.0.5"));

    let error = grpc
        .update_pod_status(request("theirs", theirs.metadata.uid.as_deref().unwrap()))
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::FailedPrecondition);
    assert!(
        error.message().contains("bound to node n2"),
        "{}",
        error.message()
    );
    assert_ne!(
        pods.get("theirs")
            .await
            .unwrap()
            .status
            .unwrap()
            .phase
            .as_deref(),
        Some("Running")
    );
    let error = grpc
        .update_pod_status(request("mine", "some-older-uid"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::FailedPrecondition);
    let error = grpc
        .update_pod_status(request("nobody", "x"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::NotFound);
    let mut bad = request("mine", mine.metadata.uid.as_deref().unwrap());
    bad.status = b"[1,2]".to_vec();
    let error = grpc.update_pod_status(bad).await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert!(
        error.message().starts_with("status:"),
        "{}",
        error.message()
    );
}

#[tokio::test]
async fn an_expired_lease_marks_the_node_and_its_pods_not_ready_until_renewed() {
    let grace = Duration::from_secs(40);
    let cluster = start_with(NodeServiceConfig {
        lease_grace: grace,
        ..NodeServiceConfig::default()
    })
    .await;
    register(&cluster, "n1", "10.0.0.1").await;
    let pod = create_pod(&cluster.client, pod_on("worker", "n1")).await;
    cluster
        .grpc
        .clone()
        .update_pod_status(pb::UpdatePodStatusRequest {
            node_name: "n1".to_string(),
            namespace: "default".to_string(),
            name: "worker".to_string(),
            uid: pod.metadata.uid.clone().unwrap(),
            status: serde_json::to_vec(&json!({
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}],
            }))
            .unwrap(),
        })
        .await
        .unwrap();
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");

    let now = k8s_openapi::jiff::Timestamp::now();
    let expired = lifecycle::check_leases(&cluster.client, grace, now)
        .await
        .unwrap();
    assert!(expired.is_empty(), "a fresh lease is alive: {expired:?}");
    assert_eq!(ready_status(&nodes.get("n1").await.unwrap()).0, "True");

    let later = now + k8s_openapi::jiff::SignedDuration::from_secs(41);
    let expired = lifecycle::check_leases(&cluster.client, grace, later)
        .await
        .unwrap();
    assert_eq!(expired, vec!["n1".to_string()]);
    let node = nodes.get("n1").await.unwrap();
    assert_eq!(
        ready_status(&node),
        ("Unknown".to_string(), Some("NodeStatusUnknown".to_string()))
    );
    assert_eq!(
        pod_ready(&pods.get("worker").await.unwrap()).as_deref(),
        Some("False")
    );

    let renewed = cluster
        .grpc
        .clone()
        .renew_lease(pb::RenewLeaseRequest {
            node_name: "n1".to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(renewed.registered);
    assert_eq!(ready_status(&nodes.get("n1").await.unwrap()).0, "True");

    nodes.delete("n1", &DeleteParams::default()).await.unwrap();
    let renewed = cluster
        .grpc
        .clone()
        .renew_lease(pb::RenewLeaseRequest {
            node_name: "n1".to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!renewed.registered, "a deleted node must register again");
}

#[tokio::test]
async fn the_lifecycle_loop_marks_a_node_with_a_stale_lease() {
    let cluster = start().await;
    register(&cluster, "n1", "10.0.0.1").await;
    register(&cluster, "n2", "10.0.0.2").await;
    // n1's agent last renewed a minute ago.
    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), "kube-node-lease");
    let stale =
        k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(60);
    leases
        .patch(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"renewTime": stale.to_string()}})),
        )
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(lifecycle::run(
        cluster.client.clone(),
        Duration::from_secs(40),
        shutdown.clone(),
    ));
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let marked = async {
        loop {
            if ready_status(&nodes.get("n1").await.unwrap()).0 == "Unknown" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), marked)
        .await
        .expect("the loop's first pass marks n1");
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(ready_status(&nodes.get("n2").await.unwrap()).0, "True");
}

#[tokio::test]
async fn pods_on_a_lost_node_fail_after_their_toleration_and_stay_failed() {
    let grace = Duration::from_secs(40);
    let cluster = start_with(NodeServiceConfig {
        lease_grace: grace,
        ..NodeServiceConfig::default()
    })
    .await;
    register(&cluster, "n1", "10.0.0.1").await;
    let worker = create_pod(&cluster.client, pod_on("worker", "n1")).await;
    let mut patient = pod_on("patient", "n1");
    patient["spec"]["tolerations"] = json!([{
        "key": "node.kubernetes.io/unreachable",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 3600
    }]);
    create_pod(&cluster.client, patient).await;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let phase = |pod: &Pod| pod.status.as_ref().and_then(|s| s.phase.clone());

    let now = k8s_openapi::jiff::Timestamp::now();
    let lost = now + k8s_openapi::jiff::SignedDuration::from_secs(41);
    lifecycle::check_leases(&cluster.client, grace, lost)
        .await
        .unwrap();
    // Not ready, but within the default 300 s toleration: nothing fails yet.
    let within = lost + k8s_openapi::jiff::SignedDuration::from_secs(299);
    lifecycle::check_leases(&cluster.client, grace, within)
        .await
        .unwrap();
    assert_ne!(
        phase(&pods.get("worker").await.unwrap()).as_deref(),
        Some("Failed")
    );

    let past = lost + k8s_openapi::jiff::SignedDuration::from_secs(301);
    lifecycle::check_leases(&cluster.client, grace, past)
        .await
        .unwrap();
    let failed = pods.get("worker").await.unwrap();
    let status = failed.status.clone().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Failed"));
    assert_eq!(status.reason.as_deref(), Some(lifecycle::REASON_NODE_LOST));
    assert!(
        status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "DisruptionTarget" && c.status == "True"),
        "{status:?}"
    );
    assert_ne!(
        phase(&pods.get("patient").await.unwrap()).as_deref(),
        Some("Failed"),
        "a pod that tolerates an hour stays"
    );

    // The agent comes back and reports the pod running, then (having stopped its
    // container, which exited 0) succeeded: the terminal phase is kept either way.
    for reported in ["Running", "Succeeded"] {
        cluster
            .grpc
            .clone()
            .update_pod_status(pb::UpdatePodStatusRequest {
                node_name: "n1".to_string(),
                namespace: "default".to_string(),
                name: "worker".to_string(),
                uid: worker.metadata.uid.clone().unwrap(),
                status: serde_json::to_vec(&json!({"phase": reported})).unwrap(),
            })
            .await
            .unwrap();
        let after = pods.get("worker").await.unwrap();
        assert_eq!(phase(&after).as_deref(), Some("Failed"), "after {reported}");
        assert_eq!(
            after.status.unwrap().reason.as_deref(),
            Some(lifecycle::REASON_NODE_LOST)
        );
    }
}

#[tokio::test]
async fn a_second_delete_leaves_a_terminating_pod_to_its_agent() {
    let cluster = start_with(NodeServiceConfig::default()).await;
    register(&cluster, "n1", "10.0.0.1").await;
    let mut pod = pod_on("graceful", "n1");
    pod["spec"]["terminationGracePeriodSeconds"] = json!(30);
    create_pod(&cluster.client, pod).await;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");

    pods.delete("graceful", &DeleteParams::default())
        .await
        .unwrap();
    let terminating = pods.get("graceful").await.unwrap();
    assert!(terminating.metadata.deletion_timestamp.is_some());
    // A garbage collector or a second `kubectl delete` must not take it from the agent.
    pods.delete("graceful", &DeleteParams::default())
        .await
        .unwrap();
    let still = pods.get_opt("graceful").await.unwrap();
    assert!(still.is_some(), "a second delete removed a terminating pod");
    assert_eq!(
        still.unwrap().metadata.deletion_timestamp,
        terminating.metadata.deletion_timestamp,
        "the deadline stays"
    );
    // Only an explicit grace period of 0 (the agent's final delete, or --force) removes it.
    pods.delete(
        "graceful",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        },
    )
    .await
    .unwrap();
    assert!(pods.get_opt("graceful").await.unwrap().is_none());
}
