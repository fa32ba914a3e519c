//! The node service's cluster-wide answers: device inventory (ResourceSlices and extended
//! resources), routes to other nodes' pod CIDRs, cluster DNS, and REST + gRPC on one port.

mod nodeservice_support;

use nodeservice_support::*;

fn slice_json(name: &str, pool: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": name},
        "spec": {
            "driver": "gpu.coxswain.dev",
            "nodeName": "someone-else",
            "pool": {"name": pool, "generation": 1, "resourceSliceCount": 1},
            "devices": [{"name": "gpu-0"}],
        }
    }))
    .unwrap()
}

#[tokio::test]
async fn report_devices_replaces_slices_and_extended_resources() {
    let cluster = start().await;
    register(&cluster, "n1", "10.0.0.1").await;
    let mut grpc = cluster.grpc.clone();
    grpc.report_devices(pb::ReportDevicesRequest {
        node_name: "n1".to_string(),
        resource_slices: vec![
            slice_json("n1-gpu", "n1-gpu"),
            slice_json("n1-nic", "n1-nic"),
        ],
        capacity: [("nvidia.com/gpu".to_string(), 4)].into(),
        allocatable: [("nvidia.com/gpu".to_string(), 3)].into(),
    })
    .await
    .unwrap();
    let slices: Api<ResourceSlice> = Api::all(cluster.client.clone());
    let listed = slices.list(&ListParams::default()).await.unwrap();
    let names: BTreeSet<String> = listed
        .items
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["n1-gpu".to_string(), "n1-nic".to_string()])
    );
    for slice in &listed.items {
        assert_eq!(slice.spec.node_name.as_deref(), Some("n1"));
        let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Node", "n1"));
    }
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let status = nodes.get("n1").await.unwrap().status.unwrap();
    assert_eq!(status.capacity.as_ref().unwrap()["nvidia.com/gpu"].0, "4");
    assert_eq!(
        status.allocatable.as_ref().unwrap()["nvidia.com/gpu"].0,
        "3"
    );
    assert_eq!(status.capacity.as_ref().unwrap()["cpu"].0, "8");

    grpc.report_devices(pb::ReportDevicesRequest {
        node_name: "n1".to_string(),
        resource_slices: vec![slice_json("n1-gpu", "n1-gpu")],
        ..pb::ReportDevicesRequest::default()
    })
    .await
    .unwrap();
    let names: Vec<String> = slices
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, vec!["n1-gpu".to_string()]);
    let status = nodes.get("n1").await.unwrap().status.unwrap();
    assert!(
        !status
            .capacity
            .as_ref()
            .unwrap()
            .contains_key("nvidia.com/gpu")
    );
    assert!(
        !status
            .allocatable
            .as_ref()
            .unwrap()
            .contains_key("nvidia.com/gpu")
    );
    assert_eq!(status.capacity.as_ref().unwrap()["cpu"].0, "8");
}

