//! The recent workload distribution FGD measures fragmentation against: the shapes
//! (GPUs per pod, milli per GPU) of the last pods placed, with their frequencies.

use std::collections::{HashMap, VecDeque};

/// A GPU pod shape: `gpus` devices with `milli` free each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shape {
    /// Devices needed.
    pub gpus: u16,
    /// Thousandths needed on each device.
    pub milli: u16,
}

/// A sliding window of recent pod shapes.
#[derive(Debug, Clone)]
pub struct Distribution {
    window: VecDeque<Shape>,
    capacity: usize,
    since_refresh: usize,
    /// Shapes and their weights (summing to 1), refreshed every so often.
    pub types: Vec<(Shape, f64)>,
    /// Bumped on each refresh; memoised fragmentation is keyed by it.
    pub version: u64,
}

impl Distribution {
    /// A window of `capacity` shapes, starting from a prior of common shapes.
    pub fn new(capacity: usize) -> Self {
        let mut d = Distribution {
            window: VecDeque::with_capacity(capacity),
            capacity: capacity.max(1),
            since_refresh: 0,
            types: Vec::new(),
            version: 0,
        };
        for (gpus, milli) in [(1, 1000), (2, 1000), (4, 1000), (8, 1000), (1, 500)] {
            d.window.push_back(Shape { gpus, milli });
        }
        d.refresh();
        d
    }

    /// Records a placed pod's shape; refreshes the weights every 1/8 window.
    pub fn record(&mut self, shape: Shape) {
        if self.window.len() == self.capacity {
            self.window.pop_front();
        }
        self.window.push_back(shape);
        self.since_refresh += 1;
        if self.since_refresh >= (self.capacity / 8).max(1) {
            self.refresh();
        }
    }

    fn refresh(&mut self) {
        let mut counts: HashMap<Shape, usize> = HashMap::new();
        for s in &self.window {
            *counts.entry(*s).or_default() += 1;
        }
        let total = self.window.len().max(1) as f64;
        let mut types: Vec<(Shape, f64)> = counts
            .into_iter()
            .map(|(s, c)| (s, c as f64 / total))
            .collect();
        types.sort_by_key(|(s, _)| *s);
        self.types = types;
        self.since_refresh = 0;
        self.version += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_follow_recent_shapes() {
        let mut d = Distribution::new(16);
        let v0 = d.version;
        assert!((d.types.iter().map(|(_, w)| w).sum::<f64>() - 1.0).abs() < 1e-9);
        for _ in 0..16 {
            d.record(Shape {
                gpus: 1,
                milli: 250,
            });
        }
        assert!(d.version > v0);
        assert_eq!(
            d.types,
            vec![(
                Shape {
                    gpus: 1,
                    milli: 250
                },
                1.0
            )]
        );
    }
}
