//! Unit tests of device-level GPU allocation.

use super::*;
use crate::scheduler::model::{GpuDevice, Resources};
use crate::scheduler::status::Code;

/// 8 GPUs: islands of 4 ({0..3}, {4..7}), NUMA 0 = {0,1,4,5}, NUMA 1 = {2,3,6,7}.
fn node() -> NodeInfo {
    let gpus = (0..8)
        .map(|i| {
            GpuDevice::new(
                format!("GPU-{i}"),
                if i < 6 { "H100" } else { "A100" },
                ((i / 2) % 2) as u8,
                (i / 4) as u16,
            )
        })
        .collect();
    NodeInfo::new("n", Resources::new(64_000, 1 << 40, 110), gpus)
}

fn take(node: &mut NodeInfo, ids: &[usize], milli: u16) {
    for &i in ids {
        node.gpus[i].used_milli += milli;
    }
    node.refresh();
}

#[test]
fn whole_gpus_best_fit_island_and_numa() {
    let mut n = node();
    take(&mut n, &[4], 1000);
    let pod = PodInfo::new("ns/p", 0, 0, 2);
    // Island 1 has 3 idle (5,6,7): best fit for 2; NUMA 1 holds {6,7}.
    let p = plan(&pod, &n).unwrap();
    assert_eq!(p.devices, vec![6, 7]);
    assert!(p.aligned && p.same_numa);
    // 4 GPUs fit only island 0.
    let p = plan(&PodInfo::new("ns/q", 0, 0, 4), &n).unwrap();
    assert_eq!(p.devices, vec![0, 1, 2, 3]);
    // 6 GPUs spread over both islands, largest first.
    let p = plan(&PodInfo::new("ns/r", 0, 0, 6), &n).unwrap();
    assert_eq!(p.devices.len(), 6);
    assert!(!p.aligned);
    assert!(plan(&PodInfo::new("ns/s", 0, 0, 8), &n).is_none());
}

#[test]
fn model_constraint_and_filter_reasons() {
    let n = node();
    let (snap, mut state) = (ClusterSnapshot::new(), CycleState::new());
    let mut pod = PodInfo::new("ns/p", 0, 0, 3);
    pod.gpu_models = vec!["A100".into()];
    let s = GpuAllocation.filter(&snap, &state, &pod, &n);
    assert_eq!(s.code, Code::UnschedulableAndUnresolvable);
    pod.gpu_models = vec!["A100".into(), "H100".into()];
    assert!(GpuAllocation.filter(&snap, &state, &pod, &n).is_success());
    assert!(
        GpuAllocation
            .reserve(&snap, &mut state, &pod, &n)
            .is_success()
    );
    let devices = state.read::<Vec<DeviceAlloc>>(DEVICES_KEY).unwrap();
    assert_eq!(devices.len(), 3);
}

#[test]
fn alignment_is_enforced_until_relaxed() {
    let mut n = node();
    take(&mut n, &[0, 4], 1000);
    let (snap, mut state) = (ClusterSnapshot::new(), CycleState::new());
    let pod = PodInfo::new("ns/p", 0, 0, 4);
    GpuAllocation.pre_filter(&snap, &mut state, &pod).unwrap();
    assert!(state.can_relax());
    let s = GpuAllocation.filter(&snap, &state, &pod, &n);
    assert!(s.reason.contains("NVLink island"));
    state.relax();
    assert!(GpuAllocation.filter(&snap, &state, &pod, &n).is_success());
}

#[test]
fn shares_pack_onto_shared_devices_and_never_exceed_1000() {
    let mut n = node();
    take(&mut n, &[3], 600);
    take(&mut n, &[5], 300);
    take(&mut n, &[6], 1000);
    let mut pod = PodInfo::new("ns/p", 0, 0, 0);
    pod.gpu_milli = 400;
    // Device 3 has exactly 400 left: tightest fit.
    assert_eq!(plan(&pod, &n).unwrap().devices, vec![3]);
    pod.gpu_milli = 500;
    assert_eq!(plan(&pod, &n).unwrap().devices, vec![5]);
    pod.gpu_milli = 800;
    // No shared device has 800: an idle device in the island with fewest idle GPUs.
    let d = plan(&pod, &n).unwrap().devices[0];
    assert!(n.gpus[d].is_idle() && n.gpus[d].island == 1);
    for d in &mut n.gpus {
        d.used_milli = 300;
    }
    n.refresh();
    let (snap, state) = (ClusterSnapshot::new(), CycleState::new());
    assert!(GpuAllocation.filter(&snap, &state, &pod, &n).is_rejected());
    pod.gpu_milli = 700;
    assert!(GpuAllocation.filter(&snap, &state, &pod, &n).is_success());
}

#[test]
fn pre_filter_rejects_contradictory_asks() {
    let (snap, mut state) = (ClusterSnapshot::new(), CycleState::new());
    let mut pod = PodInfo::new("ns/p", 0, 0, 1);
    pod.gpu_milli = 10;
    assert!(GpuAllocation.pre_filter(&snap, &mut state, &pod).is_err());
    pod.gpus = 0;
    pod.gpu_milli = 1001;
    assert!(GpuAllocation.pre_filter(&snap, &mut state, &pod).is_err());
}
