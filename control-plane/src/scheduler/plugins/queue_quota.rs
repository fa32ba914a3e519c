//! QueueQuota (PreFilter): a pod of a `Queue` with quotas is admitted only while the
//! queue's placed and reserved pods plus this one stay within each quota: the `nominal`
//! amount plus what the queue may borrow — the idle nominal quota of the other queues of
//! its cohort, capped by `borrowingLimit`. Gang members are reserved one at a time, so a
//! gang that exceeds its quota fails at the member that crosses it and releases the rest
//! (all or nothing holds). Pods without a queue, or of a queue not (yet) seen, are not
//! limited.
//!
//! Usage is summed over the snapshot's placed pods on each attempt of a queued pod: linear
//! in the pods, only for pods whose queue has quotas.

use std::collections::HashMap;

use super::super::cycle_state::CycleState;
use super::super::framework::{Plugin, PreFilterPlugin, PreFilterResult};
use super::super::model::{PodInfo, QueueInfo, demand};
use super::super::snapshot::{ClusterSnapshot, EventMask};
use super::super::status::Status;

const NAME: &str = "QueueQuota";

/// Enforces queue quotas with cohort borrowing.
#[derive(Debug, Default)]
pub struct QueueQuota;

impl Plugin for QueueQuota {
    fn name(&self) -> &'static str {
        NAME
    }

    fn cured_by(&self) -> EventMask {
        EventMask::POD_DELETED.union(EventMask::POLICY_CHANGED)
    }
}

/// Per queue, per quota resource: what its placed (or reserved) pods hold.
fn usage(snapshot: &ClusterSnapshot) -> HashMap<&str, HashMap<&str, i64>> {
    let mut used: HashMap<&str, HashMap<&str, i64>> = HashMap::new();
    for pod in snapshot.pods().filter(|p| p.node.is_some()) {
        let Some(queue) = snapshot.queue_of(pod) else {
            continue;
        };
        let entry = used.entry(queue.name.as_str()).or_default();
        for resource in queue.quotas.keys() {
            *entry.entry(resource.as_str()).or_default() += demand(pod, resource);
        }
    }
    used
}

fn used_of(used: &HashMap<&str, HashMap<&str, i64>>, queue: &str, resource: &str) -> i64 {
    used.get(queue)
        .and_then(|u| u.get(resource))
        .copied()
        .unwrap_or(0)
}

/// How much of `resource` `queue` may hold in total now.
fn limit(
    snapshot: &ClusterSnapshot,
    used: &HashMap<&str, HashMap<&str, i64>>,
    queue: &QueueInfo,
    resource: &str,
) -> i64 {
    let Some(quota) = queue.quotas.get(resource) else {
        return i64::MAX;
    };
    let Some(cohort) = queue.cohort.as_deref() else {
        return quota.nominal;
    };
    let idle: i64 = snapshot
        .queues()
        .filter(|q| q.name != queue.name && q.cohort.as_deref() == Some(cohort))
        .filter_map(|q| {
            let nominal = q.quotas.get(resource)?.nominal;
            Some((nominal - used_of(used, &q.name, resource)).max(0))
        })
        .sum();
    let borrow = quota.borrowing_limit.map_or(idle, |b| b.min(idle));
    quota.nominal.saturating_add(borrow)
}

impl PreFilterPlugin for QueueQuota {
    fn pre_filter(
        &self,
        snapshot: &ClusterSnapshot,
        _: &mut CycleState,
        pod: &PodInfo,
    ) -> Result<PreFilterResult, Status> {
        let Some(queue) = snapshot.queue_of(pod).filter(|q| !q.quotas.is_empty()) else {
            return Ok(PreFilterResult::default());
        };
        let used = usage(snapshot);
        for resource in queue.quotas.keys() {
            let want = demand(pod, resource);
            if want == 0 {
                continue;
            }
            let held = used_of(&used, &queue.name, resource);
            let most = limit(snapshot, &used, queue, resource);
            if held.saturating_add(want) > most {
                return Err(Status::unresolvable(
                    NAME,
                    format!(
                        "queue {}: {resource} quota exceeded ({held} in use + {want} requested > {most})",
                        queue.name
                    ),
                ));
            }
        }
        Ok(PreFilterResult::default())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::scheduler::model::{NodeInfo, Quota, Resources};
    use crate::scheduler::snapshot::ClusterEvent;

    fn queue(name: &str, cohort: Option<&str>, gpus: i64, borrow: Option<i64>) -> QueueInfo {
        QueueInfo {
            name: name.into(),
            cohort: cohort.map(String::from),
            quotas: BTreeMap::from([(
                "nvidia.com/gpu".to_string(),
                Quota {
                    nominal: gpus,
                    borrowing_limit: borrow,
                },
            )]),
            ..QueueInfo::default()
        }
    }

    fn pod(key: &str, queue: &str, gpus: u16, node: Option<&str>) -> PodInfo {
        let mut p = PodInfo::new(key, 100, 0, gpus);
        p.queue = Some(queue.into());
        p.node = node.map(String::from);
        p
    }

    fn check(snap: &ClusterSnapshot, p: &PodInfo) -> Result<PreFilterResult, Status> {
        QueueQuota.pre_filter(snap, &mut CycleState::new(), p)
    }

    #[test]
    fn nominal_quota_then_cohort_borrowing_within_its_limit() {
        let mut snap = ClusterSnapshot::new();
        let node = NodeInfo::new("n", Resources::new(64_000, 1 << 40, 110), Vec::new());
        snap.apply(ClusterEvent::NodeAdded(node)).unwrap();
        snap.apply(ClusterEvent::QueueChanged(queue("a", None, 4, None)))
            .unwrap();
        snap.apply(ClusterEvent::PodAdded(pod("ns/p1", "a", 4, Some("n"))))
            .unwrap();
        let e = check(&snap, &pod("ns/p2", "a", 1, None)).unwrap_err();
        assert_eq!(
            e.reason,
            "queue a: nvidia.com/gpu quota exceeded (4 in use + 1 requested > 4)"
        );
        // In a cohort with an idle queue of 8 GPUs, `a` may borrow up to its limit of 2.
        snap.apply(ClusterEvent::QueueChanged(queue(
            "a",
            Some("c"),
            4,
            Some(2),
        )))
        .unwrap();
        snap.apply(ClusterEvent::QueueChanged(queue("b", Some("c"), 8, None)))
            .unwrap();
        assert!(check(&snap, &pod("ns/p2", "a", 2, None)).is_ok());
        assert!(check(&snap, &pod("ns/p2", "a", 3, None)).is_err());
        // Pods of no queue, and CPU-only pods, are not limited by a GPU quota.
        assert!(check(&snap, &PodInfo::new("ns/free", 100, 0, 8)).is_ok());
        assert!(check(&snap, &pod("ns/cpu", "a", 0, None)).is_ok());
    }
}
