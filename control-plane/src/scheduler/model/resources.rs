//! Countable node resources: cpu, memory, pods and extended resources.
//!
//! GPUs are not counted here: they are allocated device by device (see
//! [`super::GpuDevice`]), so the fit plugin never double-counts them.

/// An amount of each countable resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU in thousandths of a core.
    pub cpu_milli: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Pod slots.
    pub pods: i64,
    /// Extended resources (`example.com/foo`), by name; GPU resources excluded.
    pub extended: Vec<(String, i64)>,
}

impl Resources {
    /// Resources of `cpu_milli`, `memory` bytes and `pods` slots, no extended resources.
    pub fn new(cpu_milli: i64, memory: i64, pods: i64) -> Self {
        Resources {
            cpu_milli,
            memory,
            pods,
            extended: Vec::new(),
        }
    }

    /// This amount of extended resource `name` (0 when absent).
    pub fn extended(&self, name: &str) -> i64 {
        self.extended
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    }

    /// Sets extended resource `name` to `value`.
    pub fn set_extended(&mut self, name: &str, value: i64) {
        match self.extended.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = value,
            None => self.extended.push((name.to_string(), value)),
        }
    }

    /// Adds `other` to this amount.
    pub fn add(&mut self, other: &Resources) {
        self.cpu_milli += other.cpu_milli;
        self.memory += other.memory;
        self.pods += other.pods;
        for (name, v) in &other.extended {
            let cur = self.extended(name);
            self.set_extended(name, cur + v);
        }
    }

    /// Subtracts `other` from this amount.
    pub fn sub(&mut self, other: &Resources) {
        self.cpu_milli -= other.cpu_milli;
        self.memory -= other.memory;
        self.pods -= other.pods;
        for (name, v) in &other.extended {
            let cur = self.extended(name);
            self.set_extended(name, cur - v);
        }
    }

    /// The first resource for which `used + self` exceeds `allocatable`, if any.
    pub fn first_shortage(&self, used: &Resources, allocatable: &Resources) -> Option<String> {
        if used.pods + self.pods.max(1) > allocatable.pods {
            return Some("pods".to_string());
        }
        if self.cpu_milli > 0 && used.cpu_milli + self.cpu_milli > allocatable.cpu_milli {
            return Some("cpu".to_string());
        }
        if self.memory > 0 && used.memory + self.memory > allocatable.memory {
            return Some("memory".to_string());
        }
        self.extended
            .iter()
            .find(|(name, v)| *v > 0 && used.extended(name) + v > allocatable.extended(name))
            .map(|(name, _)| name.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_sub_and_shortage() {
        let alloc = {
            let mut r = Resources::new(4000, 1 << 30, 10);
            r.set_extended("example.com/foo", 2);
            r
        };
        let mut used = Resources::new(3000, 0, 1);
        let mut req = Resources::new(500, 1 << 20, 1);
        assert_eq!(req.first_shortage(&used, &alloc), None);
        req.set_extended("example.com/foo", 3);
        assert_eq!(
            req.first_shortage(&used, &alloc).as_deref(),
            Some("example.com/foo")
        );
        used.add(&Resources::new(1000, 0, 0));
        assert_eq!(req.first_shortage(&used, &alloc).as_deref(), Some("cpu"));
        used.sub(&Resources::new(1000, 0, 0));
        assert_eq!(used, Resources::new(3000, 0, 1));
    }
}
