//! Queue defaults.

use crate::coxswain::Queue;

/// Fills a queue's defaults: weight 1, priority 0, reclaimable.
pub fn default_queue(queue: &mut Queue) {
    queue.spec.weight.get_or_insert(1);
    queue.spec.priority.get_or_insert(0);
    queue.spec.reclaimable.get_or_insert(true);
}
