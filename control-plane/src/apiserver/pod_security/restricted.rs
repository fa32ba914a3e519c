//! The restricted level's checks, after upstream's `check_allowPrivilegeEscalation.go`,
//! `check_capabilities_restricted.go`, `check_restrictedVolumes.go`,
//! `check_runAsNonRoot.go`, `check_runAsUser.go` and `check_seccompProfile_restricted.go`.

use std::collections::BTreeSet;

use serde_json::Value;

use super::checks::{
    Violation, added_capabilities, bad_containers, bool_at, containers, containers_named,
    forbidden, join_quote, name, pluralize, seccomp_findings, volumes,
};

/// Volume types restricted allows.
const RESTRICTED_VOLUME_TYPES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

pub(super) fn allow_privilege_escalation(_: &Value, spec: &Value) -> Option<Violation> {
    let bad = bad_containers(spec, |c| {
        bool_at(c, "/securityContext/allowPrivilegeEscalation") != Some(false)
    });
    if bad.is_empty() {
        return None;
    }
    forbidden(
        "allowPrivilegeEscalation != false",
        format!(
            "{} must set securityContext.allowPrivilegeEscalation=false",
            containers_named(&bad)
        ),
    )
}

pub(super) fn capabilities_restricted(_: &Value, spec: &Value) -> Option<Violation> {
    let mut missing_drop = Vec::new();
    let mut adding = Vec::new();
    let mut caps = BTreeSet::new();
    for c in containers(spec) {
        let drops_all = c
            .pointer("/securityContext/capabilities/drop")
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(|x| x == "ALL"));
        if !drops_all {
            missing_drop.push(name(c));
        }
        let extra: Vec<&str> = added_capabilities(c)
            .filter(|cap| *cap != "NET_BIND_SERVICE")
            .collect();
        if !extra.is_empty() {
            caps.extend(extra);
            adding.push(name(c));
        }
    }
    let mut details = Vec::new();
    if !missing_drop.is_empty() {
        details.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            containers_named(&missing_drop)
        ));
    }
    if !adding.is_empty() {
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_named(&adding),
            join_quote(&caps.into_iter().collect::<Vec<_>>())
        ));
    }
    if details.is_empty() {
        return None;
    }
    forbidden("unrestricted capabilities", details.join("; "))
}

pub(super) fn restricted_volumes(_: &Value, spec: &Value) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for v in volumes(spec) {
        let Some(fields) = v.as_object() else {
            continue;
        };
        let restricted: Vec<&String> = fields
            .iter()
            .filter(|(k, value)| k.as_str() != "name" && !value.is_null())
            .map(|(k, _)| k)
            .filter(|k| !RESTRICTED_VOLUME_TYPES.contains(&k.as_str()))
            .collect();
        if !restricted.is_empty() {
            bad.push(name(v));
            types.extend(restricted.into_iter().cloned());
        }
    }
    if bad.is_empty() {
        return None;
    }
    let types: Vec<String> = types.into_iter().collect();
    forbidden(
        "restricted volume types",
        format!(
            "{} {} {} {} {}",
            pluralize("volume", "volumes", bad.len()),
            join_quote(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize(
                "restricted volume type",
                "restricted volume types",
                types.len()
            ),
            join_quote(&types)
        ),
    )
}

pub(super) fn run_as_non_root(_: &Value, spec: &Value) -> Option<Violation> {
    let mut setters = Vec::new();
    let mut pod_non_root = false;
    match bool_at(spec, "/securityContext/runAsNonRoot") {
        Some(false) => setters.push("pod".to_string()),
        Some(true) => pod_non_root = true,
        None => {}
    }
    let non_zero_user =
        |v: &Value, p: &str| v.pointer(p).and_then(Value::as_i64).is_some_and(|u| u > 0);
    let pod_user = non_zero_user(spec, "/securityContext/runAsUser");
    let (mut explicit, mut implicit) = (Vec::new(), Vec::new());
    for c in containers(spec) {
        match bool_at(c, "/securityContext/runAsNonRoot") {
            Some(false) => explicit.push(name(c)),
            Some(true) => {}
            None if pod_non_root => {}
            None if non_zero_user(c, "/securityContext/runAsUser") || pod_user => {}
            None => implicit.push(name(c)),
        }
    }
    if !explicit.is_empty() {
        setters.push(containers_named(&explicit));
    }
    if !setters.is_empty() {
        return forbidden(
            "runAsNonRoot != true",
            format!(
                "{} must not set securityContext.runAsNonRoot=false",
                setters.join(" and ")
            ),
        );
    }
    if !implicit.is_empty() {
        return forbidden(
            "runAsNonRoot != true",
            format!(
                "pod or {} must set securityContext.runAsNonRoot=true",
                containers_named(&implicit)
            ),
        );
    }
    None
}

pub(super) fn run_as_user(_: &Value, spec: &Value) -> Option<Violation> {
    let zero = |v: &Value| {
        v.pointer("/securityContext/runAsUser")
            .and_then(Value::as_i64)
            == Some(0)
    };
    let mut setters = Vec::new();
    if zero(spec) {
        setters.push("pod".to_string());
    }
    let bad = bad_containers(spec, zero);
    if !bad.is_empty() {
        setters.push(containers_named(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    forbidden(
        "runAsUser=0",
        format!("{} must not set runAsUser=0", setters.join(" and ")),
    )
}

pub(super) fn seccomp_restricted(_: &Value, spec: &Value) -> Option<Violation> {
    let (setters, values, implicit) = seccomp_findings(spec);
    let mut details = Vec::new();
    if !setters.is_empty() {
        details.push(format!(
            "{} must not set securityContext.seccompProfile.type to {}",
            setters.join(" and "),
            join_quote(&values)
        ));
    }
    if !implicit.is_empty() {
        details.push(format!(
            "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \
             \"Localhost\"",
            containers_named(&implicit)
        ));
    }
    if details.is_empty() {
        return None;
    }
    forbidden("seccompProfile", details.join("; "))
}