async fn next_route(
    stream: &mut tonic::Streaming<pb::RouteEvent>,
) -> (RouteEventType, String, String, String) {
    let event = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a route event within 10 s")
        .unwrap()
        .expect("the stream stays open");
    (
        RouteEventType::try_from(event.r#type).unwrap(),
        event.node_name,
        event.pod_cidr,
        event.node_ip,
    )
}

#[tokio::test]
async fn watch_routes_sends_the_other_nodes_cidrs_and_ips() {
    let cluster = start().await;
    register(&cluster, "n1", "10.0.0.1").await;
    register(&cluster, "n2", "10.0.0.2").await;
    let mut stream = cluster
        .grpc
        .clone()
        .watch_routes(pb::WatchRoutesRequest {
            node_name: "n1".to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    let upsert = |name: &str, cidr: &str, ip: &str| {
        (
            RouteEventType::Upsert,
            name.to_string(),
            cidr.to_string(),
            ip.to_string(),
        )
    };
    assert_eq!(
        next_route(&mut stream).await,
        upsert("n2", "10.244.1.0/24", "10.0.0.2")
    );
    assert_eq!(next_route(&mut stream).await.0, RouteEventType::Synced);
    register(&cluster, "n3", "10.0.0.3").await;
    assert_eq!(
        next_route(&mut stream).await,
        upsert("n3", "10.244.2.0/24", "10.0.0.3")
    );
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    nodes.delete("n2", &DeleteParams::default()).await.unwrap();
    let (kind, name, ..) = next_route(&mut stream).await;
    assert_eq!((kind, name.as_str()), (RouteEventType::Delete, "n2"));
}

async fn set_pod_status(client: &kube::Client, name: &str, status: Value) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": status})),
    )
    .await
    .unwrap();
}

async fn resolve(cluster: &Cluster, name: &str) -> (Vec<String>, bool) {
    let answer = cluster
        .grpc
        .clone()
        .resolve(pb::ResolveRequest {
            name: name.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    (answer.addresses, answer.authoritative)
}

#[tokio::test]
async fn resolve_answers_pod_hostnames_and_services() {
    let cluster = start().await;
    for (i, ready) in [(0, "True"), (1, "True"), (2, "False")] {
        let name = format!("job-worker-{i}");
        create_pod(
            &cluster.client,
            json!({
                "metadata": {"name": name, "labels": {"job": "train"}},
                "spec": {
                    "hostname": name, "subdomain": "job", "nodeName": "n1",
                    "containers": [{"name": "c", "image": "busybox"}],
                }
            }),
        )
        .await;
        set_pod_status(
            &cluster.client,
            &name,
            json!({"phase": "Running", "podIP": format!("10.244.0.{}", 10 + i),
                   "conditions": [{"type": "Ready", "status": ready}]}),
        )
        .await;
    }
    let services: Api<Service> = Api::namespaced(cluster.client.clone(), "default");
    for service in [
        json!({"metadata": {"name": "job"}, "spec": {"clusterIP": "None", "selector": {"job": "train"}, "ports": [{"port": 80}]}}),
        json!({"metadata": {"name": "web"}, "spec": {"clusterIP": "10.96.0.20", "selector": {"app": "web"}, "ports": [{"port": 80}]}}),
    ] {
        services
            .create(
                &PostParams::default(),
                &serde_json::from_value(service).unwrap(),
            )
            .await
            .unwrap();
    }
    assert_eq!(
        resolve(&cluster, "job-worker-1.job.default.svc.cluster.local").await,
        (vec!["10.244.0.11".to_string()], true)
    );
    assert_eq!(
        resolve(&cluster, "JOB-WORKER-2.Job.Default.SVC.cluster.local.").await,
        (vec!["10.244.0.12".to_string()], true),
        "case-insensitive, trailing dot; a pod's own name resolves whether or not it is ready"
    );
    assert_eq!(
        resolve(&cluster, "job.default.svc.cluster.local").await,
        (
            vec!["10.244.0.10".to_string(), "10.244.0.11".to_string()],
            true
        ),
        "a headless service lists its ready pods"
    );
    let web = resolve(&cluster, "web.default.svc.cluster.local").await;
    assert_eq!(web, (vec!["10.96.0.20".to_string()], true));
    assert_eq!(
        resolve(&cluster, "nothing.default.svc.cluster.local").await,
        (Vec::new(), true)
    );
    assert_eq!(
        resolve(&cluster, "job-worker-9.job.default.svc.cluster.local").await,
        (Vec::new(), true)
    );
    assert_eq!(resolve(&cluster, "example.com").await, (Vec::new(), false));
}

#[tokio::test]
async fn http1_rest_and_grpc_share_the_port() {
    let cluster = start().await;
    let response = reqwest::get(format!("http://{}/api", cluster.addr))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["kind"], "APIVersions");
    // The same port answers gRPC (HTTP/2 prior knowledge).
    let node = register(&cluster, "n1", "10.0.0.1").await;
    assert_eq!(pod_cidr(&node), "10.244.0.0/24");
    let response = reqwest::get(format!("http://{}/api/v1/nodes/n1", cluster.addr))
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["spec"]["podCIDR"], "10.244.0.0/24");
}

#[tokio::test]
async fn shutdown_ends_the_streams_and_the_server_drains() {
    let mut cluster = start().await;
    register(&cluster, "n1", "10.0.0.1").await;
    let mut pods = cluster
        .grpc
        .clone()
        .watch_pods(pb::WatchPodsRequest {
            node_name: "n1".to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next_pod_event(&mut pods).await.0, PodEventType::Synced);
    let mut routes = cluster
        .grpc
        .clone()
        .watch_routes(pb::WatchRoutesRequest {
            node_name: "n1".to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next_route(&mut routes).await.0, RouteEventType::Synced);
    cluster.shutdown.cancel();
    let served = cluster.served.take().unwrap();
    tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("the server drains although agents' streams were open")
        .unwrap()
        .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(10), pods.message())
        .await
        .expect("the pod stream ends");
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
}
