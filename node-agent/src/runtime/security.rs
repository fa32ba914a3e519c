//! A container's security settings, from its pod's and its own `securityContext`, as
//! containerd's CRI plugin turns them into an OCI spec:
//!
//! - capabilities: the default 14 ([`DEFAULT_CAPABILITIES`]), or all of them when
//!   privileged, then `add: [ALL]` / `drop: [ALL]`, then single adds, then single drops;
//! - `noNewPrivileges` unless `allowPrivilegeEscalation: true` or privileged (stricter than
//!   containerd, whose default allows escalation);
//! - masked and read-only /proc paths unless privileged or `procMount: Unmasked`;
//! - the default seccomp profile unless privileged or `seccompProfile.type: Unconfined`
//!   (`Localhost` profiles are refused: the agent has no profile directory);
//! - a privileged container's device cgroup allows every device.
//!
//! It also checks the working directory: absolute, clean, and not under `/proc` — runc
//! before 1.1.12 let `/proc/self/fd/<n>` reach a leaked host directory (CVE-2024-21626).

use std::collections::HashSet;
use std::path::{Component, Path};

use k8s_openapi::api::core::v1::{Container, PodSecurityContext, SecurityContext};
use oci_spec::runtime::Capability;

use super::spec_defaults::DEFAULT_CAPABILITIES;

/// Every capability the kernel has (CAP_CHOWN … CAP_CHECKPOINT_RESTORE).
pub const ALL_CAPABILITIES: [Capability; 41] = [
    Capability::AuditControl,
    Capability::AuditRead,
    Capability::AuditWrite,
    Capability::BlockSuspend,
    Capability::Bpf,
    Capability::CheckpointRestore,
    Capability::Chown,
    Capability::DacOverride,
    Capability::DacReadSearch,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::IpcLock,
    Capability::IpcOwner,
    Capability::Kill,
    Capability::Lease,
    Capability::LinuxImmutable,
    Capability::MacAdmin,
    Capability::MacOverride,
    Capability::Mknod,
    Capability::NetAdmin,
    Capability::NetBindService,
    Capability::NetBroadcast,
    Capability::NetRaw,
    Capability::Perfmon,
    Capability::Setgid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::Setuid,
    Capability::SysAdmin,
    Capability::SysBoot,
    Capability::SysChroot,
    Capability::SysModule,
    Capability::SysNice,
    Capability::SysPacct,
    Capability::SysPtrace,
    Capability::SysRawio,
    Capability::SysResource,
    Capability::SysTime,
    Capability::SysTtyConfig,
    Capability::Syslog,
    Capability::WakeAlarm,
];

/// What the spec builder needs to know about a container's privileges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSecurity {
    /// `securityContext.privileged`.
    pub privileged: bool,
    /// The capability set (bounding, effective and permitted).
    pub capabilities: HashSet<Capability>,
    /// The kernel's `no_new_privs` for the process.
    pub no_new_privileges: bool,
    /// Whether /proc and /sys keep their masked and read-only paths.
    pub masked_proc: bool,
    /// Whether the default seccomp profile applies (when the agent and runtime allow it).
    pub seccomp: bool,
}

impl Default for ContainerSecurity {
    /// An unprivileged container with nothing in its `securityContext`.
    fn default() -> Self {
        Self {
            privileged: false,
            capabilities: DEFAULT_CAPABILITIES.into_iter().collect(),
            no_new_privileges: true,
            masked_proc: true,
            seccomp: true,
        }
    }
}

/// Parses a Kubernetes capability name (`NET_ADMIN` or `CAP_NET_ADMIN`, any case).
pub fn parse_capability(name: &str) -> Result<Capability, String> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|_| format!("unknown capability {name:?}"))
}

/// The capability set for `privileged` adjusted by `add` and `drop`, in containerd's order.
pub fn capability_set(
    privileged: bool,
    add: &[String],
    drop: &[String],
) -> Result<HashSet<Capability>, String> {
    let mut caps: HashSet<Capability> = if privileged {
        ALL_CAPABILITIES.into_iter().collect()
    } else {
        DEFAULT_CAPABILITIES.into_iter().collect()
    };
    let is_all = |c: &String| c.eq_ignore_ascii_case("ALL");
    if add.iter().any(is_all) {
        caps.extend(ALL_CAPABILITIES);
    }
    if drop.iter().any(is_all) {
        caps.clear();
    }
    for name in add.iter().filter(|c| !is_all(c)) {
        caps.insert(parse_capability(name)?);
    }
    for name in drop.iter().filter(|c| !is_all(c)) {
        caps.remove(&parse_capability(name)?);
    }
    Ok(caps)
}

/// The seccomp profile type in force: the container's, else the pod's.
fn seccomp_type<'a>(pod: &'a PodSecurityContext, sc: &'a SecurityContext) -> Option<&'a str> {
    sc.seccomp_profile
        .as_ref()
        .or(pod.seccomp_profile.as_ref())
        .map(|p| p.type_.as_str())
}

