//! Filter: a node's `NoSchedule`/`NoExecute` taints keep off pods that do not tolerate them.

use super::super::cycle_state::CycleState;
use super::super::framework::{FilterPlugin, Plugin};
use super::super::model::{NodeInfo, PodInfo, Taint, TaintEffect, Toleration, TolerationOp};
use super::super::snapshot::{ClusterSnapshot, EventMask};
use super::super::status::Status;

/// Rejects nodes with an untolerated hard taint.
#[derive(Debug, Default)]
pub struct TaintToleration;

/// Whether `t` tolerates `taint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect.is_some_and(|e| e != taint.effect) {
        return false;
    }
    match t.op {
        TolerationOp::Exists => t.key.is_empty() || t.key == taint.key,
        TolerationOp::Equal => t.key == taint.key && t.value == taint.value,
    }
}

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    fn cured_by(&self) -> EventMask {
        EventMask::NODE_ADDED.union(EventMask::NODE_UPDATED)
    }
}

impl FilterPlugin for TaintToleration {
    fn filter(
        &self,
        _: &ClusterSnapshot,
        _: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        let untolerated = node.taints.iter().find(|taint| {
            taint.effect != TaintEffect::PreferNoSchedule
                && !pod.tolerations.iter().any(|t| tolerates(t, taint))
        });
        match untolerated {
            None => Status::success(),
            Some(t) => Status::unresolvable(
                self.name(),
                format!(
                    "node(s) had untolerated taint {{{}: {}}} ({:?})",
                    t.key, t.value, t.effect
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::model::Resources;

    #[test]
    fn hard_taints_need_a_toleration() {
        let mut node = NodeInfo::new("n", Resources::new(1, 1, 1), vec![]);
        node.taints.push(Taint {
            key: "gpu".into(),
            value: "h100".into(),
            effect: TaintEffect::NoSchedule,
        });
        node.taints.push(Taint {
            key: "soft".into(),
            value: String::new(),
            effect: TaintEffect::PreferNoSchedule,
        });
        let (snap, state) = (ClusterSnapshot::new(), CycleState::new());
        let mut pod = PodInfo::new("ns/p", 0, 0, 0);
        assert!(
            TaintToleration
                .filter(&snap, &state, &pod, &node)
                .is_rejected()
        );
        pod.tolerations.push(Toleration {
            key: "gpu".into(),
            op: TolerationOp::Equal,
            value: "a100".into(),
            effect: None,
        });
        assert!(
            TaintToleration
                .filter(&snap, &state, &pod, &node)
                .is_rejected()
        );
        pod.tolerations[0].value = "h100".into();
        assert!(
            TaintToleration
                .filter(&snap, &state, &pod, &node)
                .is_success()
        );
        pod.tolerations[0] = Toleration {
            key: String::new(),
            op: TolerationOp::Exists,
            value: String::new(),
            effect: Some(TaintEffect::NoExecute),
        };
        assert!(
            TaintToleration
                .filter(&snap, &state, &pod, &node)
                .is_rejected()
        );
    }
}
