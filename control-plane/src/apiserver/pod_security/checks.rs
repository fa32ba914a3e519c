//! The checks of Kubernetes' Pod Security Standards, each after its namesake in
//! `k8s.io/pod-security-admission/policy` (same reason and detail text, so messages read
//! exactly as kube-apiserver's): the baseline checks here, the restricted ones that
//! replace or add to them in [`super::restricted`]. Checks read the defaulted pod as JSON, so pods and pod templates are
//! checked alike.

use std::collections::BTreeSet;

use serde_json::Value;

use super::restricted;

/// One failed check: the short reason and the detail naming what failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// `host namespaces`, `privileged`, ...
    pub reason: String,
    /// `hostNetwork=true`, `container "c" must not set securityContext.privileged=true`, ...
    pub detail: String,
}

/// A check over (metadata, spec), as upstream's `CheckPodFn`.
pub type Check = fn(&Value, &Value) -> Option<Violation>;

/// The baseline checks, by check id (upstream's order of ids).
pub const BASELINE: &[(&str, Check)] = &[
    ("appArmorProfile", app_armor_profile),
    ("capabilities_baseline", capabilities_baseline),
    ("hostNamespaces", host_namespaces),
    ("hostPathVolumes", host_path_volumes),
    ("hostPorts", host_ports),
    ("privileged", privileged),
    ("procMount", proc_mount),
    ("seLinuxOptions", se_linux_options),
    ("seccompProfile_baseline", seccomp_baseline),
    ("sysctls", sysctls),
];

/// The restricted checks; each `replaces` a baseline check (by id) or adds to them.
pub const RESTRICTED: &[(&str, Option<&str>, Check)] = &[
    (
        "allowPrivilegeEscalation",
        None,
        restricted::allow_privilege_escalation,
    ),
    (
        "capabilities_restricted",
        Some("capabilities_baseline"),
        restricted::capabilities_restricted,
    ),
    (
        "restrictedVolumes",
        Some("hostPathVolumes"),
        restricted::restricted_volumes,
    ),
    ("runAsNonRoot", None, restricted::run_as_non_root),
    ("runAsUser", None, restricted::run_as_user),
    (
        "seccompProfile_restricted",
        Some("seccompProfile_baseline"),
        restricted::seccomp_restricted,
    ),
];

/// Capabilities baseline lets containers add (Docker's defaults less NET_RAW).
const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Sysctls baseline allows (upstream's list as of policy v1.32).
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];

