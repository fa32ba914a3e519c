//! Gang scheduling end to end: all or nothing, Permit timeout, no deadlock between two
//! gangs that each need more than half the cluster, and network-topology packing.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use coxswain_api::coxswain::{TopologyConstraint, TopologyLevel, TopologyMode};
use coxswain_control_plane::scheduler::bench::{NodeTemplate, hollow_node};
use coxswain_control_plane::scheduler::model::{GangSpec, NodeInfo, PodInfo, PodKey};
use coxswain_control_plane::scheduler::{
    Clock, ClusterEvent, CycleResult, FakeClock, InMemoryBinder, Scheduler, SchedulerConfig,
    TokioClock, default_framework,
};

fn scheduler(nodes: Vec<NodeInfo>, clock: Arc<dyn Clock>) -> (Scheduler, Arc<InMemoryBinder>) {
    let binder = Arc::new(InMemoryBinder::new());
    let mut sched = Scheduler::new(
        default_framework(),
        binder.clone(),
        clock,
        SchedulerConfig::default(),
    );
    for n in nodes {
        sched.handle(ClusterEvent::NodeAdded(n)).unwrap();
    }
    (sched, binder)
}

fn gang(
    sched: &mut Scheduler,
    name: &str,
    members: usize,
    gpus: u16,
    seq: u64,
    topology: Option<TopologyConstraint>,
) -> Vec<PodKey> {
    let key: PodKey = format!("ns/{name}").into();
    sched
        .handle(ClusterEvent::PodGroupChanged(GangSpec {
            key: key.clone(),
            min_member: members as u32,
            timeout: Duration::from_secs(30),
            topology,
            seq,
            queue: None,
        }))
        .unwrap();
    (0..members)
        .map(|i| {
            let mut p = PodInfo::new(&format!("ns/{name}-{i}"), 1000, 1 << 30, gpus);
            p.group = Some(key.clone());
            p.seq = seq * 1000 + i as u64;
            let k = p.key.clone();
            sched.handle(ClusterEvent::PodAdded(p)).unwrap();
            k
        })
        .collect()
}

fn bound(binder: &InMemoryBinder, pods: &[PodKey]) -> usize {
    pods.iter().filter(|p| binder.binding(p).is_some()).count()
}

#[tokio::test(start_paused = true)]
async fn two_big_gangs_run_one_after_the_other_without_deadlock() {
    let clock = Arc::new(TokioClock::new());
    let nodes = (0..4)
        .map(|i| hollow_node(NodeTemplate::DgxH100, i, 8))
        .collect();
    let (mut sched, binder) = scheduler(nodes, clock);
    // Each gang needs 3 of the 4 nodes (75 % of the cluster).
    let a = gang(&mut sched, "a", 3, 8, 1, None);
    let b = gang(&mut sched, "b", 3, 8, 2, None);
    sched.run_in_memory(&binder);
    assert_eq!(bound(&binder, &a), 3, "first gang runs");
    assert_eq!(bound(&binder, &b), 0, "second gang waits, holding nothing");
    assert!(sched.waiting().is_empty());
    assert_eq!(
        sched.snapshot().node("node-00003").unwrap().idle_gpus(&[]),
        8
    );
    // Gang a finishes: its pods are deleted; gang b is woken and runs after back-off.
    for p in &a {
        sched.handle(ClusterEvent::PodDeleted(p.clone())).unwrap();
    }
    tokio::time::advance(Duration::from_secs(10)).await;
    sched.run_in_memory(&binder);
    assert_eq!(bound(&binder, &b), 3);
    assert!(sched.waiting().is_empty());
}

