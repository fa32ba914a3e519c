//! Filter: cordoned nodes (`spec.unschedulable`) take no new pods, unless the pod
//! tolerates `node.kubernetes.io/unschedulable:NoSchedule`.

use super::super::cycle_state::CycleState;
use super::super::framework::{FilterPlugin, Plugin};
use super::super::model::{NodeInfo, PodInfo, TaintEffect, TolerationOp};
use super::super::snapshot::{ClusterSnapshot, EventMask};
use super::super::status::Status;

/// The taint key kube uses for cordoned nodes.
pub const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// Rejects cordoned nodes.
#[derive(Debug, Default)]
pub struct NodeUnschedulable;

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }

    fn cured_by(&self) -> EventMask {
        EventMask::NODE_ADDED.union(EventMask::NODE_UPDATED)
    }
}

impl FilterPlugin for NodeUnschedulable {
    fn filter(
        &self,
        _: &ClusterSnapshot,
        _: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        if !node.unschedulable {
            return Status::success();
        }
        let tolerated = pod.tolerations.iter().any(|t| {
            (t.key == UNSCHEDULABLE_TAINT || (t.key.is_empty() && t.op == TolerationOp::Exists))
                && t.effect.is_none_or(|e| e == TaintEffect::NoSchedule)
        });
        if tolerated {
            Status::success()
        } else {
            Status::unresolvable(self.name(), "node(s) were unschedulable")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::model::{Resources, Toleration};

    #[test]
    fn cordoned_nodes_reject_unless_tolerated() {
        let mut node = NodeInfo::new("n", Resources::new(1, 1, 1), vec![]);
        let mut pod = PodInfo::new("ns/p", 0, 0, 0);
        let (snap, state) = (ClusterSnapshot::new(), CycleState::new());
        let p = NodeUnschedulable;
        assert!(p.filter(&snap, &state, &pod, &node).is_success());
        node.unschedulable = true;
        assert!(p.filter(&snap, &state, &pod, &node).is_rejected());
        pod.tolerations.push(Toleration {
            key: UNSCHEDULABLE_TAINT.into(),
            op: TolerationOp::Exists,
            value: String::new(),
            effect: Some(TaintEffect::NoSchedule),
        });
        assert!(p.filter(&snap, &state, &pod, &node).is_success());
    }
}
