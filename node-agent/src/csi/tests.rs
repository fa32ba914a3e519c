//! The agent's CSI side against the real `cox-csi` driver code served over a Unix
//! socket (with the driver's fake mounter, so no root): drivers reached once their
//! socket is up, stage once / publish per pod / unstage after the last pod, the
//! journal and recovery after a "killed" agent, claims to sources, provisioning.

use std::collections::{BTreeMap, BTreeSet};

use std::sync::Arc;
use std::time::Duration;

use coxswain_csi::mounter::FakeMounter;
use coxswain_csi::{Driver, DriverConfig, server};
use coxswain_proto::csi::v1::ListVolumesRequest;
use coxswain_proto::csi::v1::volume_capability::access_mode::Mode;
use k8s_openapi::api::core::v1::{PersistentVolumeClaimVolumeSource, Volume};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

use super::journal::{Publication, StagedVolume};
use super::*;
use crate::volumes::{PodData, VolumeError};

pub(super) const DRIVER: &str = "csi.coxswain.dev";

/// A cox-csi driver on a socket in a tempdir, served on `rt`.
pub(super) struct TestDriver {
    dir: tempfile::TempDir,
    mounter: Arc<FakeMounter>,
    stop: CancellationToken,
}

impl TestDriver {
    fn socket(&self) -> std::path::PathBuf {
        self.dir.path().join("csi.sock")
    }

    fn config(&self) -> CsiDriverConfig {
        format!("{DRIVER}=unix://{}", self.socket().display())
            .parse()
            .unwrap()
    }

    fn serve(&self, rt: &Runtime) {
        let mut config = DriverConfig::new("node-a", self.dir.path().join("state"));
        config.capacity_bytes = Some(1 << 30);
        let driver = Driver::open(config, self.mounter.clone()).unwrap();
        let socket = self.socket();
        let stop = self.stop.clone();
        rt.spawn(async move { server::serve(driver, &socket, stop.cancelled_owned()).await });
    }
}

fn test_driver() -> TestDriver {
    TestDriver {
        dir: tempfile::tempdir().unwrap(),
        mounter: Arc::default(),
        stop: CancellationToken::new(),
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A driver served and reached: (runtime, driver, registry).
pub(super) fn reached() -> (Runtime, TestDriver, CsiDrivers) {
    let rt = runtime();
    let driver = test_driver();
    driver.serve(&rt);
    let drivers = CsiDrivers::default();
    let info = rt
        .block_on(async {
            coxswain_csi::CsiClient::wait_ready(
                &format!("unix://{}", driver.socket().display()),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
            DriverInfo::connect(&driver.config()).await
        })
        .unwrap();
    drivers.insert(info);
    (rt, driver, drivers)
}

pub(super) fn claim(name: &str, uid: &str, size: &str, modes: &[&str]) -> PersistentVolumeClaim {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "default", "uid": uid},
        "spec": {"accessModes": modes, "resources": {"requests": {"storage": size}}},
    }))
    .unwrap()
}

pub(super) fn class(parameters: serde_json::Value) -> StorageClass {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "local"}, "provisioner": DRIVER, "parameters": parameters,
    }))
    .unwrap()
}

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::StorageClass;

/// Provisions a 16 MiB volume for claim uid `uid`; returns its ID.
pub(super) fn provision_volume(rt: &Runtime, drivers: &CsiDrivers, uid: &str) -> String {
    let report = rt.block_on(provision::provision(
        "node-a",
        &claim("data", uid, "16Mi", &["ReadWriteOnce"]),
        &class(serde_json::json!({})),
        drivers,
    ));
    assert_eq!(report.error, "", "{report:?}");
    report.volume_id
}

fn source(volume_id: &str, readonly: bool) -> CsiSource {
    CsiSource {
        ephemeral: false,
        driver: DRIVER.into(),
        volume_id: volume_id.into(),
        volume_context: BTreeMap::new(),
        fs_type: String::new(),
        mount_flags: Vec::new(),
        access_mode: Mode::SingleNodeWriter,
        readonly,
    }
}

fn mounted(mounter: &FakeMounter) -> BTreeSet<std::path::PathBuf> {
    mounter.mounts().into_keys().collect()
}

