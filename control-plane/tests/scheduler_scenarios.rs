//! End-to-end scheduler scenarios through the full default framework with the
//! in-memory binder and a fake clock: binding with devices, fractional GPUs, model
//! constraints, requeueing on events, bind conflicts, cordons.

use std::sync::Arc;
use std::time::Duration;

use coxswain_control_plane::scheduler::bench::{NodeTemplate, hollow_node};
use coxswain_control_plane::scheduler::binder::{format_devices, parse_devices};
use coxswain_control_plane::scheduler::model::{NodeInfo, PodInfo};
use coxswain_control_plane::scheduler::{
    ClusterEvent, CycleResult, FakeClock, InMemoryBinder, Scheduler, SchedulerConfig,
    default_framework,
};

struct Harness {
    sched: Scheduler,
    binder: Arc<InMemoryBinder>,
    clock: FakeClock,
}

fn harness(nodes: Vec<NodeInfo>) -> Harness {
    let binder = Arc::new(InMemoryBinder::new());
    let clock = FakeClock::new();
    let mut sched = Scheduler::new(
        default_framework(),
        binder.clone(),
        Arc::new(clock.clone()),
        SchedulerConfig::default(),
    );
    for n in nodes {
        sched.handle(ClusterEvent::NodeAdded(n)).unwrap();
    }
    Harness {
        sched,
        binder,
        clock,
    }
}

fn dgx(i: usize) -> NodeInfo {
    hollow_node(NodeTemplate::DgxH100, i, 8)
}

fn add(h: &mut Harness, pod: PodInfo) {
    h.sched.handle(ClusterEvent::PodAdded(pod)).unwrap();
}

#[test]
fn binds_exact_devices_and_annotates_them() {
    let mut h = harness(vec![dgx(0)]);
    add(&mut h, PodInfo::new("ns/a", 1000, 1 << 30, 4));
    let reports = h.sched.run_in_memory(&h.binder);
    assert_eq!(reports[0].result, CycleResult::Bound("node-00000".into()));
    let b = h.binder.binding("ns/a").unwrap();
    assert_eq!(b.devices.len(), 4);
    // One NUMA node (GPUs 0..4 are NUMA 0 on the DGX template).
    let node = h.sched.snapshot().node("node-00000").unwrap();
    let numas: Vec<u8> = b
        .devices
        .iter()
        .map(|d| node.gpus.iter().find(|g| g.id == d.id).unwrap().numa)
        .collect();
    assert!(numas.windows(2).all(|w| w[0] == w[1]));
    let annotation = format_devices(&b.devices);
    assert_eq!(parse_devices(&annotation).unwrap(), b.devices);
    assert_eq!(node.idle_gpus(&[]), 4);
}

