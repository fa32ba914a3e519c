//! The provisioner loop (`agent::volume_provisioner`) against a fake node service
//! on a loopback port (WatchVolumes serves a fixed list of work; the reports are
//! recorded) and the real `cox-csi` driver code: a good claim is provisioned and
//! reported once, a claim the driver refuses is reported and retried, a released
//! volume is deleted and reported.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coxswain_proto::csi::v1::ListVolumesRequest;
use coxswain_proto::node::v1alpha1 as pb;
use coxswain_proto::node::v1alpha1::node_service_server::{NodeService, NodeServiceServer};
use futures::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::tests::{DRIVER, claim, class, provision_volume, reached};

type Events<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[derive(Default)]
struct FakeNodeService {
    work: Vec<pb::VolumeEvent>,
    provisioned: Arc<Mutex<Vec<pb::ReportProvisioningRequest>>>,
    deleted: Arc<Mutex<Vec<pb::ReportVolumeDeletedRequest>>>,
}

fn unimplemented<T>() -> Result<T, Status> {
    Err(Status::unimplemented("not in this fake"))
}

#[tonic::async_trait]
impl NodeService for FakeNodeService {
    async fn register(
        &self,
        _: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        unimplemented()
    }
    async fn renew_lease(
        &self,
        _: Request<pb::RenewLeaseRequest>,
    ) -> Result<Response<pb::RenewLeaseResponse>, Status> {
        unimplemented()
    }
    type WatchPodsStream = Events<pb::PodEvent>;
    async fn watch_pods(
        &self,
        _: Request<pb::WatchPodsRequest>,
    ) -> Result<Response<Self::WatchPodsStream>, Status> {
        unimplemented()
    }
    async fn update_pod_status(
        &self,
        _: Request<pb::UpdatePodStatusRequest>,
    ) -> Result<Response<pb::UpdatePodStatusResponse>, Status> {
        unimplemented()
    }
    async fn pod_terminated(
        &self,
        _: Request<pb::PodTerminatedRequest>,
    ) -> Result<Response<pb::PodTerminatedResponse>, Status> {
        unimplemented()
    }
    async fn report_devices(
        &self,
        _: Request<pb::ReportDevicesRequest>,
    ) -> Result<Response<pb::ReportDevicesResponse>, Status> {
        unimplemented()
    }
    type WatchRoutesStream = Events<pb::RouteEvent>;
    async fn watch_routes(
        &self,
        _: Request<pb::WatchRoutesRequest>,
    ) -> Result<Response<Self::WatchRoutesStream>, Status> {
        unimplemented()
    }
    async fn resolve(
        &self,
        _: Request<pb::ResolveRequest>,
    ) -> Result<Response<pb::ResolveResponse>, Status> {
        unimplemented()
    }
    async fn record_event(
        &self,
        _: Request<pb::RecordEventRequest>,
    ) -> Result<Response<pb::RecordEventResponse>, Status> {
        unimplemented()
    }
    type WatchVolumesStream = Events<pb::VolumeEvent>;
    async fn watch_volumes(
        &self,
        request: Request<pb::WatchVolumesRequest>,
    ) -> Result<Response<Self::WatchVolumesStream>, Status> {
        assert_eq!(request.into_inner().node_name, "node-a");
        let work = self.work.clone().into_iter().map(Ok);
        // The work, then the stream stays open (as the control plane's does).
        let stream = futures::stream::iter(work).chain(futures::stream::pending());
        Ok(Response::new(Box::pin(stream)))
    }
    async fn report_provisioning(
        &self,
        request: Request<pb::ReportProvisioningRequest>,
    ) -> Result<Response<pb::ReportProvisioningResponse>, Status> {
        self.provisioned.lock().unwrap().push(request.into_inner());
        Ok(Response::new(pb::ReportProvisioningResponse {}))
    }
    async fn report_volume_deleted(
        &self,
        request: Request<pb::ReportVolumeDeletedRequest>,
    ) -> Result<Response<pb::ReportVolumeDeletedResponse>, Status> {
        self.deleted.lock().unwrap().push(request.into_inner());
        Ok(Response::new(pb::ReportVolumeDeletedResponse {}))
    }
    async fn service_account_token(
        &self,
        _: Request<pb::ServiceAccountTokenRequest>,
    ) -> Result<Response<pb::ServiceAccountTokenResponse>, Status> {
        unimplemented()
    }
}

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}

