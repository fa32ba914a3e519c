//! The OCI runtime spec of one container, built with `oci-spec`: process (args, env,
//! cwd, user, rlimits, capabilities and no_new_privileges from [`super::security`]), the
//! standard Linux mounts plus volume mounts, masked and read-only /proc paths, the
//! pod's namespaces joined by path, the container cgroup below the pod cgroup (its
//! device rules deny every device; the device stage allows the allocated ones), and
//! the default seccomp profile. A privileged container gets every capability, an
//! unmasked /proc, writable /sys, every device and no seccomp profile, as containerd
//! gives it. A working directory that is not absolute and clean, or under /proc, is
//! refused here, whatever asked for it (pod spec or image).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use oci_spec::OciSpecError;
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder,
    LinuxMemoryBuilder, LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxPidsBuilder, LinuxResourcesBuilder, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder,
    RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use super::security::{ContainerSecurity, check_working_dir};
use super::spec_defaults::{MASKED_PATHS, READONLY_PATHS, mount, nofile_limit, standard_mounts};
use crate::sandbox::PodNamespaces;

/// A host path mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    /// The host path.
    pub source: PathBuf,
    /// Where it appears in the container.
    pub destination: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// Everything the spec is built from (resolved from the pod spec by the worker).
#[derive(Debug, Clone, Default)]
pub struct ContainerConfig {
    /// argv (command + args, image defaults applied).
    pub args: Vec<String>,
    /// `KEY=value` pairs.
    pub env: Vec<String>,
    /// Working directory (absolute; `/` by default).
    pub cwd: String,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// The root filesystem (a mounted overlay).
    pub rootfs: PathBuf,
    /// Whether the root filesystem is mounted read-only.
    pub readonly_rootfs: bool,
    /// Volume mounts.
    pub mounts: Vec<VolumeMount>,
    /// The container's cgroup path (below the pod cgroup).
    pub cgroups_path: String,
    /// The hostname set in the (pod's) UTS namespace.
    pub hostname: String,
    /// Whether the container shares the host's network and UTS namespaces
    /// (`hostNetwork: true`): no network or UTS namespace entry, no hostname.
    pub host_network: bool,
    /// The pod namespaces to join; `None` gives the container its own.
    pub namespaces: Option<PodNamespaces>,
    /// Container memory limit in bytes.
    pub memory_limit: Option<u64>,
    /// Container CPU shares.
    pub cpu_shares: Option<u64>,
    /// Container CFS quota per 100 ms period, in microseconds.
    pub cpu_quota_us: Option<u64>,
    /// Whether the agent and runtime apply seccomp profiles (the container's own
    /// settings in [`Self::security`] may still turn it off).
    pub seccomp: bool,
    /// Privileges from the pod's and the container's `securityContext`.
    pub security: ContainerSecurity,
    /// OCI annotations (pod name, namespace, uid, container name).
    pub annotations: BTreeMap<String, String>,
}

fn namespace(
    typ: LinuxNamespaceType,
    path: Option<&PathBuf>,
) -> Result<LinuxNamespace, OciSpecError> {
    match path {
        Some(p) => LinuxNamespaceBuilder::default()
            .typ(typ)
            .path(p.clone())
            .build(),
        None => LinuxNamespaceBuilder::default().typ(typ).build(),
    }
}

