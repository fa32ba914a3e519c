//! Which nodes a DaemonSet's pod belongs on: `nodeSelector`, required node affinity
//! (`matchExpressions` on labels, `matchFields` on `metadata.name`) and taints the pod
//! tolerates (with the tolerations Kubernetes adds to every daemon pod).

use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, PodSpec, Taint, Toleration};

/// The tolerations Kubernetes adds to every daemon pod, so daemons run on nodes that are
/// not ready, unreachable, under pressure or cordoned.
pub fn default_tolerations() -> Vec<Toleration> {
    let t = |key: &str, effect: &str| Toleration {
        key: Some(key.to_string()),
        operator: Some("Exists".to_string()),
        effect: Some(effect.to_string()),
        ..Toleration::default()
    };
    vec![
        t("node.kubernetes.io/not-ready", "NoExecute"),
        t("node.kubernetes.io/unreachable", "NoExecute"),
        t("node.kubernetes.io/disk-pressure", "NoSchedule"),
        t("node.kubernetes.io/memory-pressure", "NoSchedule"),
        t("node.kubernetes.io/pid-pressure", "NoSchedule"),
        t("node.kubernetes.io/unschedulable", "NoSchedule"),
    ]
}

/// Whether `toleration` tolerates `taint`.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if toleration
        .effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => toleration
            .key
            .as_deref()
            .is_none_or(|k| k.is_empty() || k == taint.key),
        _ => {
            toleration.key.as_deref() == Some(taint.key.as_str())
                && toleration.value.as_deref().unwrap_or_default()
                    == taint.value.as_deref().unwrap_or_default()
        }
    }
}

fn requirement_matches(req: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = req.values.as_deref().unwrap_or_default();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if req.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// Whether a pod with `spec` should run on `node`.
pub fn should_run(spec: &PodSpec, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let name = node.metadata.name.clone().unwrap_or_default();
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let terms = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|r| r.node_selector_terms.as_slice());
    let affinity_ok = terms.is_none_or(|terms| {
        terms.iter().any(|term| {
            term.match_expressions
                .iter()
                .flatten()
                .all(|r| requirement_matches(r, labels.get(&r.key)))
                && term
                    .match_fields
                    .iter()
                    .flatten()
                    .all(|r| r.key == "metadata.name" && requirement_matches(r, Some(&name)))
        })
    });
    let tolerations: Vec<Toleration> = spec
        .tolerations
        .iter()
        .flatten()
        .cloned()
        .chain(default_tolerations())
        .collect();
    let taints_ok = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .all(|taint| tolerations.iter().any(|t| tolerates(t, taint)));
    selector_ok && affinity_ok && taints_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(json: serde_json::Value) -> Node {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn selector_affinity_and_taints_decide() {
        let spec: PodSpec = serde_json::from_value(serde_json::json!({
            "containers": [{"name": "c"}],
            "nodeSelector": {"gpu": "true"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["b"]}]}]
            }}},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}]
        }))
        .unwrap();
        let plain = node(
            serde_json::json!({"metadata": {"name": "a", "labels": {"gpu": "true", "zone": "a"}}}),
        );
        assert!(should_run(&spec, &plain));
        let no_gpu = node(serde_json::json!({"metadata": {"name": "b", "labels": {"zone": "a"}}}));
        assert!(!should_run(&spec, &no_gpu));
        let zone_b = node(
            serde_json::json!({"metadata": {"name": "c", "labels": {"gpu": "true", "zone": "b"}}}),
        );
        assert!(!should_run(&spec, &zone_b));
        let tolerated = node(
            serde_json::json!({"metadata": {"name": "d", "labels": {"gpu": "true"}},
            "spec": {"taints": [{"key": "dedicated", "value": "ml", "effect": "NoSchedule"},
                                {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
                                {"key": "x", "effect": "PreferNoSchedule"}]}}),
        );
        assert!(should_run(&spec, &tolerated));
        let untolerated = node(
            serde_json::json!({"metadata": {"name": "e", "labels": {"gpu": "true"}},
            "spec": {"taints": [{"key": "dedicated", "value": "web", "effect": "NoExecute"}]}}),
        );
        assert!(!should_run(&spec, &untolerated));
    }
}
