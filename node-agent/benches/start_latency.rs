//! Pod start latency on this machine, runc vs crun: from a new pod worker's first
//! step (sandbox, volumes, rootfs, OCI spec, `create`, `start`) until the runtime
//! runs the container, p50/p99, for 1 pod at a time and 20 pods at once.
//! The runtime's part alone (`create` called → `start` returned: spec written, shim,
//! `runc create`, `runc start`) is timed by wrapping the runtime.
//! Run as root: `cargo bench -p coxswain-node-agent --bench start_latency`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use common::{Harness, RUNTIMES, pod, remove, uid};
use coxswain_node_agent::runtime::{ContainerRuntime, ContainerState, CreateRequest, RuntimeError};
use coxswain_node_agent::worker::{Action, PodWorker};

/// Times each container from `create` called to `start` returned.
struct TimedRuntime {
    inner: Arc<dyn ContainerRuntime>,
    began: Mutex<HashMap<String, Instant>>,
    samples: Mutex<Vec<Duration>>,
}

impl ContainerRuntime for TimedRuntime {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn create(&self, request: &CreateRequest) -> Result<u32, RuntimeError> {
        self.began
            .lock()
            .unwrap()
            .insert(request.id.clone(), Instant::now());
        self.inner.create(request)
    }
    fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.inner.start(id)?;
        if let Some(t0) = self.began.lock().unwrap().remove(id) {
            self.samples.lock().unwrap().push(t0.elapsed());
        }
        Ok(())
    }
    fn state(&self, id: &str) -> Result<Option<ContainerState>, RuntimeError> {
        self.inner.state(id)
    }
    fn kill(&self, id: &str, signal: i32) -> Result<(), RuntimeError> {
        self.inner.kill(id, signal)
    }
    fn delete(&self, id: &str) -> Result<(), RuntimeError> {
        self.inner.delete(id)
    }
    fn list(&self) -> Result<Vec<String>, RuntimeError> {
        self.inner.list()
    }
}

fn spec() -> serde_json::Value {
    serde_json::json!({"containers": [{
        "name": "main", "image": "busybox", "command": ["sleep", "300"],
        "resources": {"limits": {"cpu": "100m", "memory": "32Mi"}},
    }]})
}

/// Steps `w` until its container runs; returns the elapsed time.
fn start(w: &mut PodWorker) -> Duration {
    let t0 = Instant::now();
    loop {
        let action = w.step();
        if w.containers().all(|c| c.is_running()) {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "pod never started: {:#?}",
            w.status()
        );
        if action != Action::Requeue(Duration::ZERO) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn report(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label:<30} n={:<3} p50={:>7.1} ms  p99={:>7.1} ms  max={:>7.1} ms",
        samples.len(),
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.99)),
        ms(*samples.last().unwrap())
    );
}

fn main() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    for kind in RUNTIMES {
        let mut h = Harness::new(kind);
        let timed = Arc::new(TimedRuntime {
            inner: h.deps.runtime.clone(),
            began: Mutex::default(),
            samples: Mutex::default(),
        });
        h.deps.runtime = timed.clone();
        // One pod at a time.
        let mut single = Vec::new();
        for _ in 0..rounds * 10 {
            let mut w = h.worker(pod(&uid(), spec()));
            single.push(start(&mut w));
            remove(&mut w, &h.clock);
        }
        report(&format!("{} 1 pod", kind.as_str()), single);
        let runtime_only = std::mem::take(&mut *timed.samples.lock().unwrap());
        report(
            &format!("{} 1 pod, runtime only", kind.as_str()),
            runtime_only,
        );
        // Twenty pods at once, one thread per worker.
        let mut burst = Vec::new();
        for _ in 0..rounds {
            let barrier = Arc::new(Barrier::new(20));
            let threads: Vec<_> = (0..20)
                .map(|_| {
                    let (b, mut w) = (barrier.clone(), h.worker(pod(&uid(), spec())));
                    std::thread::spawn(move || {
                        b.wait();
                        let took = start(&mut w);
                        (took, w)
                    })
                })
                .collect();
            let mut workers = Vec::new();
            for t in threads {
                let (took, w) = t.join().unwrap();
                burst.push(took);
                workers.push(w);
            }
            for w in &mut workers {
                remove(w, &h.clock);
            }
        }
        report(&format!("{} 20 pods at once", kind.as_str()), burst);
        let runtime_only = std::mem::take(&mut *timed.samples.lock().unwrap());
        report(
            &format!("{} 20 pods, runtime only", kind.as_str()),
            runtime_only,
        );
        assert!(h.leftovers().is_empty(), "{:?}", h.leftovers());
    }
}