#[test]
fn driver_flags_are_name_equals_unix_endpoint() {
    let ok: CsiDriverConfig = "csi.coxswain.dev=unix:///run/csi.sock".parse().unwrap();
    assert_eq!(ok.name, "csi.coxswain.dev");
    assert_eq!(ok.endpoint, "unix:///run/csi.sock");
    for bad in [
        "csi.coxswain.dev",
        "=unix:///x",
        "d=/run/csi.sock",
        "d=unix://",
    ] {
        let e = bad.parse::<CsiDriverConfig>().unwrap_err().to_string();
        assert!(e.contains("NAME=unix://"), "{bad}: {e}");
    }
}

#[test]
fn a_driver_is_reached_once_its_socket_comes_up() {
    let rt = runtime();
    let driver = test_driver();
    let drivers = CsiDrivers::default();
    let stop = CancellationToken::new();
    let _guard = rt.enter();
    drivers.start(&[driver.config()], &stop);
    // Nothing listens yet: the agent keeps retrying.
    assert!(!rt.block_on(drivers.wait_for(1, Duration::from_millis(300))));
    assert!(
        drivers
            .get(DRIVER)
            .unwrap_err()
            .to_string()
            .contains("not registered")
    );
    driver.serve(&rt);
    assert!(rt.block_on(drivers.wait_for(1, Duration::from_secs(30))));
    let info = drivers.get(DRIVER).unwrap();
    assert_eq!(info.node_id, "node-a");
    assert!(info.stage_unstage);
    assert_eq!(info.topology[coxswain_csi::TOPOLOGY_KEY], "node-a");
    let ids = drivers.node_ids().borrow().clone();
    assert_eq!(
        drivers::node_id_annotation(&ids),
        r#"{"csi.coxswain.dev":"node-a"}"#
    );
    stop.cancel();
}

#[test]
fn stage_once_publish_per_pod_unstage_after_the_last_pod() {
    let (rt, driver, drivers) = reached();
    let id = provision_volume(&rt, &drivers, "c1");
    let root = tempfile::tempdir().unwrap();
    let csi = CsiVolumes::open(root.path(), drivers.clone(), rt.handle().clone()).unwrap();
    let staging = csi.staging_path(DRIVER, &id);
    let target = |pod: &str| root.path().join("pods").join(pod).join("volumes/data");
    csi.publish("pod-a", "data", &source(&id, false), &target("pod-a"))
        .unwrap();
    csi.publish("pod-b", "data", &source(&id, true), &target("pod-b"))
        .unwrap();
    // Again (a restarted worker): idempotent.
    csi.publish("pod-a", "data", &source(&id, false), &target("pod-a"))
        .unwrap();
    assert_eq!(
        mounted(&driver.mounter),
        BTreeSet::from([staging.clone(), target("pod-a"), target("pod-b")])
    );
    let journal = MountJournal::load(&root.path().join("csi/journal.json")).unwrap();
    assert_eq!(journal.staged.len(), 1);
    assert_eq!(journal.published.len(), 2);
    csi.unpublish_pod("pod-a").unwrap();
    assert_eq!(
        mounted(&driver.mounter),
        BTreeSet::from([staging.clone(), target("pod-b")]),
        "still used by pod-b: stays staged"
    );
    csi.unpublish_pod("pod-b").unwrap();
    assert!(mounted(&driver.mounter).is_empty());
    assert_eq!(csi.journal(), MountJournal::default());
    assert!(driver.mounter.loops().is_empty());
    // A pod without CSI volumes has nothing to unpublish.
    csi.unpublish_pod("pod-c").unwrap();
}

