//! Unit tests of the gang plugin and topology domain choice.

use std::time::Duration;

use coxswain_api::coxswain::{TopologyConstraint, TopologyLevel, TopologyMode};

use super::domain::{Domain, choose, member_capacity};
use super::*;
use crate::scheduler::bench::{NodeTemplate, hollow_node};
use crate::scheduler::model::GangSpec;
use crate::scheduler::snapshot::ClusterEvent;

fn snapshot(nodes: usize) -> ClusterSnapshot {
    let mut s = ClusterSnapshot::new();
    for i in 0..nodes {
        s.apply(ClusterEvent::NodeAdded(hollow_node(
            NodeTemplate::DgxH100,
            i,
            8,
        )))
        .unwrap();
    }
    s
}

fn add_gang(s: &mut ClusterSnapshot, members: usize, gpus: u16) -> Vec<PodInfo> {
    s.apply(ClusterEvent::PodGroupChanged(GangSpec {
        key: "ns/g".into(),
        min_member: members as u32,
        timeout: Duration::from_secs(5),
        topology: None,
        seq: 0,
        queue: None,
    }))
    .unwrap();
    (0..members)
        .map(|i| {
            let mut p = PodInfo::new(&format!("ns/g-{i}"), 1000, 0, gpus);
            p.group = Some("ns/g".into());
            s.apply(ClusterEvent::PodAdded(p.clone())).unwrap();
            p
        })
        .collect()
}

#[test]
fn member_capacity_counts_gpus_and_cpu() {
    let n = hollow_node(NodeTemplate::DgxH100, 0, 8);
    assert_eq!(member_capacity(&PodInfo::new("a", 1000, 0, 2), &n), 4);
    assert_eq!(member_capacity(&PodInfo::new("a", 100_000, 0, 1), &n), 2);
    let mut share = PodInfo::new("a", 0, 0, 0);
    share.gpu_milli = 300;
    assert_eq!(member_capacity(&share, &n), 24);
}

#[test]
fn chooses_the_narrowest_level_with_room() {
    let s = snapshot(64);
    let pod = PodInfo::new("a", 0, 0, 8);
    // One member: a single node. 10 members: a switch (16 nodes). 20: a rack (32).
    assert!(matches!(
        choose(&s, &pod, 1, None, "Gang"),
        Ok(Some(Domain::Node(_)))
    ));
    assert!(matches!(
        choose(&s, &pod, 10, None, "Gang"),
        Ok(Some(Domain::Level { slot: 2, .. }))
    ));
    assert!(matches!(
        choose(&s, &pod, 20, None, "Gang"),
        Ok(Some(Domain::Level { slot: 1, .. }))
    ));
    assert!(choose(&s, &pod, 65, None, "Gang").is_err());
    let rack_required = TopologyConstraint {
        level: TopologyLevel::Rack,
        mode: TopologyMode::Required,
    };
    assert!(choose(&s, &pod, 40, Some(&rack_required), "Gang").is_err());
    let rack_preferred = TopologyConstraint {
        level: TopologyLevel::Rack,
        mode: TopologyMode::Preferred,
    };
    assert_eq!(
        choose(&s, &pod, 40, Some(&rack_preferred), "Gang"),
        Ok(None)
    );
}

#[test]
fn pre_filter_waits_for_members_and_confines_to_the_domain() {
    let mut s = snapshot(64);
    let members = add_gang(&mut s, 4, 8);
    let gang = Gang::default();
    let mut state = CycleState::new();
    let result = gang.pre_filter(&s, &mut state, &members[0]).unwrap();
    assert_eq!(result.nodes.map(|n| n.len()), Some(16), "one switch");
    assert!(state.can_relax());
    // A group with too few pods waits, unresolvably.
    let mut lone = PodInfo::new("ns/x", 0, 0, 1);
    lone.group = Some("ns/g2".into());
    s.apply(ClusterEvent::PodGroupChanged(GangSpec {
        key: "ns/g2".into(),
        min_member: 2,
        timeout: Duration::from_secs(5),
        topology: None,
        seq: 1,
        queue: None,
    }))
    .unwrap();
    s.apply(ClusterEvent::PodAdded(lone.clone())).unwrap();
    let err = gang
        .pre_filter(&s, &mut CycleState::new(), &lone)
        .unwrap_err();
    assert_eq!(
        err.code,
        crate::scheduler::Code::UnschedulableAndUnresolvable
    );
}

#[test]
fn permit_waits_until_min_member_are_placed_then_allows_all() {
    let mut s = snapshot(4);
    let members = add_gang(&mut s, 2, 8);
    let gang = Gang::default();
    let mut waiting = WaitingPods::default();
    s.assume(&members[0].key, "node-00000", vec![]).unwrap();
    let d = gang.permit(&s, &members[0], "node-00000", &mut waiting);
    assert_eq!(d, PermitDecision::Wait(Duration::from_secs(5)));
    waiting.add(
        members[0].key.clone(),
        "node-00000".into(),
        members[0].group.clone(),
        Duration::from_secs(5),
        vec!["Gang"],
    );
    s.assume(&members[1].key, "node-00001", vec![]).unwrap();
    assert_eq!(
        gang.permit(&s, &members[1], "node-00001", &mut waiting),
        PermitDecision::Allow
    );
    assert_eq!(waiting.take_allowed().len(), 1);
}

#[test]
fn post_filter_rejects_waiting_members() {
    let mut s = snapshot(2);
    let members = add_gang(&mut s, 3, 8);
    let gang = Gang::default();
    let mut waiting = WaitingPods::default();
    waiting.add(
        members[0].key.clone(),
        "node-00000".into(),
        members[0].group.clone(),
        Duration::from_secs(5),
        vec!["Gang"],
    );
    let filter = |_: &NodeInfo| Status::success();
    let r = gang.post_filter(
        &s,
        &members[2],
        &Diagnosis::default(),
        &mut waiting,
        &filter,
    );
    assert!(r.is_err());
    assert_eq!(waiting.take_rejected().len(), 1);
}
