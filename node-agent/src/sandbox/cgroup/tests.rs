//! Unit tests of the cgroup drivers against tempdir fixtures laid out like cgroupfs.

use super::v1::CgroupV1;
use super::v2::{CgroupV2, shares_to_weight};
use super::*;
use crate::sandbox::qos::PodLimits;

fn limits() -> PodLimits {
    PodLimits {
        qos: QosClass::Burstable,
        cpu_shares: 512,
        cpu_quota_us: Some(50_000),
        memory_bytes: Some(64 << 20),
        pids: 128,
    }
}

#[test]
fn v2_writes_limits_and_enables_controllers() {
    let fixture = tempfile::tempdir().unwrap();
    let v2 = CgroupV2::new(fixture.path());
    let rel = pod_cgroup_path("coxswain", QosClass::Burstable, "u1");
    assert_eq!(rel, "/coxswain/burstable/podu1");
    v2.create_pod(&rel, &limits()).unwrap();
    v2.create_pod(&rel, &limits()).unwrap(); // idempotent
    let read = |f: &str| v2.read(&rel, "", f).unwrap();
    assert_eq!(read("cpu.max"), "50000 100000");
    assert_eq!(read("memory.max"), (64u64 << 20).to_string());
    assert_eq!(read("pids.max"), "128");
    assert_eq!(read("cpu.weight"), shares_to_weight(512).to_string());
    let top =
        std::fs::read_to_string(fixture.path().join("coxswain/cgroup.subtree_control")).unwrap();
    assert_eq!(top, "+cpu +memory +pids");
    std::fs::write(
        fixture
            .path()
            .join("coxswain/burstable/podu1/memory.events"),
        "low 0\noom 2\noom_kill 1\n",
    )
    .unwrap();
    assert_eq!(v2.oom_kills(&rel).unwrap(), 1);
}

#[test]
fn v2_unlimited_is_max_and_listing_finds_every_class() {
    let fixture = tempfile::tempdir().unwrap();
    let v2 = CgroupV2::new(fixture.path());
    let unlimited = PodLimits {
        qos: QosClass::BestEffort,
        cpu_shares: 2,
        cpu_quota_us: None,
        memory_bytes: None,
        pids: 4096,
    };
    for (qos, uid) in [
        (QosClass::Guaranteed, "a"),
        (QosClass::Burstable, "b"),
        (QosClass::BestEffort, "c"),
    ] {
        v2.create_pod(&pod_cgroup_path("cx", qos, uid), &unlimited)
            .unwrap();
    }
    assert_eq!(
        v2.read("/cx/besteffort/podc", "", "cpu.max").unwrap(),
        "max 100000"
    );
    assert_eq!(
        v2.read("/cx/besteffort/podc", "", "memory.max").unwrap(),
        "max"
    );
    let mut found: Vec<_> = list_pod_cgroups(&v2, "cx")
        .unwrap()
        .into_iter()
        .map(|(u, _)| u)
        .collect();
    found.sort();
    assert_eq!(found, ["a", "b", "c"]);
    v2.remove("/cx/burstable/podb").unwrap();
    v2.remove("/cx/burstable/podb").unwrap(); // idempotent
    assert!(!v2.exists("/cx/burstable/podb"));
    assert_eq!(list_pod_cgroups(&v2, "cx").unwrap().len(), 2);
}

#[test]
fn v1_writes_each_controller() {
    let fixture = tempfile::tempdir().unwrap();
    for c in ["cpu", "cpuacct", "memory", "pids", "freezer"] {
        std::fs::create_dir_all(fixture.path().join(c)).unwrap();
        std::fs::write(fixture.path().join(c).join("cgroup.procs"), "").unwrap();
    }
    let v1 = CgroupV1::new(fixture.path());
    v1.create_pod("/cx/podg", &limits()).unwrap();
    assert_eq!(
        v1.read("/cx/podg", "cpu", "cpu.cfs_quota_us").unwrap(),
        "50000"
    );
    assert_eq!(v1.read("/cx/podg", "cpu", "cpu.shares").unwrap(), "512");
    assert_eq!(v1.read("/cx/podg", "pids", "pids.max").unwrap(), "128");
    // A hierarchy the runtime populated (freezer) is cleaned too.
    std::fs::create_dir_all(fixture.path().join("freezer/cx/podg/ctr")).unwrap();
    v1.remove("/cx/podg").unwrap();
    assert!(!v1.exists("/cx/podg"));
}
