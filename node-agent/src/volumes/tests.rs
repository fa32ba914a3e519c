//! Unit tests of the volume stage on a tempdir with a fake mounter.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use super::*;
use crate::mounts::FakeMounter;

fn pod(volumes: serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "ns1", "uid": "u1", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c"}], "volumes": volumes},
    }))
    .unwrap()
}

#[test]
fn file_volumes_are_written_from_pod_data() {
    let dir = tempfile::tempdir().unwrap();
    let mounter = Arc::new(FakeMounter::default());
    let mgr = VolumeManager::new(vec![], mounter.clone());
    let pod = pod(serde_json::json!([
        {"name": "s", "secret": {"secretName": "creds", "defaultMode": 0o400}},
        {"name": "c", "configMap": {"name": "cfg", "items": [{"key": "a", "path": "sub/a.txt"}]}},
        {"name": "d", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
        {"name": "m", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        {"name": "e", "emptyDir": {}},
    ]));
    let mut data = PodData::default();
    data.secrets.insert(
        "creds".into(),
        BTreeMap::from([("token".into(), b"t0p".to_vec())]),
    );
    data.config_maps.insert(
        "cfg".into(),
        BTreeMap::from([("a".into(), b"A".to_vec()), ("b".into(), b"B".to_vec())]),
    );
    let paths = mgr.setup(&pod, dir.path(), &data).unwrap();
    let vol = dir.path().join("volumes");
    assert_eq!(std::fs::read(vol.join("s/token")).unwrap(), b"t0p");
    let mode = std::fs::metadata(vol.join("s/token"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o400);
    assert_eq!(std::fs::read(vol.join("c/sub/a.txt")).unwrap(), b"A");
    assert!(!vol.join("c/b").exists());
    assert_eq!(
        std::fs::read_to_string(vol.join("d/labels")).unwrap(),
        "app=\"web\"\n"
    );
    assert_eq!(mounter.mounted()[0], (vol.join("m"), Some(1 << 20)));
    assert_eq!(paths["e"], vol.join("e"));
    mgr.teardown(dir.path()).unwrap();
    assert!(!vol.exists());
}

#[test]
fn host_path_needs_an_allowed_prefix_and_sources_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    let mgr = VolumeManager::new(vec!["/data".into()], Arc::new(FakeMounter::default()));
    let etc = pod(serde_json::json!([{"name": "h", "hostPath": {"path": "/etc"}}]));
    let err = mgr
        .setup(&etc, dir.path(), &PodData::default())
        .unwrap_err();
    assert!(
        matches!(err, VolumeError::HostPathNotAllowed { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("/etc is not allowed"));
    let ok = pod(serde_json::json!([{"name": "h", "hostPath": {"path": "/data/x"}}]));
    assert_eq!(
        mgr.setup(&ok, dir.path(), &PodData::default()).unwrap()["h"],
        PathBuf::from("/data/x")
    );
    let missing = pod(serde_json::json!([{"name": "s", "secret": {"secretName": "nope"}}]));
    let err = mgr
        .setup(&missing, dir.path(), &PodData::default())
        .unwrap_err();
    assert!(
        matches!(err, VolumeError::MissingSource { kind: "secret", .. }),
        "{err}"
    );
    let optional =
        pod(serde_json::json!([{"name": "s", "secret": {"secretName": "nope", "optional": true}}]));
    assert!(
        mgr.setup(&optional, dir.path(), &PodData::default())
            .is_ok()
    );
}

#[test]
fn claims_and_inline_csi_volumes_of_unknown_drivers_get_errors_naming_the_volume() {
    let dir = tempfile::tempdir().unwrap();
    let mgr = VolumeManager::new(vec![], Arc::new(FakeMounter::default()));
    let unbound = pod(serde_json::json!([
        {"name": "data", "persistentVolumeClaim": {"claimName": "late"}},
    ]));
    let e = mgr
        .setup(&unbound, dir.path(), &PodData::default())
        .unwrap_err();
    assert!(matches!(e, VolumeError::ClaimNotReady { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        r#"volume "data": persistentvolumeclaim "late" not found"#
    );
    // Bound to a CSI volume, but the agent has no CSI drivers.
    let mut data = PodData::default();
    data.claims.insert(
        "late".into(),
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "late"}, "spec": {"volumeName": "pv"}, "status": {"phase": "Bound"},
        }))
        .unwrap(),
    );
    data.persistent_volumes.insert(
        "pv".into(),
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "pv"}, "spec": {"csi": {"driver": "d.example", "volumeHandle": "h"}},
        }))
        .unwrap(),
    );
    let e = mgr
        .setup(&unbound, dir.path(), &data)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(r#"volume "data""#) && e.contains(r#""d.example" is not registered"#),
        "{e}"
    );
    let inline = pod(serde_json::json!([
        {"name": "scratch", "csi": {"driver": "d.example"}},
    ]));
    let e = mgr
        .setup(&inline, dir.path(), &PodData::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(r#"volume "scratch": CSI driver "d.example" is not registered"#),
        "{e}"
    );
}
