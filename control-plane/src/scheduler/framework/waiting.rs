//! Pods reserved on a node and held at Permit (gang members waiting for their gang).

use std::collections::HashMap;
use std::time::Duration;

use super::super::model::PodKey;
use super::super::status::Status;

/// One pod held at Permit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingPod {
    /// The pod.
    pub pod: PodKey,
    /// Its reserved node.
    pub node: String,
    /// Its gang, if any.
    pub group: Option<PodKey>,
    /// When it is rejected if not yet allowed.
    pub deadline: Duration,
    pending: Vec<&'static str>,
}

/// Every pod held at Permit, and the verdicts given to them since the last drain.
#[derive(Debug, Default)]
pub struct WaitingPods {
    pods: HashMap<PodKey, WaitingPod>,
    allowed: Vec<WaitingPod>,
    rejected: Vec<(WaitingPod, Status)>,
}

impl WaitingPods {
    /// Holds `pod` on `node` until every plugin in `pending` allows it or `deadline`.
    pub fn add(
        &mut self,
        pod: PodKey,
        node: String,
        group: Option<PodKey>,
        deadline: Duration,
        pending: Vec<&'static str>,
    ) {
        let w = WaitingPod {
            pod: pod.clone(),
            node,
            group,
            deadline,
            pending,
        };
        self.pods.insert(pod, w);
    }

    /// Plugin `plugin` allows `pod`; it is released once no plugin holds it.
    pub fn allow(&mut self, plugin: &'static str, pod: &str) {
        let Some(w) = self.pods.get_mut(pod) else {
            return;
        };
        w.pending.retain(|p| *p != plugin);
        if w.pending.is_empty()
            && let Some(w) = self.pods.remove(pod)
        {
            self.allowed.push(w);
        }
    }

    /// Rejects `pod`: its reservation will be released.
    pub fn reject(&mut self, pod: &str, status: Status) {
        if let Some(w) = self.pods.remove(pod) {
            self.rejected.push((w, status));
        }
    }

    /// Waiting members of gang `group`.
    pub fn group_members(&self, group: &str) -> Vec<PodKey> {
        self.pods
            .values()
            .filter(|w| w.group.as_deref() == Some(group))
            .map(|w| w.pod.clone())
            .collect()
    }

    /// Whether `pod` is held.
    pub fn contains(&self, pod: &str) -> bool {
        self.pods.contains_key(pod)
    }

    /// Pods held now.
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    /// Whether no pod is held.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// Rejects every pod whose deadline passed; a timed-out gang member takes its
    /// whole gang with it (all or nothing).
    pub fn expire(&mut self, now: Duration, plugin: &'static str) {
        let late: Vec<(PodKey, Option<PodKey>)> = self
            .pods
            .values()
            .filter(|w| w.deadline <= now)
            .map(|w| (w.pod.clone(), w.group.clone()))
            .collect();
        for (pod, group) in late {
            let reason = "timed out waiting at Permit for the rest of the gang";
            if let Some(g) = group {
                for member in self.group_members(&g) {
                    self.reject(&member, Status::unschedulable(plugin, reason));
                }
            }
            self.reject(&pod, Status::unschedulable(plugin, reason));
        }
    }

    /// Earliest deadline of a held pod.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.pods.values().map(|w| w.deadline).min()
    }

    /// Pods allowed since the last call, to bind.
    pub fn take_allowed(&mut self) -> Vec<WaitingPod> {
        std::mem::take(&mut self.allowed)
    }

    /// Pods rejected since the last call, to unreserve.
    pub fn take_rejected(&mut self) -> Vec<(WaitingPod, Status)> {
        std::mem::take(&mut self.rejected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_when_every_plugin_allows_and_expire_whole_gang() {
        let mut w = WaitingPods::default();
        let g: PodKey = "ns/g".into();
        w.add(
            "ns/a".into(),
            "n0".into(),
            Some(g.clone()),
            Duration::from_secs(5),
            vec!["Gang", "X"],
        );
        w.add(
            "ns/b".into(),
            "n1".into(),
            Some(g.clone()),
            Duration::from_secs(9),
            vec!["Gang"],
        );
        w.allow("Gang", "ns/a");
        assert!(w.take_allowed().is_empty());
        w.allow("X", "ns/a");
        assert_eq!(w.take_allowed().len(), 1);
        w.add(
            "ns/a".into(),
            "n0".into(),
            Some(g),
            Duration::from_secs(5),
            vec!["Gang"],
        );
        assert_eq!(w.next_deadline(), Some(Duration::from_secs(5)));
        w.expire(Duration::from_secs(4), "Gang");
        assert_eq!(w.len(), 2);
        w.expire(Duration::from_secs(5), "Gang");
        assert!(w.is_empty());
        assert_eq!(w.take_rejected().len(), 2);
    }
}