/// Builds the runtime spec for `c`.
pub fn build_spec(c: &ContainerConfig) -> Result<Spec, OciSpecError> {
    let cwd = if c.cwd.is_empty() {
        "/"
    } else {
        c.cwd.as_str()
    };
    check_working_dir(cwd).map_err(OciSpecError::Other)?;
    let security = &c.security;
    let caps: HashSet<Capability> = security.capabilities.clone();
    // Inheritable and ambient are set (empty) explicitly: the builder's fallback would
    // fill them, giving non-root users capabilities containerd does not give them.
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()?;
    let nofile_max = nofile_limit();
    let nofile = PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .hard(nofile_max)
        .soft(nofile_max)
        .build()?;
    let process = ProcessBuilder::default()
        .terminal(false)
        .args(c.args.clone())
        .env(c.env.clone())
        .cwd(cwd)
        .user(UserBuilder::default().uid(c.uid).gid(c.gid).build()?)
        .capabilities(capabilities)
        .rlimits(vec![nofile])
        .no_new_privileges(security.no_new_privileges)
        .build()?;

    let mut mounts = standard_mounts()?;
    if security.privileged {
        // containerd's privileged containers get a writable /sys and cgroup tree.
        for m in &mut mounts {
            if let Some(options) = m.options().clone() {
                let rw = options
                    .into_iter()
                    .map(|o| if o == "ro" { "rw".to_string() } else { o })
                    .collect();
                m.set_options(Some(rw));
            }
        }
    }
    for v in &c.mounts {
        let mode = if v.read_only { "ro" } else { "rw" };
        mounts.push(mount(
            &v.destination,
            "bind",
            &v.source.display().to_string(),
            &["rbind", "rprivate", mode],
        )?);
    }

    let ns = c.namespaces.as_ref();
    let mut namespaces = vec![
        namespace(LinuxNamespaceType::Pid, None)?,
        namespace(LinuxNamespaceType::Mount, None)?,
        namespace(LinuxNamespaceType::Ipc, ns.map(|n| &n.ipc))?,
    ];
    if !c.host_network {
        namespaces.push(namespace(LinuxNamespaceType::Network, ns.map(|n| &n.net))?);
        namespaces.push(namespace(LinuxNamespaceType::Uts, ns.map(|n| &n.uts))?);
    }

    let mut cpu = LinuxCpuBuilder::default();
    if let Some(shares) = c.cpu_shares {
        cpu = cpu.shares(shares);
    }
    if let Some(quota) = c.cpu_quota_us {
        cpu = cpu
            .quota(quota as i64)
            .period(crate::sandbox::qos::CPU_PERIOD_US);
    }
    let mut memory = LinuxMemoryBuilder::default();
    if let Some(limit) = c.memory_limit {
        // Swap equal to the limit: no swap, so going over the limit is an OOM kill.
        memory = memory.limit(limit as i64).swap(limit as i64);
    }
    let resources = LinuxResourcesBuilder::default()
        .devices(vec![
            // Deny all (allow all when privileged); the device stage appends an allow
            // rule for each allocated device, and runc/crun add the standard ones
            // (null, zero, full, random, urandom, tty, console, pts, ptmx).
            LinuxDeviceCgroupBuilder::default()
                .allow(security.privileged)
                .access("rwm")
                .build()?,
        ])
        .cpu(cpu.build()?)
        .memory(memory.build()?)
        .pids(
            LinuxPidsBuilder::default()
                .limit(crate::sandbox::qos::DEFAULT_PIDS_LIMIT as i64)
                .build()?,
        )
        .build()?;

    let (masked, readonly): (&[&str], &[&str]) = if security.masked_proc {
        (&MASKED_PATHS, &READONLY_PATHS)
    } else {
        (&[], &[])
    };
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources)
        .cgroups_path(PathBuf::from(&c.cgroups_path))
        .masked_paths(masked.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .readonly_paths(readonly.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    if c.seccomp && security.seccomp {
        linux = linux.seccomp(super::seccomp::default_profile()?);
    }

    // Every field is set: the builder falls back to `Spec::default()`, whose hostname
    // ("youki") would otherwise overwrite the pod's.
    SpecBuilder::default()
        .version("1.0.2")
        .hostname(if c.hostname.is_empty() {
            "localhost"
        } else {
            c.hostname.as_str()
        })
        .root(
            RootBuilder::default()
                .path(c.rootfs.clone())
                .readonly(c.readonly_rootfs)
                .build()?,
        )
        .process(process)
        .mounts(mounts)
        .annotations(c.annotations.clone().into_iter().collect::<HashMap<_, _>>())
        .linux(linux.build()?)
        .build()
        .map(|mut spec| {
            if c.host_network {
                // The host's UTS namespace: the runtime may not set a hostname there.
                spec.set_hostname(None);
            }
            spec
        })
}

#[cfg(test)]
mod tests {
    use super::super::security;
    use super::*;

    #[test]
    fn spec_joins_pod_namespaces_and_limits_resources() {
        let ns = PodNamespaces::at(std::path::Path::new("/r"), "u1");
        let config = ContainerConfig {
            args: vec!["sh".into(), "-c".into(), "echo hi".into()],
            env: vec!["A=b".into()],
            rootfs: "/r/rootfs".into(),
            cgroups_path: "/cx/podu1/c1".into(),
            hostname: "web-0".into(),
            namespaces: Some(ns),
            memory_limit: Some(1 << 20),
            cpu_quota_us: Some(20_000),
            seccomp: true,
            mounts: vec![VolumeMount {
                source: "/data".into(),
                destination: "/mnt".into(),
                read_only: true,
            }],
            ..Default::default()
        };
        let json = serde_json::to_value(build_spec(&config).unwrap()).unwrap();
        let nss = json["linux"]["namespaces"].as_array().unwrap();
        assert!(
            nss.iter()
                .any(|n| n["type"] == "network" && n["path"] == "/r/netns/u1")
        );
        assert!(
            nss.iter()
                .any(|n| n["type"] == "ipc" && n["path"] == "/r/ipcns/u1")
        );
        assert!(
            nss.iter()
                .any(|n| n["type"] == "pid" && n.get("path").is_none())
        );
        assert_eq!(json["linux"]["cgroupsPath"], "/cx/podu1/c1");
        assert_eq!(json["hostname"], "web-0");

        let host = build_spec(&ContainerConfig {
            host_network: true,
            ..config.clone()
        })
        .unwrap();
        let json = serde_json::to_value(&host).unwrap();
        let kinds: Vec<&str> = json["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            ["pid", "mount", "ipc"],
            "hostNetwork keeps the host's net and uts"
        );
        assert!(json.get("hostname").is_none_or(|h| h.is_null()), "{json}");
        let caps = &json["process"]["capabilities"];
        assert!(
            caps["ambient"].as_array().is_none_or(|a| a.is_empty()),
            "{caps}"
        );
        assert!(
            caps["inheritable"].as_array().is_none_or(|a| a.is_empty()),
            "{caps}"
        );
        assert_eq!(json["linux"]["resources"]["memory"]["limit"], 1 << 20);
        assert_eq!(json["linux"]["resources"]["cpu"]["quota"], 20_000);
        assert_eq!(json["process"]["noNewPrivileges"], true);
        assert_eq!(
            json["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            14
        );
        assert_eq!(json["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");
        assert!(
            json["linux"]["maskedPaths"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p == "/proc/kcore")
        );
        let mounts = json["mounts"].as_array().unwrap();
        assert!(mounts.iter().any(|m| m["destination"] == "/dev/mqueue"));
        assert!(
            mounts
                .iter()
                .any(|m| m["destination"] == "/mnt" && m["options"][2] == "ro")
        );
    }

    fn spec_json(security: ContainerSecurity) -> serde_json::Value {
        let config = ContainerConfig {
            args: vec!["sh".into()],
            rootfs: "/r/rootfs".into(),
            cgroups_path: "/cx/podu1/c1".into(),
            seccomp: true,
            security,
            ..Default::default()
        };
        serde_json::to_value(build_spec(&config).unwrap()).unwrap()
    }

    fn caps(json: &serde_json::Value, set: &str) -> Vec<String> {
        let mut caps: Vec<String> = json["process"]["capabilities"][set]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        caps.sort();
        caps
    }

    #[test]
    fn unprivileged_containers_get_containerds_defaults_and_their_adjustments() {
        let json = spec_json(ContainerSecurity::default());
        assert_eq!(json["process"]["noNewPrivileges"], true);
        assert_eq!(caps(&json, "bounding").len(), 14);
        assert!(!caps(&json, "bounding").contains(&"CAP_SYS_ADMIN".to_string()));
        let masked = json["linux"]["maskedPaths"].as_array().unwrap();
        for path in [
            "/proc/acpi",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/proc/scsi",
            "/sys/firmware",
            "/sys/devices/virtual/powercap",
        ] {
            assert!(masked.iter().any(|p| p == path), "{path}");
        }
        let readonly = json["linux"]["readonlyPaths"].as_array().unwrap();
        assert_eq!(readonly.len(), 5, "{readonly:?}");
        let devices = &json["linux"]["resources"]["devices"];
        assert_eq!(devices[0]["allow"], false, "{devices}");
        assert_eq!(devices[0]["access"], "rwm");
        assert!(json["linux"]["seccomp"].is_object());

        let adjusted =
            security::capability_set(false, &["NET_BIND_SERVICE".into()], &["ALL".into()]).unwrap();
        let json = spec_json(ContainerSecurity {
            capabilities: adjusted,
            no_new_privileges: false,
            ..Default::default()
        });
        assert_eq!(caps(&json, "bounding"), ["CAP_NET_BIND_SERVICE"]);
        assert_eq!(caps(&json, "effective"), ["CAP_NET_BIND_SERVICE"]);
        assert_eq!(json["process"]["noNewPrivileges"], false);
    }

    #[test]
    fn privileged_containers_get_everything_as_containerd_gives_it() {
        let json = spec_json(ContainerSecurity {
            privileged: true,
            capabilities: security::capability_set(true, &[], &[]).unwrap(),
            no_new_privileges: false,
            masked_proc: false,
            seccomp: false,
        });
        assert_eq!(caps(&json, "bounding").len(), 41);
        assert!(caps(&json, "effective").contains(&"CAP_SYS_ADMIN".to_string()));
        assert_eq!(json["process"]["noNewPrivileges"], false);
        assert!(
            json["linux"]["maskedPaths"]
                .as_array()
                .is_none_or(|m| m.is_empty())
        );
        assert_eq!(json["linux"]["resources"]["devices"][0]["allow"], true);
        assert!(json["linux"].get("seccomp").is_none_or(|s| s.is_null()));
        let sys = json["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/sys")
            .unwrap();
        assert!(sys["options"].as_array().unwrap().iter().any(|o| o == "rw"));
    }

    #[test]
    fn a_working_dir_under_proc_is_refused() {
        for cwd in ["/proc/self/fd/7", "relative", "/a/../proc/1/cwd"] {
            let config = ContainerConfig {
                args: vec!["sh".into()],
                cwd: cwd.into(),
                ..Default::default()
            };
            let err = build_spec(&config).unwrap_err().to_string();
            assert!(err.contains("workingDir"), "{cwd}: {err}");
        }
    }
}
