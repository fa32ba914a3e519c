//! Pod Security admission, as Kubernetes' built-in `PodSecurity` plugin does it.
//!
//! Each namespace has an enforce level, `privileged`, `baseline` or `restricted`, from its
//! label `pod-security.kubernetes.io/enforce`; without the label the cluster default,
//! `baseline`, applies. A pod that violates its namespace's level is refused with 403 and
//! Kubernetes' message: `pods "x" is forbidden: violates PodSecurity "baseline:latest":
//! host namespaces (hostNetwork=true), privileged (container "c" must not set
//! securityContext.privileged=true)`. As in Kubernetes, only pods are refused; objects with
//! pod templates (Deployment, Job, TrainingJob, PyTorchJob, ...) are admitted with a
//! `Warning` (`would violate PodSecurity ...`) when their template would violate the warn
//! level: the `pod-security.kubernetes.io/warn` label, or else the enforce level.
//!
//! The checks ([`checks`]) are the latest policy version's; a `-version` label is shown in
//! messages but does not select older checks. Namespace labels are validated when a
//! namespace is written (an unknown level is a 422); a namespace whose stored label is
//! unreadable is treated as `restricted` (fail closed).

pub mod checks;
pub mod restricted;
#[cfg(test)]
mod tests;

use coxswain_api::{FieldError, FieldPath};
use serde_json::Value;

use self::checks::{BASELINE, RESTRICTED, Violation};
use super::status_error::ApiError;
use crate::store::Store;

/// The label that sets a namespace's enforce level.
pub const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";
/// The label naming the policy version enforced (shown in messages).
pub const ENFORCE_VERSION_LABEL: &str = "pod-security.kubernetes.io/enforce-version";
/// The label that sets the level whose violations are sent as warnings.
pub const WARN_LABEL: &str = "pod-security.kubernetes.io/warn";
/// The label naming the warn level's policy version.
pub const WARN_VERSION_LABEL: &str = "pod-security.kubernetes.io/warn-version";
/// The audit label; validated, and otherwise unused (coxswain has no audit log).
pub const AUDIT_LABEL: &str = "pod-security.kubernetes.io/audit";
/// The audit version label; validated, and otherwise unused.
pub const AUDIT_VERSION_LABEL: &str = "pod-security.kubernetes.io/audit-version";

/// The enforce level of namespaces without the label.
pub const DEFAULT_LEVEL: Level = Level::Baseline;

/// A Pod Security Standards level, least to most restrictive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Anything goes.
    Privileged,
    /// Known privilege escalations are refused.
    Baseline,
    /// Pod hardening best practice on top of baseline.
    Restricted,
}

/// The label values of the levels.
pub const LEVELS: [&str; 3] = ["privileged", "baseline", "restricted"];

impl Level {
    /// Parses a label value.
    pub fn parse(value: &str) -> Option<Level> {
        match value {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        LEVELS[self as usize]
    }
}

/// A level and the policy version named for it (`latest`, `v1.30`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The level.
    pub level: Level,
    /// The version, as written in messages.
    pub version: String,
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.level.as_str(), self.version)
    }
}

/// A namespace's enforce and warn policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespacePolicy {
    /// Pods that violate it are refused.
    pub enforce: Policy,
    /// Pods and templates that violate it get a warning.
    pub warn: Policy,
}

fn valid_version(version: &str) -> bool {
    version == "latest"
        || version
            .strip_prefix("v1.")
            .is_some_and(|minor| !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit()))
}

impl NamespacePolicy {
    /// The policies the labels of `namespace` (a Namespace object) give.
    pub fn of_namespace(namespace: &Value) -> NamespacePolicy {
        let label = |key: &str| {
            namespace
                .pointer("/metadata/labels")
                .and_then(|l| l.get(key))
                .and_then(Value::as_str)
        };
        let policy = |level_key: &str, version_key: &str, default: Level| {
            let level = match label(level_key) {
                None => default,
                // An unreadable level fails closed, as upstream does.
                Some(value) => Level::parse(value).unwrap_or(Level::Restricted),
            };
            let version = label(version_key)
                .filter(|v| valid_version(v))
                .unwrap_or("latest");
            Policy {
                level,
                version: version.to_string(),
            }
        };
        let enforce = policy(ENFORCE_LABEL, ENFORCE_VERSION_LABEL, DEFAULT_LEVEL);
        let warn = policy(WARN_LABEL, WARN_VERSION_LABEL, enforce.level);
        NamespacePolicy { enforce, warn }
    }
}

/// Every violation of `level` by a pod with `meta` and `spec`, in upstream's order.
pub fn evaluate(level: Level, meta: &Value, spec: &Value) -> Vec<Violation> {
    let mut found: Vec<(&str, Violation)> = Vec::new();
    if level == Level::Privileged {
        return Vec::new();
    }
    let replaced: Vec<&str> = if level == Level::Restricted {
        RESTRICTED.iter().filter_map(|(_, r, _)| *r).collect()
    } else {
        Vec::new()
    };
    for (id, check) in BASELINE {
        if !replaced.contains(id)
            && let Some(v) = check(meta, spec)
        {
            found.push((id, v));
        }
    }
    if level == Level::Restricted {
        for (id, _, check) in RESTRICTED {
            if let Some(v) = check(meta, spec) {
                found.push((id, v));
            }
        }
    }
    found.sort_by(|a, b| a.0.cmp(b.0));
    found.into_iter().map(|(_, v)| v).collect()
}

