//! What an agent leaves on the host, read the way an operator would: host-local's
//! reservation files, veths on the pod bridge (`ip -o link`), namespace files and
//! nsfs mounts, pod cgroups in every mounted hierarchy, the runtime's containers
//! (`runc --root <state> list`) and mounts under the agent root
//! (`/proc/self/mountinfo`); and a host "reboot" for an agent root.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// host-local's reservations under its `dataDir`: address → owning container id.
pub fn reservations(ipam_dir: &Path) -> BTreeMap<IpAddr, String> {
    let mut out = BTreeMap::new();
    let Ok(networks) = std::fs::read_dir(ipam_dir) else {
        return out;
    };
    for network in networks.flatten().filter(|e| e.path().is_dir()) {
        let Ok(files) = std::fs::read_dir(network.path()) else {
            continue;
        };
        for file in files.flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            let Ok(ip) = name.parse::<IpAddr>() else {
                continue; // last_reserved_ip.0, lock
            };
            let owner = std::fs::read_to_string(file.path()).unwrap_or_default();
            let owner = owner.lines().next().unwrap_or("").trim().to_string();
            out.insert(ip, owner);
        }
    }
    out
}

/// Interfaces enslaved to `bridge` (`ip -o link show master <bridge>`): the pods'
/// host-side veths. Empty when the bridge does not exist.
pub fn bridge_ports(bridge: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show", "master", bridge])
        .output()
        .expect("running ip");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_string())
        .collect()
}

/// Every mount point of `/proc/self/mountinfo` with its filesystem type.
fn mount_table() -> Vec<(PathBuf, String)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|line| {
            let point = line.split(' ').nth(4)?;
            let fstype = line.split(" - ").nth(1)?.split(' ').next()?;
            Some((PathBuf::from(point), fstype.to_string()))
        })
        .collect()
}

/// Mount points under `dir` (deepest first).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = mount_table()
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// Where every cgroup hierarchy (v1 controllers and the unified one) is mounted.
fn cgroup_mounts() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = mount_table()
        .into_iter()
        .filter(|(_, t)| t == "cgroup" || t == "cgroup2")
        .map(|(p, _)| p)
        .collect();
    found.sort();
    found.dedup();
    found
}

/// Every directory below `dir`, deepest first.
fn dirs_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
                out.push(e.path());
            }
        }
    }
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out
}

/// Pod cgroups (`pod<uid>` directories) under `/<cgroup_root>` in every hierarchy:
/// uid → the paths.
pub fn pod_cgroups(cgroup_root: &str) -> BTreeMap<String, Vec<PathBuf>> {
    let mut out: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for mount in cgroup_mounts() {
        for dir in dirs_below(&mount.join(cgroup_root)) {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            if let Some(uid) = name.strip_prefix("pod") {
                out.entry(uid.to_string()).or_default().push(dir);
            }
        }
    }
    out
}

