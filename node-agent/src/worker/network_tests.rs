//! Unit tests of the worker's network steps over [`FakeNetwork`]: addresses in the
//! status, DNS files mounted into containers, retries after a failed setup,
//! teardown on removal and for orphans, hostNetwork pods.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::clock::ManualClock;
use crate::images::{ImageConfig, LocalImageStore};
use crate::mounts::FakeMounter;
use crate::network::FakeNetwork;
use crate::runtime::fake::FakeRuntime;
use crate::sandbox::cgroup::v2::CgroupV2;
use crate::sandbox::{FakeNamespaces, SandboxManager};

struct Fixture {
    _dirs: Vec<tempfile::TempDir>,
    deps: WorkerDeps,
    network: Arc<FakeNetwork>,
    runtime: Arc<FakeRuntime>,
}

fn fixture() -> Fixture {
    let (root, cg, rootfs) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let config = Arc::new(AgentConfig::new(root.path()));
    let mounter = Arc::new(FakeMounter::default());
    let images = LocalImageStore::new(config.images_dir(), mounter.clone());
    images
        .import_rootfs_dir("busybox", rootfs.path(), ImageConfig::default())
        .unwrap();
    let runtime = Arc::new(FakeRuntime::new());
    let network = Arc::new(FakeNetwork::new(Some("192.0.2.7".parse().unwrap())));
    let deps = WorkerDeps {
        config,
        sandbox: Arc::new(SandboxManager::new(
            root.path(),
            "cx",
            Box::new(FakeNamespaces::default()),
            Box::new(CgroupV2::new(cg.path())),
        )),
        runtime: runtime.clone(),
        images: Arc::new(images),
        volumes: Arc::new(VolumeManager::new(vec![], mounter)),
        clock: Arc::new(ManualClock::default()),
        network: network.clone(),
        devices: Arc::new(crate::devices::NoDevices),
    };
    Fixture {
        _dirs: vec![root, cg, rootfs],
        deps,
        network,
        runtime,
    }
}

fn pod(uid: &str, extra: serde_json::Value) -> Pod {
    let mut spec = serde_json::json!({
        "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "1d"]}],
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "shop", "uid": uid},
        "spec": spec,
    }))
    .unwrap()
}

#[test]
fn the_pod_ip_reaches_status_and_the_dns_files_are_mounted() {
    let f = fixture();
    let mut w = PodWorker::new(
        f.deps.clone(),
        pod("u1", serde_json::json!({"subdomain": "front"})),
        PodData::default(),
    );
    assert_eq!(w.status().pod_ip, None);
    for _ in 0..3 {
        w.step();
    }
    let status = w.status();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    let ip = status.pod_ip.clone().unwrap();
    assert!(ip.starts_with("10.88.0."), "{ip}");
    assert_eq!(status.pod_ips.unwrap()[0].ip, ip);
    assert_eq!(status.host_ip.as_deref(), Some("192.0.2.7"));
    assert_eq!(status.host_ips.unwrap()[0].ip, "192.0.2.7");
    assert!(f.runtime.args("u1_main").is_some());
    let mounts = w.dns_mounts(&[]);
    let dests: Vec<&str> = mounts.iter().map(|m| m.destination.as_str()).collect();
    assert_eq!(dests, ["/etc/resolv.conf", "/etc/hosts"]);
    let hosts = std::fs::read_to_string(&mounts[1].source).unwrap();
    assert!(
        hosts.contains(&format!("{ip}\tweb.front.shop.svc.cluster.local\tweb\n")),
        "{hosts}"
    );
    let resolv = std::fs::read_to_string(&mounts[0].source).unwrap();
    assert!(resolv.contains("nameserver 10.88.0.1\n"), "{resolv}");
    // A container mounting its own /etc/hosts keeps it.
    let own = [crate::runtime::VolumeMount {
        source: "/x".into(),
        destination: "/etc/hosts".into(),
        read_only: true,
    }];
    assert_eq!(w.dns_mounts(&own).len(), 1);
}

#[test]
fn a_failed_setup_is_reported_and_retried() {
    let f = fixture();
    f.network.fail_next_setups(1);
    let mut w = PodWorker::new(
        f.deps.clone(),
        pod("u1", serde_json::json!({})),
        PodData::default(),
    );
    assert_eq!(w.step(), Action::Requeue(f.deps.config.backoff_initial));
    let status = w.status();
    assert_eq!(status.reason.as_deref(), Some("NetworkSetupError"));
    assert!(status.message.unwrap().contains("injected"));
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    assert!(status.pod_ip.is_none());
    assert!(
        f.runtime.args("u1_main").is_none(),
        "started without a network"
    );
    for _ in 0..3 {
        w.step();
    }
    let status = w.status();
    assert_eq!(status.reason, None);
    assert!(status.pod_ip.is_some());
    assert_eq!(f.network.calls(), ["setup u1", "setup u1"]);
}

#[test]
fn removal_tears_the_network_down_before_the_sandbox() {
    let f = fixture();
    let mut w = PodWorker::new(
        f.deps.clone(),
        pod("u1", serde_json::json!({})),
        PodData::default(),
    );
    for _ in 0..3 {
        w.step();
    }
    w.terminate(Duration::ZERO);
    for _ in 0..5 {
        w.step();
    }
    assert!(w.is_removed());
    assert!(f.network.attached().unwrap().is_empty());
    assert_eq!(f.network.calls().last().unwrap(), "teardown u1");
    assert!(f.deps.sandbox.list().unwrap().is_empty());
}

#[test]
fn orphans_with_only_an_attachment_left_are_torn_down() {
    let f = fixture();
    // A previous agent attached "gone" and crashed after removing its sandbox.
    f.network.preattach("gone", "10.88.0.99".parse().unwrap());
    f.network.preattach("kept", "10.88.0.98".parse().unwrap());
    let removed = remove_orphans(&f.deps, &BTreeSet::from(["kept".to_string()])).unwrap();
    assert_eq!(removed, BTreeSet::from(["gone".to_string()]));
    assert_eq!(
        f.network.attached().unwrap(),
        BTreeSet::from(["kept".to_string()])
    );
}

#[test]
fn host_network_pods_get_the_node_address_without_a_setup() {
    let f = fixture();
    let mut w = PodWorker::new(
        f.deps.clone(),
        pod("u1", serde_json::json!({"hostNetwork": true})),
        PodData::default(),
    );
    for _ in 0..3 {
        w.step();
    }
    assert_eq!(w.status().pod_ip.as_deref(), Some("192.0.2.7"));
    assert!(f.network.calls().is_empty(), "{:?}", f.network.calls());
}
