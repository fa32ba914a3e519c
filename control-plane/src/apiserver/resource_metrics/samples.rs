//! The agents' `/metrics/resource` scrapes: parsing kubelet's text, keeping the last two
//! scrapes of every node, and the CPU rate between them (metrics-server's way: usage is
//! the difference of two cumulative samples over the time between their timestamps).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::RwLock;

use coxswain_api::prometheus_text::{self, Sample};

pub use coxswain_api::prometheus_text::ParseError;

/// One cumulative CPU sample and the working set read with it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Cumulative CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Working set, in bytes.
    pub memory_bytes: u64,
    /// When the agent took the sample, in milliseconds since the epoch.
    pub timestamp_ms: i64,
}

/// Everything one scrape of a node's `/metrics/resource` reported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    /// The node as a whole, when reported.
    pub node: Option<Point>,
    /// Per `(namespace, pod)`: its containers by name.
    pub pods: BTreeMap<(String, String), BTreeMap<String, Point>>,
}

/// Usage over a window: the CPU rate and the latest working set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// CPU in nanocores (1e9 = one core busy).
    pub nanocores: u64,
    /// Working set at the end of the window, in bytes.
    pub memory_bytes: u64,
    /// The end of the window, in milliseconds since the epoch.
    pub timestamp_ms: i64,
    /// The window's length, in milliseconds.
    pub window_ms: i64,
}

/// The usage between two samples of one series; `None` when they are not in order or the
/// counter went back (a restarted container).
pub fn rate(older: Point, newer: Point) -> Option<Usage> {
    let window_ms = newer.timestamp_ms - older.timestamp_ms;
    let used = newer.cpu_seconds - older.cpu_seconds;
    if window_ms <= 0 || used < 0.0 {
        return None;
    }
    Some(Usage {
        nanocores: (used * 1e9 * 1000.0 / window_ms as f64).round() as u64,
        memory_bytes: newer.memory_bytes,
        timestamp_ms: newer.timestamp_ms,
        window_ms,
    })
}

/// A container's series while a scrape is read: `(namespace, pod, container)` to its CPU
/// seconds, working set and timestamp.
type ContainerSeries = BTreeMap<(String, String, String), (Option<f64>, Option<u64>, i64)>;

/// Reads kubelet's `/metrics/resource` text; samples without a timestamp get `now_ms`.
pub fn parse(text: &str, now_ms: i64) -> Result<Scrape, ParseError> {
    let mut scrape = Scrape::default();
    let mut node = (None, None, now_ms);
    let mut containers = ContainerSeries::new();
    for sample in prometheus_text::parse(text)? {
        let Sample {
            name,
            value,
            timestamp_ms: timestamp,
            ..
        } = &sample;
        let value = *value;
        let timestamp = timestamp.unwrap_or(now_ms);
        let label = |key: &str| sample.label(key).unwrap_or_default().to_string();
        match name.as_str() {
            "node_cpu_usage_seconds_total" => node = (Some(value), node.1, timestamp),
            "node_memory_working_set_bytes" => node.1 = Some(value as u64),
            "container_cpu_usage_seconds_total" | "container_memory_working_set_bytes" => {
                let key = (label("namespace"), label("pod"), label("container"));
                let entry = containers.entry(key).or_insert((None, None, timestamp));
                if name.starts_with("container_cpu") {
                    *entry = (Some(value), entry.1, timestamp);
                } else {
                    entry.1 = Some(value as u64);
                }
            }
            _ => {}
        }
    }
    if let (Some(cpu_seconds), memory, timestamp_ms) = node {
        scrape.node = Some(Point {
            cpu_seconds,
            memory_bytes: memory.unwrap_or(0),
            timestamp_ms,
        });
    }
    for ((namespace, pod, container), (cpu, memory, timestamp_ms)) in containers {
        if let Some(cpu_seconds) = cpu {
            scrape.pods.entry((namespace, pod)).or_default().insert(
                container,
                Point {
                    cpu_seconds,
                    memory_bytes: memory.unwrap_or(0),
                    timestamp_ms,
                },
            );
        }
    }
    Ok(scrape)
}

/// The last two scrapes of every node, filled by the scraper and read by the API.
#[derive(Debug, Default)]
pub struct ScrapeCache {
    nodes: RwLock<HashMap<String, VecDeque<Scrape>>>,
}

/// A pod's usage: each container's.
pub type PodUsage = Vec<(String, Usage)>;

impl ScrapeCache {
    /// Records `scrape` as the newest of `node`, dropping the one before the last.
    pub fn record(&self, node: &str, scrape: Scrape) {
        let mut nodes = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        let scrapes = nodes.entry(node.to_string()).or_default();
        scrapes.push_back(scrape);
        while scrapes.len() > 2 {
            scrapes.pop_front();
        }
    }

    /// Forgets every node but `keep`.
    pub fn retain(&self, keep: &[String]) {
        let mut nodes = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        nodes.retain(|name, _| keep.contains(name));
    }