#[test]
fn a_member_that_cannot_fit_releases_the_whole_gang() {
    let clock = FakeClock::new();
    let mut nodes: Vec<NodeInfo> = (0..4)
        .map(|i| hollow_node(NodeTemplate::DgxH100, i, 8))
        .collect();
    for n in &mut nodes[..2] {
        n.labels.insert("pool".into(), "train".into());
    }
    let (mut sched, binder) = scheduler(nodes, Arc::new(clock));
    // Capacity exists cluster-wide (4 nodes) but only 2 nodes match the selector.
    let key: PodKey = "ns/g".into();
    sched
        .handle(ClusterEvent::PodGroupChanged(GangSpec {
            key: key.clone(),
            min_member: 3,
            timeout: Duration::from_secs(30),
            topology: None,
            seq: 1,
            queue: None,
        }))
        .unwrap();
    for i in 0..3 {
        let mut p = PodInfo::new(&format!("ns/g-{i}"), 0, 0, 8);
        p.group = Some(key.clone());
        p.seq = i;
        p.node_selector.insert("pool".into(), "train".into());
        sched.handle(ClusterEvent::PodAdded(p)).unwrap();
    }
    let reports = sched.run_in_memory(&binder);
    assert!(binder.bindings().is_empty());
    assert!(sched.waiting().is_empty());
    let released: usize = reports.iter().map(|r| r.released.len()).sum();
    assert_eq!(released, 2, "the two reserved members were given back");
    assert!(sched.snapshot().pods().all(|p| p.node.is_none()));
}

#[test]
fn permit_timeout_rejects_the_waiting_members() {
    let clock = FakeClock::new();
    let nodes = (0..2)
        .map(|i| hollow_node(NodeTemplate::DgxH100, i, 8))
        .collect();
    let (mut sched, binder) = scheduler(nodes, Arc::new(clock.clone()));
    let members = gang(&mut sched, "g", 2, 8, 1, None);
    // Only the first member gets a cycle before the deadline.
    let report = sched.schedule_one().unwrap();
    assert!(matches!(report.result, CycleResult::Waiting(_)));
    assert!(sched.snapshot().is_assumed(&members[0]));
    clock.advance(Duration::from_secs(31));
    let released = sched.tick();
    assert_eq!(released, vec![members[0].clone()]);
    assert!(!sched.snapshot().is_assumed(&members[0]));
    assert!(binder.bindings().is_empty());
    assert_eq!(
        sched.snapshot().node("node-00000").unwrap().idle_gpus(&[]),
        8
    );
}

fn racks(
    sched: &Scheduler,
    binder: &InMemoryBinder,
    pods: &[PodKey],
    label: &str,
) -> HashSet<String> {
    pods.iter()
        .map(|p| {
            let node = binder.binding(p).expect("bound").node;
            sched.snapshot().node(&node).unwrap().labels[label].clone()
        })
        .collect()
}

#[test]
fn gangs_pack_into_the_smallest_topology_domain() {
    // 64 nodes: 2 racks of 32, 4 switches of 16, one block.
    let nodes = (0..64)
        .map(|i| hollow_node(NodeTemplate::DgxH100, i, 8))
        .collect();
    let (mut sched, binder) = scheduler(nodes, Arc::new(FakeClock::new()));
    let small = gang(&mut sched, "small", 4, 8, 1, None);
    let wide = gang(&mut sched, "wide", 20, 8, 2, None);
    sched.run_in_memory(&binder);
    assert_eq!(
        racks(&sched, &binder, &small, "topology.coxswain.dev/switch").len(),
        1
    );
    assert_eq!(
        racks(&sched, &binder, &wide, "topology.coxswain.dev/rack").len(),
        1
    );
    // 40 nodes never fit one rack: a required rack constraint leaves the gang pending.
    let too_big = gang(
        &mut sched,
        "too-big",
        36,
        8,
        3,
        Some(TopologyConstraint {
            level: TopologyLevel::Rack,
            mode: TopologyMode::Required,
        }),
    );
    sched.run_in_memory(&binder);
    assert_eq!(bound(&binder, &too_big), 0);
    assert!(sched.waiting().is_empty());
}