/// The security settings of container `c` in a pod with `pod` as its security context;
/// an error names the field that cannot be honoured.
pub fn container_security(
    pod: &PodSecurityContext,
    c: &Container,
) -> Result<ContainerSecurity, String> {
    let sc = c.security_context.clone().unwrap_or_default();
    let privileged = sc.privileged.unwrap_or(false);
    let caps = sc.capabilities.clone().unwrap_or_default();
    let capabilities = capability_set(
        privileged,
        caps.add.as_deref().unwrap_or_default(),
        caps.drop.as_deref().unwrap_or_default(),
    )
    .map_err(|e| format!("securityContext.capabilities: {e}"))?;
    let seccomp = match seccomp_type(pod, &sc) {
        None | Some("RuntimeDefault") => !privileged,
        Some("Unconfined") => false,
        Some(other) => {
            return Err(format!(
                "securityContext.seccompProfile.type {other:?} is not supported by this agent \
                 (use RuntimeDefault or Unconfined)"
            ));
        }
    };
    Ok(ContainerSecurity {
        privileged,
        capabilities,
        no_new_privileges: !privileged && sc.allow_privilege_escalation != Some(true),
        masked_proc: !privileged && sc.proc_mount.as_deref() != Some("Unmasked"),
        seccomp,
    })
}

/// Refuses a working directory that is not absolute and clean, or that lies under /proc.
pub fn check_working_dir(cwd: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("workingDir {cwd:?}: {why}"));
    if cwd.contains('\0') {
        return bad("contains a NUL byte");
    }
    if !cwd.starts_with('/') {
        return bad("must be an absolute path");
    }
    // Components other than normal names: `.`, `..`; `//` is normalised away by
    // `components`, so compare the text too (a trailing `/`, as some images have, is fine).
    let trimmed = cwd.trim_end_matches('/');
    let path = Path::new(cwd);
    let clean = path
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    let rebuilt: String = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(format!("/{}", n.to_string_lossy())),
            _ => None,
        })
        .collect();
    if !clean || rebuilt != trimmed {
        return bad("must be a clean path (no '.', '..' or '//')");
    }
    if path.starts_with("/proc") {
        return bad("must not be under /proc");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(sc: serde_json::Value) -> Container {
        serde_json::from_value(serde_json::json!({"name": "c", "securityContext": sc})).unwrap()
    }

    #[test]
    fn capabilities_follow_containerds_order() {
        let set = |p, add: &[&str], drop: &[&str]| {
            let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
            capability_set(p, &s(add), &s(drop)).unwrap()
        };
        assert_eq!(set(false, &[], &[]).len(), 14);
        assert_eq!(set(true, &[], &[]).len(), 41);
        assert!(set(false, &[], &["ALL"]).is_empty());
        assert_eq!(
            set(false, &["NET_BIND_SERVICE"], &["ALL"]),
            HashSet::from([Capability::NetBindService])
        );
        let dropped = set(false, &["ALL"], &["SYS_ADMIN"]);
        assert_eq!(dropped.len(), 40);
        assert!(!dropped.contains(&Capability::SysAdmin));
        let added = set(false, &["CAP_SYS_PTRACE"], &["NET_RAW"]);
        assert!(added.contains(&Capability::SysPtrace) && !added.contains(&Capability::NetRaw));
        assert!(capability_set(false, &["FLY".into()], &[]).is_err());
    }

    #[test]
    fn security_context_gives_privileges_only_when_asked() {
        let pod = PodSecurityContext::default();
        let plain = container_security(&pod, &container(serde_json::json!({}))).unwrap();
        assert_eq!(plain, ContainerSecurity::default());
        let escalating = container_security(
            &pod,
            &container(serde_json::json!({"allowPrivilegeEscalation": true})),
        )
        .unwrap();
        assert!(!escalating.no_new_privileges && escalating.masked_proc);
        let privileged =
            container_security(&pod, &container(serde_json::json!({"privileged": true}))).unwrap();
        assert!(privileged.privileged && !privileged.no_new_privileges);
        assert!(!privileged.masked_proc && !privileged.seccomp);
        assert_eq!(privileged.capabilities.len(), 41);
        let unconfined: PodSecurityContext =
            serde_json::from_value(serde_json::json!({"seccompProfile": {"type": "Unconfined"}}))
                .unwrap();
        assert!(
            !container_security(&unconfined, &container(serde_json::json!({})))
                .unwrap()
                .seccomp
        );
        let localhost = container(
            serde_json::json!({"seccompProfile": {"type": "Localhost", "localhostProfile": "x"}}),
        );
        let err = container_security(&pod, &localhost).unwrap_err();
        assert!(err.contains("seccompProfile"), "{err}");
    }

    #[test]
    fn working_dirs_must_be_absolute_clean_and_outside_proc() {
        for ok in ["/", "/work", "/work/", "/a/b.c/d", "/procfs"] {
            assert_eq!(check_working_dir(ok), Ok(()), "{ok}");
        }
        for bad in [
            "/proc/self/fd/7",
            "/proc",
            "relative",
            "/a/../proc/self/fd/8",
            "/a/./b",
            "//proc/self/fd/7",
            "/a//b",
            "/a\0b",
        ] {
            let err = check_working_dir(bad).unwrap_err();
            assert!(err.starts_with("workingDir"), "{bad}: {err}");
        }
    }
}
