//! Pods on real runc and crun: run to completion with logs, restart back-off,
//! OOM kills, cgroup limits, init container order, shared namespaces.

mod common;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use common::{Harness, RUNTIMES, containers, drive, phase, pod, remove, uid};
use coxswain_node_agent::logs::{Stream, read_lines};

#[test]
fn pod_runs_to_succeeded_with_output_in_the_log() {
    for kind in RUNTIMES {
        let h = Harness::new(kind);
        let uid = uid();
        let spec = serde_json::json!({"restartPolicy": "Never", "containers": [{
            "name": "main", "image": "busybox",
            "command": ["sh", "-c", "echo hello from $(hostname) $HOSTNAME; echo oops >&2"],
        }]});
        let mut w = h.worker(pod(&uid, spec));
        let status = drive(&mut w, |s| phase(s) == "Succeeded" || phase(s) == "Failed");
        assert_eq!(phase(&status), "Succeeded", "{kind:?}: {status:#?}");
        let term = containers(&status)[0]
            .state
            .clone()
            .unwrap()
            .terminated
            .unwrap();
        assert_eq!(
            (term.exit_code, term.reason.as_deref()),
            (0, Some("Completed"))
        );
        let log =
            std::fs::read_to_string(h.deps.config.pod_dir(&uid).join("logs/main/0.log")).unwrap();
        let lines = read_lines(&log);
        assert!(
            lines.contains(&(Stream::Stdout, "hello from it it".to_string())),
            "{kind:?}: {log}"
        );
        assert!(
            lines.contains(&(Stream::Stderr, "oops".to_string())),
            "{kind:?}: {log}"
        );
        remove(&mut w, &h.clock);
    }
}

#[test]
fn failing_container_restarts_with_crash_loop_back_off() {
    for kind in RUNTIMES {
        let h = Harness::new(kind);
        let spec = serde_json::json!({"restartPolicy": "Always", "containers": [{
            "name": "main", "image": "busybox", "command": ["sh", "-c", "exit 3"],
        }]});
        let mut w = h.worker(pod(&uid(), spec));
        let waiting = |s: &k8s_openapi::api::core::v1::PodStatus| {
            containers(s)[0]
                .state
                .clone()
                .unwrap()
                .waiting
                .and_then(|w| w.reason)
                .as_deref()
                == Some("CrashLoopBackOff")
        };
        let status = drive(&mut w, waiting);
        let cs = &containers(&status)[0];
        assert_eq!(cs.restart_count, 0);
        assert_eq!(
            cs.last_state.clone().unwrap().terminated.unwrap().exit_code,
            3,
            "{kind:?}"
        );
        h.clock.advance(Duration::from_secs(10));
        let status = drive(&mut w, |s| {
            containers(s)[0].restart_count == 1 && waiting(s)
        });
        let msg = containers(&status)[0]
            .state
            .clone()
            .unwrap()
            .waiting
            .unwrap()
            .message
            .unwrap();
        assert!(msg.starts_with("back-off 20s"), "{kind:?}: {msg}");
        remove(&mut w, &h.clock);
    }
}

#[test]
fn container_over_its_memory_limit_is_oom_killed() {
    for kind in RUNTIMES {
        let h = Harness::new(kind);
        let spec = serde_json::json!({"restartPolicy": "Never", "containers": [{
            "name": "hog", "image": "busybox",
            "command": ["sh", "-c", "a=$(head -c 100000000 /dev/zero | tr '\\0' x); echo survived ${#a}"],
            "resources": {"limits": {"memory": "32Mi"}},
        }]});
        let mut w = h.worker(pod(&uid(), spec));
        let status = drive(&mut w, |s| phase(s) == "Succeeded" || phase(s) == "Failed");
        let term = containers(&status)[0]
            .state
            .clone()
            .unwrap()
            .terminated
            .unwrap();
        assert_eq!(
            term.reason.as_deref(),
            Some("OOMKilled"),
            "{kind:?}: {term:?}"
        );
        assert_eq!(phase(&status), "Failed");
        remove(&mut w, &h.clock);
    }
}

