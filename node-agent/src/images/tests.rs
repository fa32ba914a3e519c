//! Unit tests of the image store: OCI layout and archive import (content-addressed,
//! layers unpacked once), missing images, and overlay mounts through a fake mounter.

use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::*;
use crate::mounts::FakeMounter;

fn blob(layout: &Path, body: &[u8]) -> String {
    let hex = format!("{:x}", Sha256::digest(body));
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(&hex), body).unwrap();
    format!("sha256:{hex}")
}

fn layer() -> Vec<u8> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut header = tar::Header::new_gnu();
    header.set_size(6);
    header.set_mode(0o755);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_cksum();
    tar.append_data(&mut header, "bin/hello", &b"hello\n"[..])
        .unwrap();
    let mut wh = tar::Header::new_gnu();
    wh.set_size(0);
    wh.set_mode(0o644);
    wh.set_uid(0);
    wh.set_gid(0);
    wh.set_mtime(0);
    wh.set_cksum();
    tar.append_data(&mut wh, "etc/.wh.gone", &b""[..]).unwrap();
    tar.into_inner().unwrap().finish().unwrap()
}

fn layout(dir: &Path) {
    let layer = blob(dir, &layer());
    let config = blob(
        dir,
        br#"{"config":{"Entrypoint":["/bin/hello"],"Cmd":["x"],"Env":["A=1"],"WorkingDir":"/w"}}"#,
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "config": {"digest": config, "size": 1},
        "layers": [{"digest": layer, "size": 1}],
    });
    let manifest = blob(dir, manifest.to_string().as_bytes());
    let index =
        serde_json::json!({"schemaVersion": 2, "manifests": [{"digest": manifest, "size": 1}]});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

#[test]
fn oci_layout_import_unpacks_each_layer_once() {
    let (store_dir, src) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    layout(src.path());
    let store = LocalImageStore::new(store_dir.path(), Arc::new(FakeMounter::default()));
    let a = store.import_oci_layout("app:1", src.path()).unwrap();
    let b = store.import_oci_layout("app:2", src.path()).unwrap();
    assert_eq!(a.layers, b.layers);
    assert_eq!(std::fs::read_dir(store.layers_dir()).unwrap().count(), 1);
    assert_eq!(
        std::fs::read(a.layers[0].join("bin/hello")).unwrap(),
        b"hello\n"
    );
    assert_eq!(a.config.entrypoint, ["/bin/hello"]);
    assert_eq!(a.config.working_dir, "/w");
    assert_eq!(store.resolve("app:2").unwrap(), b);
    if nix::unistd::Uid::effective().is_root() {
        use std::os::unix::fs::FileTypeExt;
        let whiteout = std::fs::symlink_metadata(a.layers[0].join("etc/gone")).unwrap();
        assert!(whiteout.file_type().is_char_device());
    }
}

#[test]
fn archives_import_and_missing_images_are_err_image_pull() {
    let (store_dir, src, tmp) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    layout(src.path());
    let archive = tmp.path().join("image.tar");
    let mut tar = tar::Builder::new(std::fs::File::create(&archive).unwrap());
    tar.append_dir_all(".", src.path()).unwrap();
    tar.finish().unwrap();
    let mounter = Arc::new(FakeMounter::default());
    let store = LocalImageStore::new(store_dir.path(), mounter.clone());
    let image = store.import_archive("packed", &archive).unwrap();
    assert_eq!(image.config.cmd, ["x"]);
    let err = store.resolve("nope:latest").unwrap_err();
    assert_eq!(err.reason(), "ErrImagePull");
    assert!(err.to_string().contains("nope:latest"));
    let ctr = tmp.path().join("ctr");
    let rootfs = store.mount_rootfs(&image, &ctr).unwrap();
    assert_eq!(store.mount_rootfs(&image, &ctr).unwrap(), rootfs);
    assert_eq!(mounter.mounted().len(), 1);
    store.unmount_rootfs(&ctr).unwrap();
    assert!(mounter.mounted().is_empty());
    let host = store.resolve(HOST_IMAGE).unwrap();
    assert_eq!(host.layers, [std::path::PathBuf::from("/")]);
}

#[test]
fn what_a_killed_import_left_is_swept_and_a_running_ones_kept() {
    let (store_dir, src) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    layout(src.path());
    let store = LocalImageStore::new(store_dir.path(), Arc::new(FakeMounter::default()));
    store.import_oci_layout("app:1", src.path()).unwrap();
    // pid_max is at most 2^22: pid 999999999 never runs.
    let dead = [
        store_dir.path().join("refs/.tmp-999999999-app+2.json"),
        store_dir.path().join("tmp/blob-999999999-x1"),
        store_dir.path().join("layers/.unpack-999999999-x2/bin"),
        store_dir.path().join("tmp/import-999999999-x3/blobs"),
    ];
    let live = store_dir
        .path()
        .join(format!("tmp/import-{}-x4", std::process::id()));
    for path in dead.iter().chain([&live]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"partial").unwrap();
    }
    assert_eq!(store.sweep_temporaries(), 4);
    for path in &dead {
        let top = if path.ends_with("bin") || path.ends_with("blobs") {
            path.parent().unwrap()
        } else {
            path.as_path()
        };
        assert!(!top.exists(), "{} left", top.display());
    }
    assert!(live.exists(), "a running import's temporary stays");
    assert_eq!(store.list().unwrap().len(), 1, "the recorded image stays");
    assert_eq!(std::fs::read_dir(store.layers_dir()).unwrap().count(), 1);
}