#[test]
fn a_restarted_agent_unpublishes_gone_pods_and_unstages_what_nobody_uses() {
    let (rt, driver, drivers) = reached();
    let shared = provision_volume(&rt, &drivers, "c1");
    let orphan = provision_volume(&rt, &drivers, "c2");
    let root = tempfile::tempdir().unwrap();
    let target = |pod: &str| root.path().join("pods").join(pod).join("volumes/data");
    {
        let csi = CsiVolumes::open(root.path(), drivers.clone(), rt.handle().clone()).unwrap();
        csi.publish("gone", "data", &source(&shared, false), &target("gone"))
            .unwrap();
        csi.publish("kept", "data", &source(&shared, false), &target("kept"))
            .unwrap();
        csi.publish("killed", "data", &source(&orphan, false), &target("killed"))
            .unwrap();
    }
    // The agent died between unpublishing "killed" and unstaging its volume: the
    // driver unmounted the target, the journal forgot the publication.
    let path = root.path().join("csi/journal.json");
    let mut journal = MountJournal::load(&path).unwrap();
    let publication: Publication = journal.published.remove("killed/data").unwrap();
    rt.block_on(async {
        let mut node = drivers.get(DRIVER).unwrap().client.node;
        node.node_unpublish_volume(coxswain_proto::csi::v1::NodeUnpublishVolumeRequest {
            volume_id: publication.volume_id.clone(),
            target_path: publication.target.display().to_string(),
        })
        .await
        .unwrap();
    });
    journal.save(&path).unwrap();
    let staged: Vec<StagedVolume> = journal.staged.values().cloned().collect();
    assert_eq!(staged.len(), 2);

    let csi = CsiVolumes::open(root.path(), drivers.clone(), rt.handle().clone()).unwrap();
    let cleaned = csi.recover(&BTreeSet::from(["kept".to_string()])).unwrap();
    assert_eq!(cleaned, BTreeSet::from(["gone".to_string()]));
    assert_eq!(
        mounted(&driver.mounter),
        BTreeSet::from([csi.staging_path(DRIVER, &shared), target("kept")])
    );
    let journal = csi.journal();
    assert_eq!(journal.published.keys().collect::<Vec<_>>(), ["kept/data"]);
    assert_eq!(journal.staged.len(), 1);
    // A pod started after the restart is never taken for a leftover.
    csi.publish("new", "data", &source(&orphan, false), &target("new"))
        .unwrap();
    csi.recover(&BTreeSet::new()).unwrap();
    assert!(mounted(&driver.mounter).contains(&target("new")));
    assert!(!mounted(&driver.mounter).contains(&target("kept")));
}

#[test]
fn a_journal_entry_the_driver_never_got_is_cleaned_without_error() {
    let (rt, _driver, drivers) = reached();
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("csi/journal.json");
    let mut journal = MountJournal::default();
    // Recorded, then killed before NodeStageVolume/NodePublishVolume were sent.
    journal.staged.insert(
        journal::volume_key(DRIVER, "cox-unknown"),
        StagedVolume {
            driver: DRIVER.into(),
            volume_id: "cox-unknown".into(),
            staging_path: root.path().join("staging"),
        },
    );
    journal.save(&path).unwrap();
    let csi = CsiVolumes::open(root.path(), drivers, rt.handle().clone()).unwrap();
    csi.recover(&BTreeSet::new()).unwrap();
    assert_eq!(csi.journal(), MountJournal::default());
}

fn pod_volume(claim: &str, read_only: bool) -> (Volume, PersistentVolumeClaimVolumeSource) {
    let source = PersistentVolumeClaimVolumeSource {
        claim_name: claim.into(),
        read_only: Some(read_only),
    };
    let volume = Volume {
        name: "data".into(),
        persistent_volume_claim: Some(source.clone()),
        ..Default::default()
    };
    (volume, source)
}

#[test]
fn a_claim_becomes_a_source_once_bound_to_a_csi_volume() {
    let (volume, claim_ref) = pod_volume("data", false);
    let mut data = PodData::default();
    let not_ready = |data: &PodData| match source::claim_source(&volume, &claim_ref, data) {
        Err(e @ VolumeError::ClaimNotReady { .. }) => e.to_string(),
        other => panic!("expected ClaimNotReady, got {other:?}"),
    };
    assert!(not_ready(&data).contains(r#"persistentvolumeclaim "data" not found"#));
    let mut pending = claim("data", "c1", "1Gi", &["ReadWriteOnce"]);
    data.claims.insert("data".into(), pending.clone());
    assert!(not_ready(&data).contains("is not bound"));
    pending.spec.as_mut().unwrap().volume_name = Some("pv-1".into());
    pending.status = Some(serde_json::from_value(serde_json::json!({"phase": "Bound"})).unwrap());
    data.claims.insert("data".into(), pending);
    assert!(not_ready(&data).contains(r#"volume "pv-1", which is not there"#));
    let pv = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "pv-1"},
        "spec": {"accessModes": ["ReadOnlyMany"], "csi": {"driver": DRIVER, "volumeHandle": "cox-1",
                 "fsType": "ext4", "volumeAttributes": {"a": "b"}}},
    }))
    .unwrap();
    data.persistent_volumes.insert("pv-1".into(), pv);
    let source = source::claim_source(&volume, &claim_ref, &data).unwrap();
    assert_eq!(source.volume_id, "cox-1");
    assert_eq!(source.access_mode, Mode::MultiNodeReaderOnly);
    assert!(source.readonly, "ReadOnlyMany is published read-only");
    assert_eq!(source.volume_context["a"], "b");
    let no_csi = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "pv-1"}, "spec": {"hostPath": {"path": "/x"}},
    }))
    .unwrap();
    data.persistent_volumes.insert("pv-1".into(), no_csi);
    let e = source::claim_source(&volume, &claim_ref, &data)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no csi source"), "{e}");
}

