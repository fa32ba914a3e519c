//! Unit tests of the scheduling queue.

use std::cmp::Reverse;
use std::time::Duration;

use super::*;

fn key(pod: &str, priority: i32, seq: u64) -> QueueKey {
    QueueKey {
        queue_priority: Reverse(0),
        priority: Reverse(priority),
        seq,
        group: None,
        pod_seq: seq,
        pod: pod.into(),
    }
}

fn queue() -> SchedulingQueue {
    SchedulingQueue::new(Backoff::default(), Duration::from_secs(300))
}

#[test]
fn pops_by_priority_then_age() {
    let mut q = queue();
    q.add(key("a", 0, 1));
    q.add(key("b", 10, 2));
    q.add(key("c", 0, 0));
    let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|(k, _)| k.to_string())).collect();
    assert_eq!(order, ["b", "c", "a"]);
}

#[test]
fn unschedulable_waits_for_a_matching_event_then_backs_off() {
    let mut q = queue();
    q.add(key("a", 0, 1));
    let (pod, attempt) = q.pop().unwrap();
    assert_eq!(attempt, 1);
    q.add_unschedulable(&pod, EventMask::POD_DELETED, Duration::ZERO);
    assert!(q.is_unschedulable("a"));
    q.on_event(EventMask::POD_GROUP_CHANGED, Duration::ZERO);
    assert_eq!(q.unschedulable_len(), 1);
    q.on_event(EventMask::POD_DELETED, Duration::ZERO);
    assert_eq!(q.backoff_len(), 1);
    assert_eq!(q.next_backoff_expiry(), Some(Duration::from_secs(1)));
    q.flush(Duration::from_millis(999));
    assert_eq!(q.active_len(), 0);
    q.flush(Duration::from_secs(1));
    assert_eq!(
        q.pop().map(|(k, a)| (k.to_string(), a)),
        Some(("a".into(), 2))
    );
}

#[test]
fn an_event_during_the_attempt_sends_the_pod_to_backoff() {
    let mut q = queue();
    q.add(key("a", 0, 1));
    let (pod, _) = q.pop().unwrap();
    q.on_event(EventMask::NODE_ADDED, Duration::ZERO);
    q.add_unschedulable(&pod, EventMask::POD_DELETED, Duration::ZERO);
    assert_eq!(q.unschedulable_len(), 0);
    assert_eq!(q.backoff_len(), 1);
}

#[test]
fn stale_unschedulable_pods_are_retried_and_deleted_pods_vanish() {
    let mut q = queue();
    q.add(key("a", 0, 1));
    q.add(key("b", 0, 2));
    let (a, _) = q.pop().unwrap();
    q.add_unschedulable(&a, EventMask::POD_DELETED, Duration::ZERO);
    q.delete("b");
    assert!(!q.contains("b"));
    q.flush(Duration::from_secs(301));
    assert_eq!(q.active_len(), 1);
    // Backoff grows with attempts.
    let (a, attempt) = q.pop().unwrap();
    assert_eq!(attempt, 2);
    q.add_backoff(&a, Duration::from_secs(301));
    assert_eq!(q.next_backoff_expiry(), Some(Duration::from_secs(303)));
}