#[test]
fn fractional_pods_share_one_gpu_up_to_1000_milli() {
    let mut h = harness(vec![hollow_node(NodeTemplate::DgxH100, 0, 1)]);
    for (i, milli) in [300, 300, 400, 100].into_iter().enumerate() {
        let mut p = PodInfo::new(&format!("ns/s{i}"), 100, 0, 0);
        p.gpu_milli = milli;
        p.seq = i as u64;
        add(&mut h, p);
    }
    let reports = h.sched.run_in_memory(&h.binder);
    let bound: Vec<_> = reports
        .iter()
        .filter(|r| matches!(r.result, CycleResult::Bound(_)))
        .collect();
    assert_eq!(bound.len(), 3);
    assert!(matches!(reports[3].result, CycleResult::Unschedulable(_)));
    let node = h.sched.snapshot().node("node-00000").unwrap();
    assert_eq!(node.gpus[0].used_milli, 1000);
    assert_eq!(
        format_devices(&h.binder.binding("ns/s0").unwrap().devices),
        format!(r#"["{}:300"]"#, node.gpus[0].id)
    );
}

#[test]
fn gpu_model_constraint_picks_the_matching_node() {
    let mut h = harness(vec![dgx(0), hollow_node(NodeTemplate::DgxA100, 1, 8)]);
    let mut p = PodInfo::new("ns/a100", 0, 0, 2);
    p.gpu_models = vec!["A100".into(), "A800".into()];
    add(&mut h, p);
    let mut q = PodInfo::new("ns/b200", 0, 0, 1);
    q.gpu_models = vec!["B200".into()];
    q.seq = 1;
    add(&mut h, q);
    let reports = h.sched.run_in_memory(&h.binder);
    assert_eq!(reports[0].result, CycleResult::Bound("node-00001".into()));
    let CycleResult::Unschedulable(s) = &reports[1].result else {
        panic!("B200 pod placed: {:?}", reports[1].result);
    };
    assert!(s.reason.contains("model"), "{s}");
}

#[test]
fn unschedulable_pod_waits_for_a_node_then_backs_off() {
    let mut h = harness(vec![dgx(0)]);
    add(&mut h, PodInfo::new("ns/big", 0, 0, 8));
    add(&mut h, {
        let mut p = PodInfo::new("ns/late", 0, 0, 8);
        p.seq = 1;
        p
    });
    h.sched.run_in_memory(&h.binder);
    assert!(h.binder.binding("ns/big").is_some());
    assert!(h.sched.queue().is_unschedulable("ns/late"));
    h.sched.handle(ClusterEvent::NodeAdded(dgx(1))).unwrap();
    assert_eq!(h.sched.queue().backoff_len(), 1);
    assert!(
        h.sched.run_in_memory(&h.binder).is_empty(),
        "still backing off"
    );
    h.clock.advance(Duration::from_secs(1));
    let reports = h.sched.run_in_memory(&h.binder);
    assert_eq!(reports[0].result, CycleResult::Bound("node-00001".into()));
}

#[test]
fn a_pod_that_came_before_any_node_is_woken_by_the_first_node() {
    // The pod watch can deliver a pod before the node watch delivers the node it was
    // created for: no plugin rejected it, so any event may help (kube-scheduler's rule
    // for a pod without rejector plugins) — not only the 5-minute flush.
    let mut h = harness(vec![]);
    add(&mut h, PodInfo::new("ns/early", 0, 0, 2));
    let reports = h.sched.run_in_memory(&h.binder);
    assert!(matches!(reports[0].result, CycleResult::Unschedulable(_)));
    assert!(h.sched.queue().is_unschedulable("ns/early"));
    h.sched.handle(ClusterEvent::NodeAdded(dgx(0))).unwrap();
    assert!(!h.sched.queue().is_unschedulable("ns/early"));
    h.clock.advance(Duration::from_secs(1));
    let reports = h.sched.run_in_memory(&h.binder);
    assert_eq!(reports[0].result, CycleResult::Bound("node-00000".into()));
}

#[test]
fn bind_conflict_forgets_the_pod_and_retries_after_backoff() {
    let mut h = harness(vec![dgx(0)]);
    h.binder.inject_conflict("ns/a");
    add(&mut h, PodInfo::new("ns/a", 0, 0, 8));
    let reports = h.sched.run_in_memory(&h.binder);
    assert!(matches!(reports[0].result, CycleResult::Unschedulable(_)));
    assert!(!h.sched.snapshot().is_assumed("ns/a"));
    assert_eq!(
        h.sched
            .snapshot()
            .node("node-00000")
            .unwrap()
            .idle_gpus(&[]),
        8
    );
    h.clock.advance(Duration::from_secs(1));
    let reports = h.sched.run_in_memory(&h.binder);
    assert_eq!(reports[0].result, CycleResult::Bound("node-00000".into()));
}

#[test]
fn cordoned_node_is_skipped_until_uncordoned() {
    let mut node = dgx(0);
    node.unschedulable = true;
    let mut h = harness(vec![node.clone()]);
    add(&mut h, PodInfo::new("ns/a", 0, 0, 1));
    h.sched.run_in_memory(&h.binder);
    assert!(h.binder.binding("ns/a").is_none());
    node.unschedulable = false;
    h.sched.handle(ClusterEvent::NodeUpdated(node)).unwrap();
    h.clock.advance(Duration::from_secs(1));
    h.sched.run_in_memory(&h.binder);
    assert!(h.binder.binding("ns/a").is_some());
}

#[test]
fn multi_gpu_pods_stay_inside_an_nvlink_island_on_pcie_nodes() {
    let mut h = harness(vec![hollow_node(NodeTemplate::Pcie, 0, 8)]);
    for i in 0..4 {
        let mut p = PodInfo::new(&format!("ns/p{i}"), 0, 0, 2);
        p.seq = i;
        add(&mut h, p);
    }
    h.sched.run_in_memory(&h.binder);
    let node = h.sched.snapshot().node("node-00000").unwrap();
    for b in h.binder.bindings().values() {
        let islands: Vec<u16> = b
            .devices
            .iter()
            .map(|d| node.gpus.iter().find(|g| g.id == d.id).unwrap().island)
            .collect();
        assert_eq!(islands[0], islands[1], "{b:?}");
    }
}
