//! Test fixtures for the real-plugin tests: network namespaces the test owns
//! (deleted on drop, even when the test fails), and a plugin directory whose
//! entries run Debian's real plugins inside the test's own "host" namespace,
//! so bridges, veth host ends and iptables rules never touch the machine.

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Where Debian installs the plugins.
pub const SYSTEM_CNI_DIR: &str = "/usr/lib/cni";

/// Fails (never skips) when the machine cannot run the real plugins.
pub fn require_root_and_plugins() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
        });
    assert_eq!(
        uid.as_deref(),
        Some("0"),
        "the real-plugin CNI tests need root (network namespaces, bridges): run scripts/setup.sh as root, then the tests as root"
    );
    for plugin in ["bridge", "host-local", "portmap", "loopback"] {
        let path = Path::new(SYSTEM_CNI_DIR).join(plugin);
        assert!(
            path.exists(),
            "{} is missing: run scripts/setup.sh as root (installs containernetworking-plugins)",
            path.display()
        );
    }
    assert!(
        run_ok("ip", &["-V"]),
        "iproute2 (`ip`) is missing: run scripts/setup.sh as root"
    );
}

/// A name unique to this process and call, e.g. `cox-cni-test-1a2b3c-4`.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{prefix}{:x}{:x}{n}",
        std::process::id() & 0xfff,
        nanos & 0xfff
    )
}

/// A small pseudo-random number from the clock, for picking test subnets.
pub fn small_random(modulo: u32) -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos ^ std::process::id()) % modulo
}

/// A network namespace created by the test and deleted on drop.
pub struct Netns {
    /// Its name under /var/run/netns.
    pub name: String,
}

impl Netns {
    /// Creates `name`.
    pub fn create(name: String) -> Netns {
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("running ip netns add");
        assert!(
            out.status.success(),
            "ip netns add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Netns { name }
    }

    /// The path plugins get as CNI_NETNS.
    pub fn path(&self) -> PathBuf {
        Path::new("/var/run/netns").join(&self.name)
    }

    /// Runs a command inside the namespace and returns (success, stdout+stderr).
    pub fn exec(&self, args: &[&str]) -> (bool, String) {
        let mut full = vec!["netns", "exec", &self.name];
        full.extend_from_slice(args);
        let out = Command::new("ip")
            .args(&full)
            .output()
            .expect("running ip netns exec");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Writes into `dir` one wrapper per real plugin that execs it inside the
/// namespace `host` (so CNI_PATH = `dir` keeps delegated IPAM there too).
pub fn wrap_plugins_in_netns(dir: &Path, host: &Netns, plugins: &[&str]) {
    std::fs::create_dir_all(dir).expect("creating the wrapper dir");
    for plugin in plugins {
        let path = dir.join(plugin);
        let script = format!(
            "#!/bin/sh\nexec ip netns exec {} {SYSTEM_CNI_DIR}/{plugin}\n",
            host.name
        );
        std::fs::write(&path, script).expect("writing a plugin wrapper");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("chmod wrapper");
    }
}

/// Whether a command ran and exited 0.
pub fn run_ok(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The IP-named reservation files host-local keeps for `network` in `data_dir`.
pub fn host_local_reservations(data_dir: &Path, network: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(data_dir.join(network)) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.parse::<std::net::IpAddr>().is_ok())
        .collect()
}
