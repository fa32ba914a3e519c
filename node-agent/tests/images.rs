//! Imported OCI images on real runc and crun: a busybox image layout made by the test
//! (one gzip layer + config) is imported and a pod runs it with the image's
//! entrypoint, cmd and env.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{Harness, RUNTIMES, drive, phase, pod, remove, uid};
use coxswain_node_agent::images::LocalImageStore;
use coxswain_node_agent::logs::{Stream, read_lines};
use coxswain_node_agent::mounts::SystemMounter;
use sha2::{Digest, Sha256};

fn blob(layout: &Path, body: &[u8]) -> String {
    let hex = format!("{:x}", Sha256::digest(body));
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    std::fs::write(layout.join("blobs/sha256").join(&hex), body).unwrap();
    format!("sha256:{hex}")
}

/// An OCI image layout holding `rootfs` as one layer.
fn make_layout(rootfs: &Path, layout: &Path) {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    tar.follow_symlinks(false);
    tar.append_dir_all(".", rootfs).unwrap();
    let layer = blob(layout, &tar.into_inner().unwrap().finish().unwrap());
    let config = serde_json::json!({"config": {
        "Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo from-oci $GREETING"], "Env": ["GREETING=hi", "PATH=/bin"],
    }});
    let config = blob(layout, config.to_string().as_bytes());
    let manifest = serde_json::json!({"schemaVersion": 2, "config": {"digest": config, "size": 0},
        "layers": [{"digest": layer, "size": 0, "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"}]});
    let manifest = blob(layout, manifest.to_string().as_bytes());
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"digest": manifest, "size": 0,
        "annotations": {"org.opencontainers.image.ref.name": "bb-oci:1"}}]});
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
}

#[test]
fn imported_oci_image_runs_with_its_defaults() {
    for kind in RUNTIMES {
        let h = Harness::new(kind);
        let layout = h.dir.path().join("layout");
        make_layout(&h.dir.path().join("busybox-rootfs"), &layout);
        let store = LocalImageStore::new(h.deps.config.images_dir(), Arc::new(SystemMounter));
        let image = store.import_oci_layout("bb-oci:1", &layout).unwrap();
        assert_eq!(
            store.import_oci_layout("bb-oci:1", &layout).unwrap(),
            image,
            "re-import is a no-op"
        );
        let uid = uid();
        let spec = serde_json::json!({"restartPolicy": "Never", "containers": [{"name": "main", "image": "bb-oci:1"}]});
        let mut w = h.worker(pod(&uid, spec));
        let status = drive(&mut w, |s| phase(s) == "Succeeded" || phase(s) == "Failed");
        assert_eq!(phase(&status), "Succeeded", "{kind:?}: {status:#?}");
        let log =
            std::fs::read_to_string(h.deps.config.pod_dir(&uid).join("logs/main/0.log")).unwrap();
        assert_eq!(
            read_lines(&log),
            [(Stream::Stdout, "from-oci hi".to_string())],
            "{kind:?}"
        );
        remove(&mut w, &h.clock);
    }
}
