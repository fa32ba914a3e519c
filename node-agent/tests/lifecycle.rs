//! Agent restarts and leaks on real runc and crun: a new agent instance re-adopts
//! running containers with the same PIDs; create/delete cycles leave nothing behind.

mod common;

use common::{Harness, RUNTIMES, containers, drive, phase, pod, remove, uid};
use coxswain_node_agent::volumes::PodData;
use coxswain_node_agent::worker::{Current, PodWorker};

fn pids(w: &PodWorker) -> Vec<Option<u32>> {
    w.containers()
        .map(|c| match c.current {
            Current::Running { pid, .. } => pid,
            _ => None,
        })
        .collect()
}

#[test]
fn a_new_agent_re_adopts_running_containers_with_the_same_pids() {
    for kind in RUNTIMES {
        let h = Harness::new(kind);
        let uid = uid();
        let spec = serde_json::json!({
            "initContainers": [{"name": "init", "image": "busybox", "command": ["true"]}],
            "containers": [
                {"name": "a", "image": "busybox", "command": ["sleep", "300"]},
                {"name": "b", "image": "busybox", "command": ["sleep", "300"]},
            ],
        });
        let mut first = h.worker(pod(&uid, spec.clone()));
        drive(&mut first, |s| containers(s).iter().all(|c| c.ready));
        let before = pids(&first);
        assert!(before[1..].iter().all(Option::is_some), "{before:?}");
        // The agent "dies": worker and every agent object dropped without cleanup.
        drop(first);
        let deps = h.restart_agent();
        let mut second = PodWorker::new(deps, pod(&uid, spec), PodData::default());
        let status = drive(&mut second, |s| containers(s).iter().all(|c| c.ready));
        assert_eq!(pids(&second), before, "{kind:?}: containers were restarted");
        assert!(containers(&status).iter().all(|c| c.restart_count == 0));
        assert_eq!(phase(&status), "Running");
        remove(&mut second, &h.clock);
        assert_eq!(h.leftovers(), Vec::<String>::new(), "{kind:?}");
    }
}

#[test]
fn create_delete_cycles_leave_nothing_behind() {
    // COX_AGENT_CYCLES=100 for the long run.
    let cycles: usize = std::env::var("COX_AGENT_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(10);
    for kind in RUNTIMES {
        let h = Harness::new(kind);
        for cycle in 0..cycles {
            let spec = serde_json::json!({
                "volumes": [{"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}],
                "containers": [{
                    "name": "main", "image": "busybox", "command": ["sleep", "300"],
                    "volumeMounts": [{"name": "mem", "mountPath": "/mem"}],
                    "resources": {"requests": {"cpu": "100m"}},
                }],
            });
            let mut w = h.worker(pod(&uid(), spec));
            drive(&mut w, |s| phase(s) == "Running");
            if cycle % 3 == 2 {
                // Every third pod is abandoned by a "killed" agent and found by listing.
                drop(w);
                let removed = coxswain_node_agent::worker::remove_orphans(
                    &h.restart_agent(),
                    &Default::default(),
                )
                .unwrap();
                assert_eq!(removed.len(), 1, "{kind:?}");
            } else {
                remove(&mut w, &h.clock);
            }
        }
        assert_eq!(h.leftovers(), Vec::<String>::new(), "{kind:?}");
        if kind == coxswain_node_agent::runtime::RuntimeKind::Runc {
            let out = std::process::Command::new("runc")
                .arg("--root")
                .arg(h.deps.config.runtime_state_dir())
                .args(["list", "-q"])
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "", "runc list");
        }
    }
}
