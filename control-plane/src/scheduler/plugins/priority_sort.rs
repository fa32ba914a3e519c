//! QueueSort: pods of higher-priority `Queue`s first, then higher pod priority; then
//! earlier gangs (or pods) first, with a gang's members kept together so a gang is
//! attempted as a block.

use std::cmp::Reverse;

use super::super::framework::{Plugin, QueueSortPlugin};
use super::super::model::PodInfo;
use super::super::queue::QueueKey;
use super::super::snapshot::ClusterSnapshot;

/// Orders pods by priority, then gang (or pod) age.
#[derive(Debug, Default)]
pub struct PrioritySort;

impl Plugin for PrioritySort {
    fn name(&self) -> &'static str {
        "PrioritySort"
    }
}

impl QueueSortPlugin for PrioritySort {
    fn sort_key(&self, snapshot: &ClusterSnapshot, pod: &PodInfo) -> QueueKey {
        let group_seq = pod
            .group
            .as_deref()
            .and_then(|g| snapshot.group(g))
            .and_then(|g| g.spec.as_ref())
            .map(|s| s.seq);
        QueueKey {
            queue_priority: Reverse(snapshot.queue_of(pod).map_or(0, |q| q.priority)),
            priority: Reverse(pod.priority),
            seq: group_seq.unwrap_or(pod.seq),
            group: pod.group.clone(),
            pod_seq: pod.seq,
            pod: pod.key.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::model::GangSpec;
    use crate::scheduler::snapshot::ClusterEvent;
    use std::time::Duration;

    #[test]
    fn gang_members_sort_together_by_gang_age() {
        let mut snap = ClusterSnapshot::new();
        snap.apply(ClusterEvent::PodGroupChanged(GangSpec {
            key: "ns/g".into(),
            min_member: 2,
            timeout: Duration::from_secs(1),
            topology: None,
            seq: 1,
            queue: None,
        }))
        .unwrap();
        let mut a = PodInfo::new("ns/a", 0, 0, 0);
        a.seq = 5;
        a.group = Some("ns/g".into());
        let mut b = PodInfo::new("ns/b", 0, 0, 0);
        b.seq = 3;
        let mut c = PodInfo::new("ns/c", 0, 0, 0);
        c.priority = 1;
        c.seq = 9;
        let s = PrioritySort;
        let (ka, kb, kc) = (
            s.sort_key(&snap, &a),
            s.sort_key(&snap, &b),
            s.sort_key(&snap, &c),
        );
        assert!(kc < ka && ka < kb);
    }
}
