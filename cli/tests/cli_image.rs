//! `cox image import|ls` against a real `cox agent`: OCI image layouts made here from
//! busybox-static (a busybox base layer and a small top layer) are imported as a
//! directory and as a .tar, each layer is unpacked once however often and under however
//! many names it is imported, and a pod on the agent runs the imported image with its
//! entrypoint, cmd and env to Succeeded.

mod cluster;

use std::path::{Path, PathBuf};

use cluster::Cluster;
use coxswain_node_agent::images::busybox;
use sha2::{Digest, Sha256};

/// Writes `body` as a blob of `layout`; returns its digest.
fn blob(layout: &Path, body: &[u8]) -> String {
    let hex = format!("{:x}", Sha256::digest(body));
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    std::fs::write(layout.join("blobs/sha256").join(&hex), body).unwrap();
    format!("sha256:{hex}")
}

/// A gzip layer holding the tree at `dir`.
fn layer_of_dir(dir: &Path) -> Vec<u8> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    tar.follow_symlinks(false);
    tar.append_dir_all(".", dir).unwrap();
    tar.into_inner().unwrap().finish().unwrap()
}

/// An uncompressed layer with one file.
fn layer_with_file(path: &str, body: &str) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(body.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_cksum();
    tar.append_data(&mut header, path, body.as_bytes()).unwrap();
    tar.into_inner().unwrap()
}

/// An OCI image layout at `layout` named `name`: `base` (a busybox layer) under a layer
/// holding /etc/motd = `motd`. Returns the manifest's digest.
fn make_layout(layout: &Path, name: &str, base: &[u8], motd: &str) -> String {
    let base = blob(layout, base);
    let top = blob(layout, &layer_with_file("etc/motd", motd));
    let config = serde_json::json!({"config": {
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["cat /etc/motd; echo greeting=$GREETING"],
        "Env": ["GREETING=hi", "PATH=/bin"],
    }});
    let config = blob(layout, config.to_string().as_bytes());
    let manifest = serde_json::json!({"schemaVersion": 2,
    "config": {"digest": config, "size": 0, "mediaType": "application/vnd.oci.image.config.v1+json"},
    "layers": [
        {"digest": base, "size": 0, "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"},
        {"digest": top, "size": 0, "mediaType": "application/vnd.oci.image.layer.v1.tar"},
    ]});
    let manifest = blob(layout, manifest.to_string().as_bytes());
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"digest": manifest,
        "size": 0, "annotations": {"org.opencontainers.image.ref.name": name}}]});
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    manifest
}

/// `layout` packed as a tar archive (an `oci-archive`).
fn archive(layout: &Path, to: &Path) {
    let mut tar = tar::Builder::new(std::fs::File::create(to).unwrap());
    tar.append_dir_all(".", layout).unwrap();
    tar.finish().unwrap();
}

/// The unpacked layers in the store: name and inode.
fn layers(root: &Path) -> Vec<(String, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut found: Vec<(String, u64)> = std::fs::read_dir(root.join("images/layers"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().ino(),
            )
        })
        .collect();
    found.sort();
    found
}

#[test]
fn imported_images_run_and_share_their_layers() {
    let cluster = Cluster::start();
    let work = cluster.dir.path().join("work");
    let rootfs = busybox::build_rootfs(Path::new(busybox::BUSYBOX), &work.join("rootfs"))
        .expect("busybox rootfs (install busybox-static)");
    let base = layer_of_dir(&rootfs);
    let (one, two): (PathBuf, PathBuf) = (work.join("one"), work.join("two"));
    let digest_one = make_layout(&one, "bb:1", &base, "layer one\n");
    let digest_two = make_layout(&two, "bb:2", &base, "layer two\n");
    let root = cluster.agent_root.to_str().unwrap().to_string();

    // The name comes from the layout's index; both layers are new.
    let out = cluster.ok(&["image", "import", one.to_str().unwrap(), "--root", &root]);
    assert_eq!(
        out.trim(),
        format!("bb:1 {digest_one} (2 layers: 2 unpacked, 0 already present)")
    );
    let after_first = layers(cluster.agent_root.as_path());
    assert_eq!(after_first.len(), 2, "{after_first:?}");

    // The same image again, as an archive under another name: nothing is unpacked.
    let tar = work.join("one.tar");
    archive(&one, &tar);
    let out = cluster.ok(&[
        "image",
        "import",
        tar.to_str().unwrap(),
        "--name",
        "bb:copy",
        "--root",
        &root,
    ]);
    assert_eq!(
        out.trim(),
        format!("bb:copy {digest_one} (2 layers: 0 unpacked, 2 already present)")
    );
    assert_eq!(
        layers(cluster.agent_root.as_path()),
        after_first,
        "the layers were not unpacked again"
    );

    // Another image on the same base: only its own top layer is unpacked.
    let out = cluster.ok(&["image", "import", two.to_str().unwrap(), "--root", &root]);
    assert!(
        out.contains(&digest_two) && out.contains("1 unpacked, 1 already present"),
        "{out}"
    );
    let after_two = layers(cluster.agent_root.as_path());
    assert_eq!(after_two.len(), 3);
    assert!(after_first.iter().all(|l| after_two.contains(l)));

    let listing = cluster.ok(&["image", "ls", "--root", &root]);
    let rows: Vec<Vec<&str>> = listing
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        vec![
            vec!["NAME", "DIGEST", "LAYERS"],
            vec!["bb:1", digest_one.as_str(), "2"],
            vec!["bb:2", digest_two.as_str(), "2"],
            vec!["bb:copy", digest_one.as_str(), "2"],
        ]
    );

    // A pod on the agent runs the image with its entrypoint, cmd and env.
    cluster.apply(
        "apiVersion: v1
kind: Pod
metadata: {name: bb}
spec:
  nodeName: n1
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers: [{name: main, image: 'bb:2'}]
",
    );
    cluster.wait_phase("default", "bb", "Succeeded");
    assert_eq!(cluster.ok(&["logs", "bb"]), "layer two\ngreeting=hi\n");

    // Bad input: one line naming what is wrong.
    let error = cluster.fails(&["image", "import", "/nonexistent/layout", "--root", &root]);
    assert!(error.contains("/nonexistent/layout"), "{error}");
    let error = cluster.fails(&["image", "import", work.to_str().unwrap(), "--root", &root]);
    assert!(error.contains("not an OCI image layout"), "{error}");
    let error = cluster.fails(&[
        "image",
        "import",
        one.to_str().unwrap(),
        "--name",
        "host",
        "--root",
        &root,
    ]);
    assert!(error.contains("reserved"), "{error}");
    assert_eq!(error.trim().lines().count(), 1, "{error}");

    cluster.delete_all_pods();
}

#[test]
fn pull_refuses_short_names_and_names_the_image_when_the_registry_is_unreachable() {
    let root = tempfile::tempdir().unwrap();
    let cox = |image: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cox"))
            .args(["image", "pull", image, "--insecure-registry", "127.0.0.1:1"])
            .arg("--root")
            .arg(root.path())
            .output()
            .unwrap()
    };
    let short = cox("busybox:1.36");
    assert!(!short.status.success());
    let stderr = String::from_utf8_lossy(&short.stderr);
    assert!(
        stderr.contains("busybox:1.36: name the registry"),
        "{stderr}"
    );

    let unreachable = cox("127.0.0.1:1/test/busybox:1.0");
    assert!(!unreachable.status.success());
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert!(
        stderr.contains("pulling image \"127.0.0.1:1/test/busybox:1.0\""),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
}
