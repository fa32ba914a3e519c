//! Filter: the node has room for the pod's cpu, memory, a pod slot and extended
//! resources (GPUs are checked device by device by the GPU plugin).

use super::super::cycle_state::CycleState;
use super::super::framework::{FilterPlugin, Plugin};
use super::super::model::{NodeInfo, PodInfo, Resources};
use super::super::snapshot::ClusterSnapshot;
use super::super::status::{Code, Status};

/// Rejects nodes without room for the pod's requests.
#[derive(Debug, Default)]
pub struct NodeResourcesFit;

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }
}

impl FilterPlugin for NodeResourcesFit {
    fn filter(
        &self,
        _: &ClusterSnapshot,
        _: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        match pod
            .requests
            .first_shortage(&node.requested, &node.allocatable)
        {
            None => Status::success(),
            Some(name) => {
                let reason: std::borrow::Cow<'static, str> = match name.as_str() {
                    "cpu" => "Insufficient cpu".into(),
                    "memory" => "Insufficient memory".into(),
                    "pods" => "Too many pods".into(),
                    other => format!("Insufficient {other}").into(),
                };
                let mut s = Status::unschedulable(self.name(), reason);
                // Asking more than the whole node has cannot be cured by preemption.
                let empty = Resources::default();
                if pod
                    .requests
                    .first_shortage(&empty, &node.allocatable)
                    .is_some()
                {
                    s.code = Code::UnschedulableAndUnresolvable;
                }
                s
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_when_full_and_unresolvable_when_too_big() {
        let mut node = NodeInfo::new("n", Resources::new(4000, 1 << 30, 2), vec![]);
        let (snap, state) = (ClusterSnapshot::new(), CycleState::new());
        let pod = PodInfo::new("ns/p", 3000, 1 << 20, 0);
        assert!(
            NodeResourcesFit
                .filter(&snap, &state, &pod, &node)
                .is_success()
        );
        node.add_pod(&"ns/q".into(), &Resources::new(2000, 0, 0), &[]);
        let s = NodeResourcesFit.filter(&snap, &state, &pod, &node);
        assert_eq!(
            (s.code, s.reason.as_ref()),
            (Code::Unschedulable, "Insufficient cpu")
        );
        let huge = PodInfo::new("ns/h", 8000, 0, 0);
        let s = NodeResourcesFit.filter(&snap, &state, &huge, &node);
        assert_eq!(s.code, Code::UnschedulableAndUnresolvable);
        let mut ext = PodInfo::new("ns/e", 0, 0, 0);
        ext.requests.set_extended("example.com/nic", 1);
        assert!(
            NodeResourcesFit
                .filter(&snap, &state, &ext, &node)
                .is_rejected()
        );
    }
}