    fn pair<T>(&self, node: &str, read: impl Fn(&Scrape, &Scrape) -> T) -> Option<T> {
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        match nodes.get(node)?.as_slices() {
            ([older, newer], []) | ([older], [newer]) | ([], [older, newer]) => {
                Some(read(older, newer))
            }
            _ => None,
        }
    }

    /// The nodes with a usage, by name.
    pub fn nodes(&self) -> BTreeMap<String, Usage> {
        let names: Vec<String> = {
            let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
            nodes.keys().cloned().collect()
        };
        names
            .into_iter()
            .filter_map(|name| {
                let usage = self.node(&name)?;
                Some((name, usage))
            })
            .collect()
    }

    /// The usage of node `name`, once two scrapes of it exist.
    pub fn node(&self, name: &str) -> Option<Usage> {
        self.pair(name, |older, newer| rate(older.node?, newer.node?))
            .flatten()
    }

    /// Every pod with a usage (in `namespace` when given), by `(namespace, name)`.
    pub fn pods(&self, namespace: Option<&str>) -> BTreeMap<(String, String), PodUsage> {
        let nodes: Vec<String> = {
            let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
            nodes.keys().cloned().collect()
        };
        let mut pods = BTreeMap::new();
        for node in nodes {
            let found = self.pair(&node, |older, newer| {
                let mut found = Vec::new();
                for (key, containers) in &newer.pods {
                    if namespace.is_some_and(|ns| ns != key.0) {
                        continue;
                    }
                    let Some(before) = older.pods.get(key) else {
                        continue;
                    };
                    let usage: PodUsage = containers
                        .iter()
                        .filter_map(|(name, point)| {
                            Some((name.clone(), rate(*before.get(name)?, *point)?))
                        })
                        .collect();
                    if !usage.is_empty() {
                        found.push((key.clone(), usage));
                    }
                }
                found
            });
            pods.extend(found.into_iter().flatten());
        }
        pods
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(node_cpu: f64, container_cpu: f64, ts: i64) -> String {
        format!(
            "# HELP node_cpu_usage_seconds_total x\n\
             # TYPE node_cpu_usage_seconds_total counter\n\
             node_cpu_usage_seconds_total {node_cpu} {ts}\n\
             node_memory_working_set_bytes 2048 {ts}\n\
             container_cpu_usage_seconds_total{{container=\"main\",namespace=\"ml\",pod=\"a\\\"b\"}} {container_cpu} {ts}\n\
             container_memory_working_set_bytes{{container=\"main\",namespace=\"ml\",pod=\"a\\\"b\"}} 1024 {ts}\n\
             scrape_error 0\n"
        )
    }

    #[test]
    fn parses_kubelets_text_with_escaped_labels_and_timestamps() {
        let scrape = parse(&text(10.0, 2.0, 1000), 5).unwrap();
        assert_eq!(
            scrape.node,
            Some(Point {
                cpu_seconds: 10.0,
                memory_bytes: 2048,
                timestamp_ms: 1000
            })
        );
        let pod = &scrape.pods[&("ml".to_string(), "a\"b".to_string())];
        assert_eq!(pod["main"].cpu_seconds, 2.0);
        assert_eq!(pod["main"].memory_bytes, 1024);
        let error = parse("node_cpu_usage_seconds_total{x=\"1} 3\n", 0).unwrap_err();
        assert_eq!(error.line, 1, "{error}");
        assert!(parse("node_cpu_usage_seconds_total abc\n", 0).is_err());
    }

    #[test]
    fn usage_is_the_rate_between_the_last_two_scrapes() {
        let cache = ScrapeCache::default();
        cache.record("n1", parse(&text(10.0, 2.0, 1000), 0).unwrap());
        assert_eq!(cache.node("n1"), None, "one scrape gives no rate");
        assert!(cache.pods(None).is_empty());
        cache.record("n1", parse(&text(11.0, 2.5, 3000), 0).unwrap());
        let node = cache.node("n1").unwrap();
        assert_eq!(node.nanocores, 500_000_000);
        assert_eq!((node.window_ms, node.timestamp_ms), (2000, 3000));
        let pods = cache.pods(Some("ml"));
        let usage = &pods[&("ml".to_string(), "a\"b".to_string())];
        assert_eq!(usage[0].0, "main");
        assert_eq!(usage[0].1.nanocores, 250_000_000);
        assert_eq!(usage[0].1.memory_bytes, 1024);
        assert!(cache.pods(Some("other")).is_empty());
        // A third scrape replaces the oldest.
        cache.record("n1", parse(&text(14.0, 2.5, 4000), 0).unwrap());
        assert_eq!(cache.node("n1").unwrap().nanocores, 3_000_000_000);
        cache.retain(&[]);
        assert!(cache.nodes().is_empty());
    }

    #[test]
    fn a_counter_that_went_back_has_no_rate() {
        let at = |cpu, ts| Point {
            cpu_seconds: cpu,
            memory_bytes: 0,
            timestamp_ms: ts,
        };
        assert_eq!(rate(at(5.0, 0), at(1.0, 1000)), None);
        assert_eq!(rate(at(1.0, 1000), at(2.0, 1000)), None);
    }
}