/// `host namespaces (hostNetwork=true), privileged (...)`, as upstream's `ForbiddenDetail`.
pub fn describe(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| {
            if v.detail.is_empty() {
                v.reason.clone()
            } else {
                format!("{} ({})", v.reason, v.detail)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The 403 message for pod `name` violating `policy`.
pub fn forbidden_message(name: &str, policy: &Policy, violations: &[Violation]) -> String {
    format!(
        "pods {name:?} is forbidden: violates PodSecurity \"{policy}\": {}",
        describe(violations)
    )
}

/// The policies of namespace `namespace`, read from the store (the default when absent).
pub async fn namespace_policy(
    store: &dyn Store,
    namespace: &str,
) -> Result<NamespacePolicy, ApiError> {
    let key = format!("/registry/core/namespaces/{namespace}");
    let object = match store.get(&key).await? {
        Some(kv) => super::objects::from_store(&kv)?,
        None => Value::Null,
    };
    Ok(NamespacePolicy::of_namespace(&object))
}

/// Admits pod `pod` (defaulted) into `namespace`: a 403 when it violates the enforce
/// level, else the warnings for the warn level.
pub async fn admit_pod(
    store: &dyn Store,
    namespace: &str,
    pod: &Value,
) -> Result<Vec<String>, ApiError> {
    let policy = namespace_policy(store, namespace).await?;
    let meta = pod.get("metadata").unwrap_or(&Value::Null);
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let violations = evaluate(policy.enforce.level, meta, spec);
    if !violations.is_empty() {
        let name = meta.get("name").and_then(Value::as_str).unwrap_or_default();
        return Err(ApiError::Forbidden(forbidden_message(
            name,
            &policy.enforce,
            &violations,
        )));
    }
    if policy.warn.level > policy.enforce.level {
        let violations = evaluate(policy.warn.level, meta, spec);
        if !violations.is_empty() {
            return Ok(vec![would_violate(&policy.warn, &violations)]);
        }
    }
    Ok(Vec::new())
}

fn would_violate(policy: &Policy, violations: &[Violation]) -> String {
    format!(
        "would violate PodSecurity \"{policy}\": {}",
        describe(violations)
    )
}

/// Whether a pod update needs admission: its spec or its security annotations changed (a
/// status write, a label or a finalizer does not, as upstream's `isSignificantPodUpdate`).
pub fn is_significant_pod_update(old: &Value, new: &Value) -> bool {
    let security_annotations = |pod: &Value| -> Vec<(String, Value)> {
        pod.pointer("/metadata/annotations")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.starts_with(checks::APPARMOR_ANNOTATION_PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    old.get("spec") != new.get("spec") || security_annotations(old) != security_annotations(new)
}

/// The pod templates inside a workload object: every `template` (or `jobTemplate`'s
/// nested `template`) whose `spec` has `containers`, found anywhere under `spec`.
fn pod_templates(value: &Value) -> Vec<&Value> {
    let mut found = Vec::new();
    fn walk<'a>(value: &'a Value, found: &mut Vec<&'a Value>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    if key == "template"
                        && child
                            .pointer("/spec/containers")
                            .is_some_and(Value::is_array)
                    {
                        found.push(child);
                    } else {
                        walk(child, found);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, found)),
            _ => {}
        }
    }
    if let Some(spec) = value.get("spec") {
        walk(spec, &mut found);
    }
    found
}

/// Warnings for the pod templates of a workload object in `namespace` that would violate
/// its warn level (one per distinct message); nothing is refused.
pub async fn template_warnings(
    store: &dyn Store,
    namespace: &str,
    object: &Value,
) -> Result<Vec<String>, ApiError> {
    let templates = pod_templates(object);
    if templates.is_empty() {
        return Ok(Vec::new());
    }
    let policy = namespace_policy(store, namespace).await?;
    let mut warnings = Vec::new();
    for template in templates {
        let meta = template.get("metadata").unwrap_or(&Value::Null);
        let spec = template.get("spec").unwrap_or(&Value::Null);
        let violations = evaluate(policy.warn.level, meta, spec);
        if !violations.is_empty() {
            let warning = would_violate(&policy.warn, &violations);
            if !warnings.contains(&warning) {
                warnings.push(warning);
            }
        }
    }
    Ok(warnings)
}

/// Problems with the pod-security labels of a Namespace object (a 422 each).
pub fn validate_namespace_labels(namespace: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let Some(labels) = namespace
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
    else {
        return errors;
    };
    let labels_path = FieldPath::new("metadata").child("labels");
    for key in [ENFORCE_LABEL, WARN_LABEL, AUDIT_LABEL] {
        if let Some(value) = labels.get(key).and_then(Value::as_str)
            && Level::parse(value).is_none()
        {
            errors.push(FieldError::not_supported(
                &labels_path.key(key),
                value,
                &LEVELS,
            ));
        }
    }
    for key in [
        ENFORCE_VERSION_LABEL,
        WARN_VERSION_LABEL,
        AUDIT_VERSION_LABEL,
    ] {
        if let Some(value) = labels.get(key).and_then(Value::as_str)
            && !valid_version(value)
        {
            errors.push(FieldError::invalid(
                &labels_path.key(key),
                format!("{value:?}: must be \"latest\" or \"v1.<minor>\""),
            ));
        }
    }
    errors
}