/// SELinux types baseline allows.
const SELINUX_TYPES: &[&str] = &[
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

/// The prefix of the (deprecated) per-container AppArmor annotations.
pub const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

pub(super) fn forbidden(reason: impl Into<String>, detail: impl Into<String>) -> Option<Violation> {
    Some(Violation {
        reason: reason.into(),
        detail: detail.into(),
    })
}

/// `one` or `many` by `n`, as upstream's `pluralize`.
pub(super) fn pluralize<'a>(one: &'a str, many: &'a str, n: usize) -> &'a str {
    if n == 1 { one } else { many }
}

/// `"a", "b"`, as upstream's `joinQuote` (Go's `%q`).
pub(super) fn join_quote<S: AsRef<str>>(items: &[S]) -> String {
    items
        .iter()
        .map(|s| format!("{:?}", s.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `container "a"` / `containers "a", "b"`.
pub(super) fn containers_named(names: &[String]) -> String {
    format!(
        "{} {}",
        pluralize("container", "containers", names.len()),
        join_quote(names)
    )
}

/// Init, app and ephemeral containers, in upstream's `visitContainers` order.
pub(super) fn containers(spec: &Value) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .into_iter()
        .filter_map(|list| spec.get(list).and_then(Value::as_array))
        .flatten()
}

pub(super) fn name(container: &Value) -> String {
    str_at(container, "/name").unwrap_or_default().to_string()
}

pub(super) fn str_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

pub(super) fn bool_at(value: &Value, pointer: &str) -> Option<bool> {
    value.pointer(pointer).and_then(Value::as_bool)
}

/// Containers for which `bad` holds, by name.
pub(super) fn bad_containers(spec: &Value, bad: impl Fn(&Value) -> bool) -> Vec<String> {
    containers(spec).filter(|c| bad(c)).map(name).collect()
}

fn host_namespaces(_: &Value, spec: &Value) -> Option<Violation> {
    let set: Vec<&str> = ["hostIPC", "hostNetwork", "hostPID"]
        .into_iter()
        .filter(|field| bool_at(spec, &format!("/{field}")) == Some(true))
        .collect();
    if set.is_empty() {
        return None;
    }
    let detail: Vec<String> = set.iter().map(|f| format!("{f}=true")).collect();
    forbidden("host namespaces", detail.join(", "))
}

fn privileged(_: &Value, spec: &Value) -> Option<Violation> {
    let bad = bad_containers(spec, |c| {
        bool_at(c, "/securityContext/privileged") == Some(true)
    });
    if bad.is_empty() {
        return None;
    }
    forbidden(
        "privileged",
        format!(
            "{} must not set securityContext.privileged=true",
            containers_named(&bad)
        ),
    )
}

pub(super) fn added_capabilities(container: &Value) -> impl Iterator<Item = &str> {
    container
        .pointer("/securityContext/capabilities/add")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

fn capabilities_baseline(_: &Value, spec: &Value) -> Option<Violation> {
    let mut caps = BTreeSet::new();
    let mut bad = Vec::new();
    for c in containers(spec) {
        let extra: Vec<&str> = added_capabilities(c)
            .filter(|cap| !BASELINE_CAPABILITIES.contains(cap))
            .collect();
        if !extra.is_empty() {
            caps.extend(extra);
            bad.push(name(c));
        }
    }
    if bad.is_empty() {
        return None;
    }
    forbidden(
        "non-default capabilities",
        format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_named(&bad),
            join_quote(&caps.into_iter().collect::<Vec<_>>())
        ),
    )
}

pub(super) fn volumes(spec: &Value) -> impl Iterator<Item = &Value> {
    spec.get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn host_path_volumes(_: &Value, spec: &Value) -> Option<Violation> {
    let bad: Vec<String> = volumes(spec)
        .filter(|v| v.get("hostPath").is_some_and(|h| !h.is_null()))
        .map(name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    forbidden(
        "hostPath volumes",
        format!(
            "{} {}",
            pluralize("volume", "volumes", bad.len()),
            join_quote(&bad)
        ),
    )
}

fn host_ports(_: &Value, spec: &Value) -> Option<Violation> {
    // Upstream collects the ports as strings in a sorted set: "10080" sorts before "8080".
    let mut ports = BTreeSet::new();
    let mut bad = Vec::new();
    for c in containers(spec) {
        let used: Vec<i64> = c
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("hostPort").and_then(Value::as_i64))
            .filter(|p| *p != 0)
            .collect();
        if !used.is_empty() {
            ports.extend(used.iter().map(i64::to_string));
            bad.push(name(c));
        }
    }
    if bad.is_empty() {
        return None;
    }
    forbidden(
        "hostPort",
        format!(
            "{} {} {} {}",
            containers_named(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize("hostPort", "hostPorts", ports.len()),
            ports.into_iter().collect::<Vec<_>>().join(", ")
        ),
    )
}

fn app_armor_profile(meta: &Value, spec: &Value) -> Option<Violation> {
    fn unconfined(sc: &Value) -> Option<&str> {
        str_at(sc, "/appArmorProfile/type")
            .filter(|t| !matches!(*t, "RuntimeDefault" | "Localhost"))
    }
    let mut setters = Vec::new();
    let mut values = BTreeSet::new();
    if let Some(t) = spec.get("securityContext").and_then(unconfined) {
        setters.push("pod".to_string());
        values.insert(t.to_string());
    }
    let mut bad = Vec::new();
    for c in containers(spec) {
        if let Some(t) = c.get("securityContext").and_then(unconfined) {
            bad.push(name(c));
            values.insert(t.to_string());
        }
    }
    if !bad.is_empty() {
        setters.push(containers_named(&bad));
    }
    let mut values: Vec<String> = values.into_iter().collect();
    let mut annotations: Vec<String> = meta
        .get("annotations")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with(APPARMOR_ANNOTATION_PREFIX))
        .filter_map(|(k, v)| {
            let v = v.as_str().unwrap_or_default();
            let allowed = v.is_empty() || v == "runtime/default" || v.starts_with("localhost/");
            (!allowed).then(|| format!("{k}={v:?}"))
        })
        .collect();
    if !annotations.is_empty() {
        annotations.sort();
        setters.push(pluralize("annotation", "annotations", annotations.len()).to_string());
        values.extend(annotations);
    }
    if setters.is_empty() {
        return None;
    }
    forbidden(
        pluralize(
            "forbidden AppArmor profile",
            "forbidden AppArmor profiles",
            values.len(),
        ),
        format!(
            "{} must not set AppArmor profile type to {}",
            setters.join(" and "),
            join_quote(&values)
        ),
    )
}

fn se_linux_options(_: &Value, spec: &Value) -> Option<Violation> {
    let mut types = BTreeSet::new();
    let (mut set_user, mut set_role) = (false, false);
    let mut valid = |sc: &Value| -> bool {
        let Some(opts) = sc.get("seLinuxOptions").filter(|o| o.is_object()) else {
            return true;
        };
        let mut ok = true;
        let t = str_at(opts, "/type").unwrap_or_default();
        if !SELINUX_TYPES.contains(&t) {
            ok = false;
            types.insert(t.to_string());
        }
        if str_at(opts, "/user").is_some_and(|u| !u.is_empty()) {
            ok = false;
            set_user = true;
        }
        if str_at(opts, "/role").is_some_and(|r| !r.is_empty()) {
            ok = false;
            set_role = true;
        }
        ok
    };
    let mut setters = Vec::new();
    if let Some(sc) = spec.get("securityContext")
        && !valid(sc)
    {
        setters.push("pod".to_string());
    }
    let mut bad = Vec::new();
    for c in containers(spec) {
        if let Some(sc) = c.get("securityContext")
            && !valid(sc)
        {
            bad.push(name(c));
        }
    }
    if !bad.is_empty() {
        setters.push(containers_named(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    // As upstream: the user and role notes are only given alongside bad types.
    let mut data = Vec::new();
    if !types.is_empty() {
        let types: Vec<String> = types.into_iter().collect();
        data.push(format!(
            "{} {}",
            pluralize("type", "types", types.len()),
            join_quote(&types)
        ));
        if set_user {
            data.push("user may not be set".to_string());
        }
        if set_role {
            data.push("role may not be set".to_string());
        }
    }
    forbidden(
        "seLinuxOptions",
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            setters.join(" and "),
            data.join("; ")
        ),
    )
}

fn proc_mount(_: &Value, spec: &Value) -> Option<Violation> {
    if bool_at(spec, "/hostUsers") == Some(false) {
        // A pod in its own user namespace may unmask /proc (policy v1.34's relaxation).
        return None;
    }
    let mut types = BTreeSet::new();
    let mut bad = Vec::new();
    for c in containers(spec) {
        if let Some(t) = str_at(c, "/securityContext/procMount").filter(|t| *t != "Default") {
            bad.push(name(c));
            types.insert(t.to_string());
        }
    }
    if bad.is_empty() {
        return None;
    }
    forbidden(
        "procMount",
        format!(
            "{} must not set securityContext.procMount to {}",
            containers_named(&bad),
            join_quote(&types.into_iter().collect::<Vec<_>>())
        ),
    )
}

fn seccomp_type(sc: Option<&Value>) -> Option<&str> {
    sc.and_then(|sc| str_at(sc, "/seccompProfile/type"))
}

fn valid_seccomp(t: &str) -> bool {
    t == "RuntimeDefault" || t == "Localhost"
}

/// Setters (`pod`, `containers "a"`) of a bad seccomp type, the bad types, and the
/// containers that set none while the pod sets no valid one either.
pub(super) fn seccomp_findings(spec: &Value) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut setters = Vec::new();
    let mut values = BTreeSet::new();
    let mut pod_set = false;
    if let Some(t) = seccomp_type(spec.get("securityContext")) {
        if valid_seccomp(t) {
            pod_set = true;
        } else {
            setters.push("pod".to_string());
            values.insert(t.to_string());
        }
    }
    let (mut explicit, mut implicit) = (Vec::new(), Vec::new());
    for c in containers(spec) {
        match seccomp_type(c.get("securityContext")) {
            Some(t) if !valid_seccomp(t) => {
                explicit.push(name(c));
                values.insert(t.to_string());
            }
            Some(_) => {}
            None if !pod_set => implicit.push(name(c)),
            None => {}
        }
    }
    if !explicit.is_empty() {
        setters.push(containers_named(&explicit));
    }
    (setters, values.into_iter().collect(), implicit)
}

fn seccomp_baseline(_: &Value, spec: &Value) -> Option<Violation> {
    let (setters, values, _) = seccomp_findings(spec);
    if setters.is_empty() {
        return None;
    }
    forbidden(
        "seccompProfile",
        format!(
            "{} must not set securityContext.seccompProfile.type to {}",
            setters.join(" and "),
            join_quote(&values)
        ),
    )
}

fn sysctls(_: &Value, spec: &Value) -> Option<Violation> {
    let bad: Vec<&str> = spec
        .pointer("/securityContext/sysctls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| str_at(s, "/name"))
        .filter(|n| !SAFE_SYSCTLS.contains(n))
        .collect();
    if bad.is_empty() {
        return None;
    }
    forbidden("forbidden sysctls", bad.join(", "))
}
