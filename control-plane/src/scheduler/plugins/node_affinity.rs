//! Filter: `nodeSelector` and required node affinity (OR of terms, AND inside a term).

use super::super::cycle_state::CycleState;
use super::super::framework::{FilterPlugin, Plugin};
use super::super::model::{NodeInfo, PodInfo, Requirement, RequirementOp};
use super::super::snapshot::{ClusterSnapshot, EventMask};
use super::super::status::Status;

/// Rejects nodes whose labels the pod's selector or required affinity do not match.
#[derive(Debug, Default)]
pub struct NodeAffinity;

/// Whether `node`'s labels satisfy `req`.
pub fn requirement_matches(req: &Requirement, node: &NodeInfo) -> bool {
    let value = node.labels.get(&req.key);
    match req.op {
        RequirementOp::In => value.is_some_and(|v| req.values.contains(v)),
        RequirementOp::NotIn => value.is_none_or(|v| !req.values.contains(v)),
        RequirementOp::Exists => value.is_some(),
        RequirementOp::DoesNotExist => value.is_none(),
    }
}

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn cured_by(&self) -> EventMask {
        EventMask::NODE_ADDED.union(EventMask::NODE_UPDATED)
    }
}

impl FilterPlugin for NodeAffinity {
    fn filter(
        &self,
        _: &ClusterSnapshot,
        _: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        for (k, v) in &pod.node_selector {
            if node.labels.get(k) != Some(v) {
                return Status::unresolvable(
                    self.name(),
                    format!("node(s) didn't match Pod's node selector {k}={v}"),
                );
            }
        }
        if pod.affinity.is_empty()
            || pod
                .affinity
                .iter()
                .any(|term| term.iter().all(|r| requirement_matches(r, node)))
        {
            Status::success()
        } else {
            Status::unresolvable(self.name(), "node(s) didn't match Pod's node affinity")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::model::Resources;

    #[test]
    fn selector_and_affinity_terms() {
        let mut node = NodeInfo::new("n", Resources::new(1, 1, 1), vec![]);
        node.labels.insert("zone".into(), "a".into());
        let (snap, state) = (ClusterSnapshot::new(), CycleState::new());
        let mut pod = PodInfo::new("ns/p", 0, 0, 0);
        pod.node_selector.insert("zone".into(), "b".into());
        assert!(
            NodeAffinity
                .filter(&snap, &state, &pod, &node)
                .is_rejected()
        );
        pod.node_selector.insert("zone".into(), "a".into());
        assert!(NodeAffinity.filter(&snap, &state, &pod, &node).is_success());
        let req = |key: &str, op, values: &[&str]| Requirement {
            key: key.into(),
            op,
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        pod.affinity = vec![
            vec![req("zone", RequirementOp::NotIn, &["a"])],
            vec![
                req("zone", RequirementOp::In, &["a", "c"]),
                req("gpu", RequirementOp::DoesNotExist, &[]),
            ],
        ];
        assert!(NodeAffinity.filter(&snap, &state, &pod, &node).is_success());
        node.labels.insert("gpu".into(), "h100".into());
        assert!(
            NodeAffinity
                .filter(&snap, &state, &pod, &node)
                .is_rejected()
        );
        pod.affinity = vec![vec![req("gpu", RequirementOp::Exists, &[])]];
        assert!(NodeAffinity.filter(&snap, &state, &pod, &node).is_success());
    }
}