#[test]
fn cpu_quota_and_pids_limit_are_in_the_cgroup() {
    for kind in RUNTIMES {
        let h = Harness::new(kind);
        let uid = uid();
        let spec = serde_json::json!({"containers": [{
            "name": "main", "image": "busybox", "command": ["sleep", "300"],
            "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}},
        }]});
        let mut w = h.worker(pod(&uid, spec));
        drive(&mut w, |s| phase(s) == "Running");
        let usage = w.usage().expect("pod cgroup usage");
        assert!(usage.memory_bytes > 0, "{kind:?}: {usage:?}");
        let cg = h.deps.sandbox.cgroups();
        let path = h.pod_cgroup(None, &uid); // Guaranteed
        let container = format!("{path}/{uid}_main");
        match cg.version() {
            coxswain_node_agent::sandbox::CgroupVersion::V1 => {
                assert_eq!(
                    cg.read(&path, "cpu", "cpu.cfs_quota_us").unwrap().trim(),
                    "50000"
                );
                assert_eq!(cg.read(&path, "pids", "pids.max").unwrap().trim(), "4096");
                assert_eq!(
                    cg.read(&path, "memory", "memory.limit_in_bytes")
                        .unwrap()
                        .trim(),
                    (64u64 << 20).to_string()
                );
                assert_eq!(
                    cg.read(&container, "cpu", "cpu.cfs_quota_us")
                        .unwrap()
                        .trim(),
                    "50000",
                    "{kind:?}"
                );
            }
            coxswain_node_agent::sandbox::CgroupVersion::V2 => {
                assert_eq!(
                    cg.read(&path, "cpu", "cpu.max").unwrap().trim(),
                    "50000 100000"
                );
                assert_eq!(cg.read(&path, "pids", "pids.max").unwrap().trim(), "4096");
            }
        }
        remove(&mut w, &h.clock);
    }
}

#[test]
fn init_containers_run_first_in_order() {
    for kind in RUNTIMES {
        let h = Harness::new(kind);
        let uid = uid();
        let step = |name: &str| {
            serde_json::json!({
                "name": name, "image": "busybox", "command": ["sh", "-c", format!("echo {name} >> /work/order")],
                "volumeMounts": [{"name": "work", "mountPath": "/work"}],
            })
        };
        let spec = serde_json::json!({
            "restartPolicy": "Never",
            "volumes": [{"name": "work", "emptyDir": {}}],
            "initContainers": [step("first"), step("second")],
            "containers": [{
                "name": "main", "image": "busybox", "command": ["cat", "/work/order"],
                "volumeMounts": [{"name": "work", "mountPath": "/work"}],
            }],
        });
        let mut w = h.worker(pod(&uid, spec));
        let status = drive(&mut w, |s| phase(s) == "Succeeded" || phase(s) == "Failed");
        assert_eq!(phase(&status), "Succeeded", "{kind:?}: {status:#?}");
        let log =
            std::fs::read_to_string(h.deps.config.pod_dir(&uid).join("logs/main/0.log")).unwrap();
        let lines: Vec<String> = read_lines(&log).into_iter().map(|(_, l)| l).collect();
        assert_eq!(lines, ["first", "second"], "{kind:?}");
        remove(&mut w, &h.clock);
    }
}

#[test]
fn containers_of_a_pod_share_its_namespaces_under_seccomp() {
    for kind in RUNTIMES {
        let h = Harness::new(kind);
        let uid = uid();
        let c = |n: &str| serde_json::json!({"name": n, "image": "busybox", "command": ["sleep", "300"]});
        let mut w = h.worker(pod(
            &uid,
            serde_json::json!({"containers": [c("a"), c("b")]}),
        ));
        drive(&mut w, |s| containers(s).iter().all(|c| c.ready));
        let pids: Vec<u32> = w
            .containers()
            .map(|c| match c.current {
                coxswain_node_agent::worker::Current::Running { pid: Some(pid), .. } => pid,
                ref other => panic!("{other:?}"),
            })
            .collect();
        for (ns, dir) in [("net", "netns"), ("ipc", "ipcns"), ("uts", "utsns")] {
            let pod_ns = std::fs::metadata(h.deps.config.root.join(dir).join(&uid))
                .unwrap()
                .ino();
            for pid in &pids {
                let ino = std::fs::metadata(format!("/proc/{pid}/ns/{ns}"))
                    .unwrap()
                    .ino();
                assert_eq!(ino, pod_ns, "{kind:?}: {ns} namespace of pid {pid}");
            }
        }
        // Seccomp filter mode and no_new_privs are on (both runtimes are built with seccomp here).
        assert!(h.deps.runtime.supports_seccomp(), "{kind:?}");
        let proc_status = std::fs::read_to_string(format!("/proc/{}/status", pids[0])).unwrap();
        assert!(
            proc_status.contains("Seccomp:\t2"),
            "{kind:?}: {proc_status}"
        );
        assert!(
            proc_status.contains("NoNewPrivs:\t1"),
            "{kind:?}: {proc_status}"
        );
        let own = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
        assert_ne!(
            own,
            std::fs::metadata(format!("/proc/{}/ns/net", pids[0]))
                .unwrap()
                .ino()
        );
        remove(&mut w, &h.clock);
    }
}

