//! Unit tests of the driver's logic against the fake mounter: idempotency,
//! the spec's error codes, and state that survives a restart.

use std::collections::HashMap;
use std::sync::Arc;

use coxswain_proto::csi::v1::{CapacityRange, CreateVolumeRequest};
use tonic::Code;

use super::{Driver, DriverConfig};
use crate::conformance::suite::writer;
use crate::mounter::{FakeMounter, Mounter};

fn driver(dir: &std::path::Path, mounter: &Arc<FakeMounter>) -> Arc<Driver> {
    let mut config = DriverConfig::new("node-a", dir);
    config.capacity_bytes = Some(64 << 20);
    Driver::open(config, mounter.clone() as Arc<dyn Mounter>).unwrap()
}

fn create(name: &str, mib: i64) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: mib << 20,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![writer()],
        parameters: HashMap::new(),
        ..Default::default()
    }
}

#[test]
fn create_is_idempotent_and_checks_compatibility_and_capacity() {
    let tmp = tempfile::tempdir().unwrap();
    let d = driver(tmp.path(), &Arc::default());
    let a = d.create_volume(create("a", 16)).unwrap();
    assert_eq!(d.create_volume(create("a", 16)).unwrap(), a);
    assert_eq!(
        d.create_volume(create("a", 8)).unwrap(),
        a,
        "16 MiB satisfies 8 MiB"
    );
    assert_eq!(
        d.create_volume(create("a", 32)).unwrap_err().code(),
        Code::AlreadyExists
    );
    assert_eq!(
        d.create_volume(create("b", 64)).unwrap_err().code(),
        Code::ResourceExhausted
    );
    let image = tmp.path().join(format!("images/{}.img", a.volume_id));
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 16 << 20);
    d.delete_volume(&a.volume_id).unwrap();
    d.delete_volume(&a.volume_id).unwrap();
    assert!(!image.exists());
}

#[test]
fn publish_needs_stage_and_delete_needs_unstage() {
    let tmp = tempfile::tempdir().unwrap();
    let d = driver(tmp.path(), &Arc::default());
    let id = d.create_volume(create("a", 16)).unwrap().volume_id;
    let (stage, target) = (tmp.path().join("stage"), tmp.path().join("pod"));
    let (stage, target) = (stage.to_str().unwrap(), target.to_str().unwrap());
    assert_eq!(
        d.publish(&id, stage, target, false).unwrap_err().code(),
        Code::FailedPrecondition
    );
    d.stage(&id, stage).unwrap();
    assert_eq!(
        d.delete_volume(&id).unwrap_err().code(),
        Code::FailedPrecondition
    );
    d.publish(&id, stage, target, false).unwrap();
    assert_eq!(
        d.publish(&id, stage, target, true).unwrap_err().code(),
        Code::AlreadyExists
    );
    assert_eq!(
        d.unstage(&id, stage).unwrap_err().code(),
        Code::FailedPrecondition
    );
    assert_eq!(
        d.stats(&id, "/elsewhere").unwrap_err().code(),
        Code::NotFound
    );
    assert!(d.stats(&id, target).unwrap().total_bytes >= 16 << 20);
    assert_eq!(d.stage("nope", stage).unwrap_err().code(), Code::NotFound);
    assert_eq!(
        d.stage("", stage).unwrap_err().code(),
        Code::InvalidArgument
    );
}

#[test]
fn a_restarted_driver_knows_its_stages_and_publishes() {
    let tmp = tempfile::tempdir().unwrap();
    let mounter: Arc<FakeMounter> = Arc::default();
    let id = {
        let d = driver(tmp.path(), &mounter);
        let id = d.create_volume(create("a", 16)).unwrap().volume_id;
        d.stage(&id, "/stage").unwrap();
        d.publish(&id, "/stage", "/pod/a", true).unwrap();
        d.unpublish(&id, "/pod/a").unwrap();
        id
    };
    assert_eq!(mounter.mounts().len(), 1);
    assert_eq!(mounter.loops().len(), 1);
    let d = driver(tmp.path(), &mounter);
    d.unstage(&id, "/stage").unwrap();
    assert!(mounter.mounts().is_empty());
    assert!(mounter.loops().is_empty());
    d.delete_volume(&id).unwrap();
}

#[test]
fn restart_detaches_loop_devices_of_unstaged_volumes() {
    let tmp = tempfile::tempdir().unwrap();
    let mounter: Arc<FakeMounter> = Arc::default();
    let id = driver(tmp.path(), &mounter)
        .create_volume(create("a", 16))
        .unwrap()
        .volume_id;
    // A driver killed between losetup and recording the stage leaks a loop device.
    mounter
        .loop_attach(&tmp.path().join(format!("images/{id}.img")))
        .unwrap();
    driver(tmp.path(), &mounter);
    assert!(mounter.loops().is_empty());
}

#[test]
fn expansion_grows_offline_when_unstaged_and_online_when_staged() {
    let tmp = tempfile::tempdir().unwrap();
    let d = driver(tmp.path(), &Arc::default());
    let id = d.create_volume(create("a", 16)).unwrap().volume_id;
    let range = CapacityRange {
        required_bytes: 32 << 20,
        limit_bytes: 0,
    };
    // Not staged: the filesystem grows offline at once.
    assert_eq!(
        d.controller_expand(&id, Some(&range)).unwrap(),
        (32 << 20, false)
    );
    assert!(!d.lock()[&id].needs_resize);
    d.stage(&id, "/stage").unwrap();
    // Staged: the node grows it online.
    let range = CapacityRange {
        required_bytes: 48 << 20,
        limit_bytes: 0,
    };
    assert_eq!(
        d.controller_expand(&id, Some(&range)).unwrap(),
        (48 << 20, true)
    );
    assert!(d.lock()[&id].needs_resize);
    assert_eq!(d.node_expand(&id, "/stage", 0).unwrap(), 48 << 20);
    assert!(!d.lock()[&id].needs_resize);
    let huge = CapacityRange {
        required_bytes: 1 << 30,
        limit_bytes: 0,
    };
    assert_eq!(
        d.controller_expand(&id, Some(&huge)).unwrap_err().code(),
        Code::ResourceExhausted
    );
    assert_eq!(
        d.controller_expand("nope", Some(&range))
            .unwrap_err()
            .code(),
        Code::NotFound
    );
}

#[test]
fn list_volumes_pages_with_tokens() {
    use coxswain_proto::csi::v1::ListVolumesRequest;
    let tmp = tempfile::tempdir().unwrap();
    let d = driver(tmp.path(), &Arc::default());
    for name in ["a", "b", "c"] {
        d.create_volume(create(name, 1)).unwrap();
    }
    let page = |max_entries, starting_token: &str| {
        d.list(ListVolumesRequest {
            max_entries,
            starting_token: starting_token.into(),
        })
    };
    let first = page(2, "").unwrap();
    assert_eq!((first.entries.len(), first.next_token.as_str()), (2, "2"));
    let rest = page(2, &first.next_token).unwrap();
    assert_eq!((rest.entries.len(), rest.next_token.as_str()), (1, ""));
    assert_eq!(page(0, "").unwrap().entries.len(), 3);
    assert_eq!(page(0, "x").unwrap_err().code(), Code::Aborted);
    assert_eq!(page(-1, "").unwrap_err().code(), Code::InvalidArgument);
}