/// Container ids the runtime has state for (`<runtime> --root <state> list -q`).
pub fn runtime_containers(runtime: &str, state: &Path) -> Vec<String> {
    let out = Command::new(runtime)
        .arg("--root")
        .arg(state)
        .args(["list", "-q"])
        .output()
        .expect("running the OCI runtime");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// Names in `dir` (empty when it does not exist).
pub fn names_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// One look at everything an agent at `root` leaves on the host.
#[derive(Debug)]
pub struct NodeState {
    /// host-local reservations: address → container id (the pod uid).
    pub reservations: BTreeMap<IpAddr, String>,
    /// Ports on the pod bridge.
    pub veths: Vec<String>,
    /// Namespace files under `<root>/{netns,ipcns,utsns}`.
    pub namespace_files: BTreeSet<String>,
    /// Pod cgroups by uid.
    pub cgroups: BTreeMap<String, Vec<PathBuf>>,
    /// Containers in the runtime's state.
    pub containers: Vec<String>,
    /// Mount points under the agent root.
    pub mounts: Vec<PathBuf>,
    /// CNI result cache entries.
    pub cni_results: BTreeSet<String>,
    /// Pod directories.
    pub pod_dirs: BTreeSet<String>,
}

impl NodeState {
    /// Reads the state of the agent at `root` (runtime `runtime`, cgroups under
    /// `cgroup_root`, pods on `bridge`, host-local data in `ipam_dir`).
    pub fn read(
        root: &Path,
        runtime: &str,
        cgroup_root: &str,
        bridge: &str,
        ipam_dir: &Path,
    ) -> Self {
        let mut namespace_files = BTreeSet::new();
        for kind in ["netns", "ipcns", "utsns"] {
            namespace_files.extend(
                names_in(&root.join(kind))
                    .into_iter()
                    .map(|n| format!("{kind}/{n}")),
            );
        }
        Self {
            reservations: reservations(ipam_dir),
            veths: bridge_ports(bridge),
            namespace_files,
            cgroups: pod_cgroups(cgroup_root),
            containers: runtime_containers(runtime, &root.join("runtime")),
            mounts: mounts_under(root),
            cni_results: names_in(&root.join("cni/results")),
            pod_dirs: names_in(&root.join("pods")),
        }
    }

    /// Everything that belongs to no pod in `live`, described; plus a mismatch
    /// between the number of veths and of live pods.
    pub fn leaks(&self, live: &BTreeSet<String>) -> Vec<String> {
        let dead = |text: &str| !live.iter().any(|uid| text.contains(uid.as_str()));
        let mut out = Vec::new();
        for (ip, owner) in &self.reservations {
            if !live.contains(owner) {
                out.push(format!("host-local reservation {ip} of {owner}"));
            }
        }
        if self.veths.len() != live.len() {
            out.push(format!(
                "{} veths on the bridge for {} live pods: {:?}",
                self.veths.len(),
                live.len(),
                self.veths
            ));
        }
        for f in self.namespace_files.iter().filter(|f| dead(f)) {
            out.push(format!("namespace file {f}"));
        }
        for (uid, paths) in self.cgroups.iter().filter(|(uid, _)| !live.contains(*uid)) {
            out.push(format!("pod cgroup of {uid}: {paths:?}"));
        }
        for c in self.containers.iter().filter(|c| dead(c)) {
            out.push(format!("runtime state {c}"));
        }
        for m in self.mounts.iter().filter(|m| dead(&m.to_string_lossy())) {
            out.push(format!("mount {}", m.display()));
        }
        for r in self.cni_results.iter().filter(|r| dead(r)) {
            out.push(format!("CNI result {r}"));
        }
        for d in self.pod_dirs.iter().filter(|d| dead(d)) {
            out.push(format!("pod directory {d}"));
        }
        out
    }

    /// The reserved addresses.
    pub fn reserved_ips(&self) -> BTreeSet<IpAddr> {
        self.reservations.keys().copied().collect()
    }
}

/// What a reboot does to an agent's pods, with the agent already dead: every
/// process of the agent root (shims, then the containers in the pod cgroups) is
/// SIGKILLed, every mount under the root goes (namespace bind mounts, overlays,
/// volumes: the pods' network namespaces and their veths with them), the pod
/// cgroups go, and so does the bridge. On-disk state stays: runtime state, CNI
/// results and host-local's reservations, checkpoints, pod directories.
pub fn simulate_reboot(root: &Path, cgroup_root: &str, bridge: &str) {
    let root_text = root.to_string_lossy().into_owned();
    let me = std::process::id();
    // Shims (and any runtime or plugin call) name the root on their command line.
    for pid in all_pids().into_iter().filter(|p| *p != me) {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&root_text) {
            kill9(pid);
        }
    }
    let cgroup_dirs: Vec<PathBuf> = cgroup_mounts()
        .iter()
        .flat_map(|m| {
            let top = m.join(cgroup_root);
            let mut dirs = dirs_below(&top);
            dirs.push(top);
            dirs
        })
        .collect();
    for _ in 0..50 {
        let mut alive = 0;
        for dir in &cgroup_dirs {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
                alive += 1;
                kill9(pid);
            }
        }
        if alive == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for mount in mounts_under(root) {
        let _ = nix::mount::umount2(&mount, nix::mount::MntFlags::MNT_DETACH);
    }
    for dir in &cgroup_dirs {
        let _ = std::fs::remove_dir(dir);
    }
    let _ = Command::new("ip").args(["link", "del", bridge]).status();
}

fn all_pids() -> Vec<u32> {
    names_in(Path::new("/proc"))
        .into_iter()
        .filter_map(|n| n.parse().ok())
        .collect()
}

fn kill9(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}