#[test]
fn bad_pod_specs_give_clear_reasons() {
    for kind in RUNTIMES {
        let h = Harness::new(kind);
        // An image that is not there.
        let spec = serde_json::json!({"containers": [{"name": "main", "image": "missing:1", "command": ["true"]}]});
        let mut w = h.worker(pod(&uid(), spec));
        let status = drive(&mut w, |s| {
            containers(s)[0]
                .state
                .clone()
                .unwrap()
                .waiting
                .is_some_and(|w| w.reason.as_deref() == Some("ErrImagePull"))
        });
        assert_eq!(phase(&status), "Pending");
        remove(&mut w, &h.clock);
        // A command that does not exist.
        let spec = serde_json::json!({"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox", "command": ["/no/such/binary"]}]});
        let mut w = h.worker(pod(&uid(), spec));
        let status = drive(&mut w, |s| phase(s) == "Failed" || phase(s) == "Succeeded");
        let term = containers(&status)[0]
            .state
            .clone()
            .unwrap()
            .terminated
            .unwrap();
        assert_ne!(term.exit_code, 0, "{kind:?}: {term:?}");
        assert!(
            matches!(term.reason.as_deref(), Some("StartError" | "Error")),
            "{kind:?}: {term:?}"
        );
        remove(&mut w, &h.clock);
        // A hostPath the agent does not allow.
        let spec = serde_json::json!({
            "volumes": [{"name": "etc", "hostPath": {"path": "/etc"}}],
            "containers": [{"name": "main", "image": "busybox", "command": ["true"]}],
        });
        let mut w = h.worker(pod(&uid(), spec));
        let status = drive(&mut w, |s| s.reason.is_some());
        assert_eq!(status.reason.as_deref(), Some("VolumeSetupError"));
        assert!(status.message.unwrap().contains("/etc is not allowed"));
        remove(&mut w, &h.clock);
        assert_eq!(h.leftovers(), Vec::<String>::new(), "{kind:?}");
    }
}

#[test]
fn host_image_runs_on_the_host_root_with_a_private_writable_layer() {
    for kind in RUNTIMES {
        let h = Harness::new(kind);
        let uid = uid();
        let marker = format!("/var/tmp/cox-host-image-{uid}");
        let spec = serde_json::json!({"restartPolicy": "Never", "containers": [{
            "name": "main", "image": "host",
            "command": ["/bin/sh", "-c", format!("test -x /bin/busybox && echo written > {marker} && cat {marker}")],
        }]});
        let mut w = h.worker(pod(&uid, spec));
        let status = drive(&mut w, |s| phase(s) == "Succeeded" || phase(s) == "Failed");
        assert_eq!(phase(&status), "Succeeded", "{kind:?}: {status:#?}");
        let log =
            std::fs::read_to_string(h.deps.config.pod_dir(&uid).join("logs/main/0.log")).unwrap();
        assert_eq!(
            read_lines(&log),
            [(Stream::Stdout, "written".to_string())],
            "{kind:?}"
        );
        assert!(
            !std::path::Path::new(&marker).exists(),
            "{kind:?}: the write reached the host"
        );
        remove(&mut w, &h.clock);
    }
}

/// The interface names in a `/proc/net/dev` text.
fn interfaces(net_dev: &str) -> std::collections::BTreeSet<String> {
    net_dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split_once(':'))
        .map(|(name, _)| name.trim().to_string())
        .collect()
}

#[test]
fn host_network_pods_share_the_nodes_network_and_hostname() {
    let host_interfaces = interfaces(&std::fs::read_to_string("/proc/net/dev").unwrap());
    let host_name = nix::unistd::gethostname()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(host_interfaces.len() > 1, "{host_interfaces:?}");
    for kind in RUNTIMES {
        let h = Harness::new(kind);
        let uid = uid();
        let spec = serde_json::json!({"restartPolicy": "Never", "hostNetwork": true, "containers": [{
            "name": "main", "image": "busybox",
            "command": ["sh", "-c", "hostname; cat /proc/net/dev"],
        }]});
        let mut w = h.worker(pod(&uid, spec));
        let status = drive(&mut w, |s| phase(s) == "Succeeded" || phase(s) == "Failed");
        assert_eq!(phase(&status), "Succeeded", "{kind:?}: {status:#?}");
        let log =
            std::fs::read_to_string(h.deps.config.pod_dir(&uid).join("logs/main/0.log")).unwrap();
        let lines: Vec<String> = read_lines(&log).into_iter().map(|(_, l)| l).collect();
        assert_eq!(lines[0], host_name, "{kind:?}: the node's hostname");
        let seen = interfaces(&lines[1..].join("\n"));
        // The host's interfaces, not a private namespace's lone `lo` (the host may gain
        // or lose a veth meanwhile, so compare the long-lived ones).
        let stable: Vec<&String> = host_interfaces
            .iter()
            .filter(|i| !i.starts_with("veth") && !i.starts_with("cox"))
            .collect();
        for name in stable {
            assert!(
                seen.contains(name),
                "{kind:?}: {name} missing from {seen:?}"
            );
        }
        remove(&mut w, &h.clock);
    }
}
