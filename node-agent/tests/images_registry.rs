//! Pulling images from a real OCI registry: Debian's `docker-registry` (the CNCF
//! distribution server) started by the test on loopback, an image pushed to it with
//! `oci-client` (a busybox layer and a config with entrypoint, cmd and env), and a pod
//! that names it running on runc with the image's defaults — pulled by the agent's
//! image store once, then served from the store. A tag the registry does not have
//! gives `ErrImagePull` naming the image and the registry's answer.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Harness, drive, phase, pod, remove, uid};
use coxswain_node_agent::images::{ImageStore, LocalImageStore, RegistryPuller};
use coxswain_node_agent::logs::{Stream, read_lines};
use coxswain_node_agent::mounts::SystemMounter;
use coxswain_node_agent::runtime::RuntimeKind;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest, Sha256};

const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";

/// A `docker-registry` serving on `127.0.0.1:<port>`; killed on drop.
struct Registry {
    child: Child,
    address: String,
}

impl Registry {
    fn start(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        assert!(
            Path::new(REGISTRY_BINARY).is_file(),
            "THE REGISTRY TEST NEEDS {REGISTRY_BINARY}: install the Debian package \
             docker-registry (scripts/setup.sh does)"
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: {address}\n",
                dir.join("registry-data").display()
            ),
        )
        .unwrap();
        let child = Command::new(REGISTRY_BINARY)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .spawn()
            .expect("starting docker-registry");
        let registry = Self { child, address };
        let limit = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&registry.address).is_err() {
            assert!(Instant::now() < limit, "docker-registry did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pushes `rootfs` as a one-layer image `reference` with the given defaults.
async fn push(registry: &str, reference: &Reference, rootfs: &Path) {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    tar.follow_symlinks(false);
    tar.append_dir_all(".", rootfs).unwrap();
    let gz = tar.into_inner().unwrap().finish().unwrap();
    let mut raw = Vec::new();
    std::io::copy(&mut flate2::read::GzDecoder::new(gz.as_slice()), &mut raw).unwrap();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo from-registry $GREETING"],
                   "Env": ["GREETING=pulled", "PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{:x}", Sha256::digest(&raw))]},
    });
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(vec![registry.to_string()]),
        ..ClientConfig::default()
    });
    client
        .push(
            reference,
            &[ImageLayer::oci_v1_gzip(gz, None)],
            Config::oci_v1(config.to_string().into_bytes(), None),
            &RegistryAuth::Anonymous,
            None,
        )
        .await
        .expect("pushing the test image");
}

#[test]
fn a_pod_runs_an_image_pulled_from_a_registry_once() {
    let h = Harness::new(RuntimeKind::Runc);
    let registry = Registry::start(h.dir.path());
    let image = format!("{}/test/busybox:1.0", registry.address);
    let reference: Reference = image.parse().unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(push(
        &registry.address,
        &reference,
        &h.dir.path().join("busybox-rootfs"),
    ));

    let store = Arc::new(
        LocalImageStore::new(h.deps.config.images_dir(), Arc::new(SystemMounter))
            .with_registry(RegistryPuller::new(vec![registry.address.clone()])),
    );
    let mut deps = h.deps.clone();
    deps.images = store.clone();
    let uid = uid();
    let spec = serde_json::json!({"restartPolicy": "Never",
        "containers": [{"name": "main", "image": image}]});
    let mut w =
        coxswain_node_agent::worker::PodWorker::new(deps, pod(&uid, spec), Default::default());
    let status = drive(&mut w, |s| phase(s) == "Succeeded" || phase(s) == "Failed");
    assert_eq!(phase(&status), "Succeeded", "{status:#?}");
    let log = std::fs::read_to_string(h.deps.config.pod_dir(&uid).join("logs/main/0.log")).unwrap();
    assert_eq!(
        read_lines(&log),
        [(Stream::Stdout, "from-registry pulled".to_string())]
    );
    remove(&mut w, &h.clock);

    // Recorded: with the registry gone the image still resolves, to the same layers.
    let pulled = store.resolve(&image).unwrap();
    assert_eq!(pulled.layers.len(), 1);
    assert!(pulled.layers[0].join("bin/busybox").exists());
    assert!(pulled.digest.starts_with("sha256:"), "{}", pulled.digest);
    drop(registry);
    assert_eq!(store.resolve(&image).unwrap(), pulled);

    // A pull that fails names the image and the registry's answer.
    let registry = Registry::start(&h.dir.path().join("second"));
    let missing = format!("{}/test/busybox:2.0", registry.address);
    let store = LocalImageStore::new(h.deps.config.images_dir(), Arc::new(SystemMounter))
        .with_registry(RegistryPuller::new(vec![registry.address.clone()]));
    let err = store.resolve(&missing).unwrap_err();
    assert_eq!(err.reason(), "ErrImagePull");
    let message = err.to_string();
    assert!(
        message.contains(&missing) && message.to_lowercase().contains("manifest unknown"),
        "{message}"
    );
    // A short name is never pulled (it would mean Docker Hub): not found, as before.
    let err = store.resolve("alpine:3.20").unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
}
