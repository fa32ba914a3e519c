//! Priority preemption end to end: whole gangs are evicted or none of them, victims
//! are the fewest, then the lowest priority.

use std::sync::Arc;
use std::time::Duration;

use coxswain_control_plane::scheduler::bench::{NodeTemplate, hollow_node};
use coxswain_control_plane::scheduler::model::{GangSpec, PodInfo, PodKey};
use coxswain_control_plane::scheduler::{
    ClusterEvent, CycleResult, FakeClock, InMemoryBinder, Scheduler, SchedulerConfig,
    default_framework,
};

fn scheduler(nodes: usize) -> (Scheduler, Arc<InMemoryBinder>, FakeClock) {
    let binder = Arc::new(InMemoryBinder::new());
    let clock = FakeClock::new();
    let mut sched = Scheduler::new(
        default_framework(),
        binder.clone(),
        Arc::new(clock.clone()),
        SchedulerConfig::default(),
    );
    for i in 0..nodes {
        sched
            .handle(ClusterEvent::NodeAdded(hollow_node(
                NodeTemplate::DgxH100,
                i,
                8,
            )))
            .unwrap();
    }
    (sched, binder, clock)
}

fn pod(name: &str, gpus: u16, priority: i32, seq: u64) -> PodInfo {
    let mut p = PodInfo::new(&format!("ns/{name}"), 0, 0, gpus);
    p.priority = priority;
    p.seq = seq;
    p
}

fn place(sched: &mut Scheduler, binder: &InMemoryBinder, pods: Vec<PodInfo>) {
    for p in pods {
        sched.handle(ClusterEvent::PodAdded(p)).unwrap();
    }
    sched.run_in_memory(binder);
}

fn preemptions(
    sched: &mut Scheduler,
    binder: &InMemoryBinder,
    p: PodInfo,
) -> (String, Vec<PodKey>) {
    sched.handle(ClusterEvent::PodAdded(p)).unwrap();
    let reports = sched.run_in_memory(binder);
    let found = reports.iter().find_map(|r| match &r.result {
        CycleResult::Preempting { node, victims } => Some((node.clone(), victims.clone())),
        _ => None,
    });
    found.expect("the pod preempted")
}

#[test]
fn a_gang_is_evicted_whole_or_not_at_all() {
    let (mut sched, binder, clock) = scheduler(2);
    // A low-priority gang of two 4-GPU members fills node 0; node 1 holds a pod of
    // higher priority than the preemptor, which cannot be evicted.
    sched
        .handle(ClusterEvent::PodGroupChanged(GangSpec {
            key: "ns/g".into(),
            min_member: 2,
            timeout: Duration::from_secs(30),
            topology: None,
            seq: 0,
            queue: None,
        }))
        .unwrap();
    let members: Vec<PodInfo> = (0..2)
        .map(|i| {
            let mut p = pod(&format!("g-{i}"), 4, 0, i);
            p.group = Some("ns/g".into());
            p
        })
        .collect();
    place(&mut sched, &binder, members);
    place(&mut sched, &binder, vec![pod("vip", 8, 200, 10)]);
    assert_eq!(binder.bindings().len(), 3);
    let gang_node = binder.binding("ns/g-0").unwrap().node;
    assert_eq!(binder.binding("ns/g-1").unwrap().node, gang_node);
    // A 4-GPU pod of priority 100 needs only half the gang's GPUs, but takes both members.
    let (node, mut victims) = preemptions(&mut sched, &binder, pod("urgent", 4, 100, 20));
    victims.sort();
    assert_eq!(node, gang_node);
    assert_eq!(
        victims,
        vec![PodKey::from("ns/g-0"), PodKey::from("ns/g-1")]
    );
    assert!(binder.binding("ns/vip").is_some());
    clock.advance(Duration::from_secs(1));
    sched.run_in_memory(&binder);
    assert_eq!(binder.binding("ns/urgent").map(|b| b.node), Some(gang_node));
    assert!(binder.binding("ns/g-0").is_none() && binder.binding("ns/g-1").is_none());
}

#[test]
fn fewest_victims_win() {
    let (mut sched, binder, _) = scheduler(2);
    // Node 0: two 4-GPU pods; node 1: one 8-GPU pod; all priority 0.
    place(
        &mut sched,
        &binder,
        vec![pod("a", 4, 0, 0), pod("b", 4, 0, 1)],
    );
    place(&mut sched, &binder, vec![pod("c", 8, 0, 2)]);
    let node_of_c = binder.binding("ns/c").unwrap().node;
    let (node, victims) = preemptions(&mut sched, &binder, pod("hi", 8, 10, 3));
    assert_eq!(node, node_of_c);
    assert_eq!(victims, vec![PodKey::from("ns/c")]);
}

#[test]
fn lowest_priority_victims_win_among_equal_counts() {
    let (mut sched, binder, _) = scheduler(2);
    place(
        &mut sched,
        &binder,
        vec![pod("p50", 8, 50, 0), pod("p10", 8, 10, 1)],
    );
    let (_, victims) = preemptions(&mut sched, &binder, pod("hi", 8, 100, 2));
    assert_eq!(victims, vec![PodKey::from("ns/p10")]);
}

#[test]
fn equal_priority_never_preempts() {
    let (mut sched, binder, _) = scheduler(1);
    place(&mut sched, &binder, vec![pod("a", 8, 5, 0)]);
    sched
        .handle(ClusterEvent::PodAdded(pod("b", 8, 5, 1)))
        .unwrap();
    let reports = sched.run_in_memory(&binder);
    assert!(matches!(reports[0].result, CycleResult::Unschedulable(_)));
    assert!(binder.binding("ns/a").is_some());
}