use futures::StreamExt;

#[test]
fn the_provisioner_creates_reports_retries_failures_and_deletes() {
    let (rt, _driver, drivers) = reached();
    let released = provision_volume(&rt, &drivers, "old");
    let pv: k8s_openapi::api::core::v1::PersistentVolume =
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "pvc-old", "uid": "pv-old"},
            "spec": {"csi": {"driver": DRIVER, "volumeHandle": released}},
        }))
        .unwrap();
    let provision = |uid: &str, modes: &[&str]| pb::VolumeEvent {
        r#type: pb::volume_event::Type::Provision as i32,
        claim: json(&claim("data", uid, "16Mi", modes)),
        storage_class: json(&class(serde_json::json!({}))),
        persistent_volume: Vec::new(),
    };
    let service = FakeNodeService {
        work: vec![
            provision("good", &["ReadWriteOnce"]),
            provision("bad", &["ReadWriteMany"]),
            pb::VolumeEvent {
                r#type: pb::volume_event::Type::Delete as i32,
                persistent_volume: json(&pv),
                ..Default::default()
            },
            pb::VolumeEvent {
                r#type: pb::volume_event::Type::Synced as i32,
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let (provisioned, deleted) = (service.provisioned.clone(), service.deleted.clone());
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let url = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(NodeServiceServer::new(service))
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    stop.cancelled_owned(),
                ),
        );
        url
    });
    let channel = {
        let _guard = rt.enter();
        tonic::transport::Endpoint::from_shared(url)
            .unwrap()
            .connect_lazy()
    };
    let (_tx, rx) = tokio::sync::watch::channel(Some(channel));
    rt.spawn(crate::agent::volume_provisioner::run(
        "node-a".into(),
        drivers.clone(),
        rx,
        shutdown.clone(),
    ));

    let limit = Instant::now() + Duration::from_secs(60);
    loop {
        let reports = provisioned.lock().unwrap().clone();
        let bad = reports.iter().filter(|r| r.claim_uid == "bad").count();
        let good = reports.iter().any(|r| r.claim_uid == "good");
        if good && bad >= 2 && !deleted.lock().unwrap().is_empty() {
            break;
        }
        assert!(Instant::now() < limit, "reports so far: {reports:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let reports = provisioned.lock().unwrap().clone();
    let good: Vec<_> = reports.iter().filter(|r| r.claim_uid == "good").collect();
    assert_eq!(good.len(), 1, "a success is reported once: {good:#?}");
    assert_eq!(good[0].error, "");
    assert_eq!(good[0].capacity_bytes, 16 << 20);
    for bad in reports.iter().filter(|r| r.claim_uid == "bad") {
        assert!(bad.error.starts_with("InvalidArgument: "), "{bad:?}");
        assert_eq!(bad.volume_id, "");
    }
    let deleted = deleted.lock().unwrap().clone();
    assert_eq!(deleted.len(), 1);
    assert_eq!(
        (deleted[0].uid.as_str(), deleted[0].error.as_str()),
        ("pv-old", "")
    );
    let listed = rt.block_on(async {
        let mut controller = drivers.get(DRIVER).unwrap().client.controller;
        controller
            .list_volumes(ListVolumesRequest::default())
            .await
            .unwrap()
            .into_inner()
    });
    let ids: Vec<String> = listed
        .entries
        .into_iter()
        .filter_map(|e| e.volume.map(|v| v.volume_id))
        .collect();
    assert_eq!(ids, [good[0].volume_id.clone()]);
    shutdown.cancel();
}
