//! Property tests over random clusters and workloads, through the full framework:
//! no GPU over 1000 milli, no device to two whole-GPU pods, gangs wholly bound or not
//! at all (also across preemption), island alignment whenever a fitting island exists.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use coxswain_control_plane::scheduler::bench::{NodeTemplate, hollow_node};
use coxswain_control_plane::scheduler::model::{GangSpec, PodInfo, PodKey};
use coxswain_control_plane::scheduler::{
    ClusterEvent, CycleResult, FakeClock, InMemoryBinder, Scheduler, SchedulerConfig,
    default_framework,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Ask {
    Whole(u16),
    Share(u16),
}

#[derive(Debug, Clone)]
struct Case {
    nodes: Vec<(bool, usize)>,
    pods: Vec<(Ask, i32)>,
    gangs: Vec<(usize, u16, i32)>,
    deletions: Vec<usize>,
}

fn ask() -> impl Strategy<Value = Ask> {
    prop_oneof![
        prop::sample::select(vec![1u16, 2, 4, 8]).prop_map(Ask::Whole),
        (1u16..=1000).prop_map(Ask::Share),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec((any::<bool>(), 2usize..=8), 1..8),
        prop::collection::vec((ask(), prop::sample::select(vec![0, 10, 100])), 0..40),
        prop::collection::vec(
            (2usize..6, 1u16..=8, prop::sample::select(vec![0, 50, 100])),
            0..3,
        ),
        prop::collection::vec(0usize..100, 0..10),
    )
        .prop_map(|(nodes, pods, gangs, deletions)| Case {
            nodes,
            pods,
            gangs,
            deletions,
        })
}

struct Run {
    sched: Scheduler,
    binder: Arc<InMemoryBinder>,
    gangs: HashMap<PodKey, (usize, Vec<PodKey>)>,
}

/// Checks every invariant on the bindings that stand now.
fn check(run: &Run) -> Result<(), TestCaseError> {
    let bindings = run.binder.bindings();
    let mut milli: HashMap<&str, u32> = HashMap::new();
    let mut whole: HashSet<&str> = HashSet::new();
    for b in bindings.values() {
        for d in &b.devices {
            *milli.entry(d.id.as_str()).or_default() += u32::from(d.milli);
            if d.milli == 1000 {
                prop_assert!(
                    whole.insert(d.id.as_str()),
                    "device {} given to two whole-GPU pods",
                    d.id
                );
            }
        }
    }
    for (id, m) in &milli {
        prop_assert!(*m <= 1000, "device {id} holds {m} milli");
        if whole.contains(id) {
            prop_assert_eq!(*m, 1000, "whole GPU {} also shared", id);
        }
    }
    for (g, (min, members)) in &run.gangs {
        let n = members.iter().filter(|m| bindings.contains_key(*m)).count();
        prop_assert!(n == 0 || n >= *min, "gang {g}: {n} of {min} bound");
    }
    Ok(())
}

/// Whether some node has an NVLink island with `k` idle GPUs now.
fn island_exists(sched: &Scheduler, k: usize) -> bool {
    sched
        .snapshot()
        .nodes()
        .iter()
        .any(|n| n.largest_idle_island(&[]) >= k)
}

fn step(run: &mut Run) -> Result<(), TestCaseError> {
    loop {
        run.sched.tick();
        let possible: Vec<bool> = (0..=8).map(|k| island_exists(&run.sched, k)).collect();
        let Some(report) = run.sched.schedule_one() else {
            break;
        };
        if let CycleResult::Bound(node) | CycleResult::Waiting(node) = &report.result {
            let pod = run
                .sched
                .snapshot()
                .pod(&report.pod)
                .expect("placed pod exists");
            let k = pod.devices.len();
            let n = run.sched.snapshot().node(node).expect("node exists");
            let islands: HashSet<u16> = pod
                .devices
                .iter()
                .map(|d| n.gpus.iter().find(|g| g.id == d.id).expect("device").island)
                .collect();
            if pod.gpus > 1 && islands.len() > 1 {
                prop_assert!(
                    !possible[k],
                    "{} spread over islands though one fits {k}",
                    pod.key
                );
            }
        }
        if let CycleResult::Preempting { victims, .. } = &report.result {
            let victims: HashSet<&PodKey> = victims.iter().collect();
            for (g, (_, members)) in &run.gangs {
                let bound: Vec<&PodKey> = members
                    .iter()
                    .filter(|m| run.binder.binding(m).is_some() || victims.contains(m))
                    .collect();
                let hit = bound.iter().filter(|m| victims.contains(**m)).count();
                prop_assert!(hit == 0 || hit == bound.len(), "preemption split gang {g}");
            }
        }
        for v in run.binder.take_evicted() {
            run.sched
                .handle(ClusterEvent::PodDeleted(v))
                .expect("delete");
        }
        check(run)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn scheduling_invariants_hold(case in case()) {
        let binder = Arc::new(InMemoryBinder::new());
        let clock = FakeClock::new();
        let mut sched = Scheduler::new(default_framework(), binder.clone(), Arc::new(clock.clone()), SchedulerConfig::default());
        for (i, (pcie, gpus)) in case.nodes.iter().enumerate() {
            let t = if *pcie { NodeTemplate::Pcie } else { NodeTemplate::DgxH100 };
            sched.handle(ClusterEvent::NodeAdded(hollow_node(t, i, *gpus))).expect("node");
        }
        let mut all: Vec<PodKey> = Vec::new();
        let mut gangs = HashMap::new();
        for (g, (members, gpus, priority)) in case.gangs.iter().enumerate() {
            let key: PodKey = format!("ns/gang-{g}").into();
            sched.handle(ClusterEvent::PodGroupChanged(GangSpec {
                key: key.clone(),
                min_member: *members as u32,
                timeout: Duration::from_secs(30),
                topology: None,
                seq: g as u64,
                queue: None,
            })).expect("group");
            let mut keys = Vec::new();
            for m in 0..*members {
                let mut p = PodInfo::new(&format!("ns/gang-{g}-{m}"), 100, 0, *gpus);
                p.group = Some(key.clone());
                p.priority = *priority;
                keys.push(p.key.clone());
                sched.handle(ClusterEvent::PodAdded(p)).expect("pod");
            }
            gangs.insert(key, (*members, keys));
        }
        let mut run = Run { sched, binder, gangs };
        for (i, (ask, priority)) in case.pods.iter().enumerate() {
            let mut p = PodInfo::new(&format!("ns/p{i}"), 100, 0, 0);
            match ask {
                Ask::Whole(k) => p.gpus = *k,
                Ask::Share(m) => p.gpu_milli = *m,
            }
            p.priority = *priority;
            p.seq = 100 + i as u64;
            all.push(p.key.clone());
            run.sched.handle(ClusterEvent::PodAdded(p)).expect("pod");
            // Interleave scheduling with arrivals, so later high-priority pods preempt.
            if i % 8 == 7 {
                step(&mut run)?;
            }
        }
        step(&mut run)?;
        // Pods finish (only single pods: a gang losing a member is the workload's doing).
        for d in &case.deletions {
            if let Some(k) = all.get(*d % all.len().max(1)) {
                run.sched.handle(ClusterEvent::PodDeleted(k.clone())).expect("delete");
                run.binder.remove(k);
            }
        }
        clock.advance(Duration::from_secs(60));
        step(&mut run)?;
        clock.advance(Duration::from_secs(60));
        step(&mut run)?;
        prop_assert!(run.sched.waiting().is_empty() || run.sched.next_wakeup().is_some());
    }
}