#[test]
fn provisioning_creates_on_this_node_and_reports_the_drivers_errors() {
    let (rt, _driver, drivers) = reached();
    let good = claim("data", "c1", "16Mi", &["ReadWriteOnce"]);
    let report = rt.block_on(provision::provision(
        "node-a",
        &good,
        &class(serde_json::json!({"backing": "image", "csi.storage.k8s.io/fstype": "ext4"})),
        &drivers,
    ));
    assert_eq!(report.error, "");
    assert_eq!(
        (
            report.claim_name.as_str(),
            report.claim_uid.as_str(),
            report.driver.as_str()
        ),
        ("data", "c1", DRIVER)
    );
    assert!(report.volume_id.starts_with("cox-"), "{report:?}");
    assert_eq!(report.capacity_bytes, 16 << 20);
    let created = report.volume_id.clone();
    let request = provision::create_request(
        &good,
        &class(serde_json::json!({})),
        &drivers.get(DRIVER).unwrap().topology,
    )
    .unwrap();
    assert_eq!(request.name, "pvc-c1");
    let requisite = &request.accessibility_requirements.unwrap().requisite[0];
    assert_eq!(requisite.segments[coxswain_csi::TOPOLOGY_KEY], "node-a");

    let report = |c: &PersistentVolumeClaim, params: serde_json::Value| {
        rt.block_on(provision::provision("node-a", c, &class(params), &drivers))
            .error
    };
    let rwx = report(
        &claim("x", "c2", "16Mi", &["ReadWriteMany"]),
        serde_json::json!({}),
    );
    assert!(
        rwx.starts_with("InvalidArgument: ") && rwx.contains("MULTI_NODE_MULTI_WRITER"),
        "{rwx}"
    );
    let zero = report(
        &claim("x", "c3", "0", &["ReadWriteOnce"]),
        serde_json::json!({}),
    );
    assert!(
        zero.contains("spec.resources.requests.storage must be greater than zero"),
        "{zero}"
    );
    let param = report(
        &claim("x", "c4", "16Mi", &["ReadWriteOnce"]),
        serde_json::json!({"colour": "red"}),
    );
    assert!(
        param.starts_with("InvalidArgument: ") && param.contains("colour"),
        "{param}"
    );
    let mut other = class(serde_json::json!({}));
    other.provisioner = "other.example.com".into();
    let unknown = rt
        .block_on(provision::provision("node-a", &good, &other, &drivers))
        .error;
    assert!(
        unknown.contains("\"other.example.com\" is not registered"),
        "{unknown}"
    );

    // DELETE of the released volume.
    let pv = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "pvc-c1", "uid": "pv-uid"},
        "spec": {"csi": {"driver": DRIVER, "volumeHandle": created}},
    }))
    .unwrap();
    let deleted = rt.block_on(provision::delete("node-a", &pv, &drivers));
    assert_eq!(
        (deleted.error.as_str(), deleted.uid.as_str()),
        ("", "pv-uid")
    );
    let listed = rt.block_on(async {
        let mut controller = drivers.get(DRIVER).unwrap().client.controller;
        controller
            .list_volumes(ListVolumesRequest::default())
            .await
            .unwrap()
            .into_inner()
    });
    assert!(listed.entries.is_empty(), "{listed:?}");
}
