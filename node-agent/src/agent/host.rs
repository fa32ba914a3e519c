//! What the agent reports about its machine in the Node object: CPUs, memory,
//! kernel, OS image, runtime version, machine and boot ids, the node's IP.
//! Reading is separate from parsing, so the parsers are unit-tested on fixtures.

use std::net::IpAddr;
use std::process::Command;

use crate::runtime::oci_cli::find_binary;

/// Facts about this machine, read once at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// The machine's hostname.
    pub hostname: String,
    /// Logical CPUs available to the agent.
    pub cpus: usize,
    /// `MemTotal` of `/proc/meminfo`, in bytes.
    pub memory_bytes: u64,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel_version: String,
    /// `PRETTY_NAME` of `/etc/os-release`.
    pub os_image: String,
    /// `<runtime>://<version>`, e.g. `runc://1.1.5`.
    pub runtime_version: String,
    /// `/etc/machine-id`, when readable.
    pub machine_id: String,
    /// `/proc/sys/kernel/random/boot_id`, when readable.
    pub boot_id: String,
    /// The node's InternalIP: the one asked for, else the first non-loopback IPv4.
    pub internal_ip: Option<IpAddr>,
}

impl HostFacts {
    /// Reads this machine's facts; `runtime` is the OCI runtime's name (`runc`, `crun`),
    /// `node_ip` the address the operator chose, if any.
    pub fn read(runtime: &str, node_ip: Option<IpAddr>) -> Self {
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        let version_output = find_binary(runtime)
            .and_then(|binary| Command::new(binary).arg("--version").output().ok())
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_default();
        Self {
            hostname: nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_bytes: mem_total(&read("/proc/meminfo")).unwrap_or(0),
            kernel_version: read("/proc/sys/kernel/osrelease"),
            os_image: pretty_name(&read("/etc/os-release")).unwrap_or_else(|| "Linux".into()),
            runtime_version: runtime_version(runtime, &version_output),
            machine_id: read("/etc/machine-id"),
            boot_id: read("/proc/sys/kernel/random/boot_id"),
            internal_ip: node_ip.or_else(first_non_loopback_ipv4),
        }
    }
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
pub fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `PRETTY_NAME` of an `/etc/os-release` text, unquoted.
pub fn pretty_name(os_release: &str) -> Option<String> {
    let value = os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))?;
    Some(
        value
            .trim()
            .trim_matches('"')
            .trim_matches('\'')
            .to_string(),
    )
}

/// `runc://1.1.5` from `runc --version`'s first line (`runc version 1.1.5`).
pub fn runtime_version(runtime: &str, version_output: &str) -> String {
    let version = version_output
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().last())
        .unwrap_or("unknown");
    format!("{runtime}://{version}")
}

/// The architecture as Kubernetes (Go) names it: `amd64`, `arm64`, ...
pub fn kubernetes_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The first IPv4 address of an interface that is up and not loopback.
fn first_non_loopback_ipv4() -> Option<IpAddr> {
    let addrs = nix::ifaddrs::getifaddrs().ok()?;
    let mut found: Vec<(String, IpAddr)> = addrs
        .filter(|a| {
            a.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP)
                && !a
                    .flags
                    .contains(nix::net::if_::InterfaceFlags::IFF_LOOPBACK)
        })
        .filter_map(|a| {
            let ip = a.address?.as_sockaddr_in()?.ip();
            Some((a.interface_name, IpAddr::V4(ip)))
        })
        .filter(|(_, ip)| !ip.is_loopback())
        .collect();
    // A stable choice: interfaces in name order (eth0 before veth…), as listed otherwise.
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found.into_iter().map(|(_, ip)| ip).next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_meminfo_os_release_and_runtime_versions() {
        let meminfo = "MemTotal:       16314540 kB\nMemFree:         1000 kB\n";
        assert_eq!(mem_total(meminfo), Some(16_314_540 * 1024));
        assert_eq!(mem_total("nothing"), None);
        let os = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(
            pretty_name(os).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(
            runtime_version("runc", "runc version 1.1.5\ncommit: v1.1.5\nspec: 1.0.2\n"),
            "runc://1.1.5"
        );
        assert_eq!(
            runtime_version("crun", "crun version 1.8.1\ncommit: abc\n"),
            "crun://1.8.1"
        );
        assert_eq!(runtime_version("fake", ""), "fake://unknown");
    }
}
