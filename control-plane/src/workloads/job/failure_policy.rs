//! `spec.podFailurePolicy`: what a failed pod means for its Job (FailJob, Ignore, Count).

use k8s_openapi::api::batch::v1::{PodFailurePolicy, PodFailurePolicyRule};
use k8s_openapi::api::core::v1::Pod;

/// What a failed pod does to its Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Counts towards `backoffLimit` (no rule matched, `Count`, or `FailIndex`).
    Count,
    /// Not counted; the pod is replaced.
    Ignore,
    /// Fails the Job at once; the message names the rule.
    FailJob(String),
}

/// The verdict of the first rule matching `pod`, or [`Verdict::Count`].
pub fn judge(policy: Option<&PodFailurePolicy>, pod: &Pod) -> Verdict {
    let Some(policy) = policy else {
        return Verdict::Count;
    };
    for (i, rule) in policy.rules.iter().enumerate() {
        if rule_matches(rule, pod) {
            return match rule.action.as_str() {
                "FailJob" => Verdict::FailJob(format!(
                    "pod {} failed and matched spec.podFailurePolicy.rules[{i}] (FailJob)",
                    pod.metadata.name.as_deref().unwrap_or_default()
                )),
                "Ignore" => Verdict::Ignore,
                _ => Verdict::Count,
            };
        }
    }
    Verdict::Count
}

fn rule_matches(rule: &PodFailurePolicyRule, pod: &Pod) -> bool {
    if let Some(req) = &rule.on_exit_codes {
        let statuses = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
            .filter(|c| req.container_name.as_ref().is_none_or(|n| *n == c.name));
        return statuses
            .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
            .map(|t| t.exit_code)
            .filter(|code| *code != 0)
            .any(|code| match req.operator.as_str() {
                "In" => req.values.contains(&code),
                "NotIn" => !req.values.contains(&code),
                _ => false,
            });
    }
    if let Some(patterns) = &rule.on_pod_conditions {
        let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
        return patterns.iter().any(|p| {
            conditions
                .into_iter()
                .flatten()
                .any(|c| c.type_ == p.type_ && p.status.as_deref().unwrap_or("True") == c.status)
        });
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed_with(code: i32) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "status": {"phase": "Failed", "containerStatuses": [{
                "name": "main", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": code}}
            }]}
        }))
        .unwrap()
    }

    #[test]
    fn exit_code_rules_pick_the_first_match() {
        let policy: PodFailurePolicy = serde_json::from_value(serde_json::json!({"rules": [
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
            {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [1, 2]}},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [7]}}
        ]}))
        .unwrap();
        assert!(
            matches!(judge(Some(&policy), &failed_with(42)), Verdict::FailJob(m) if m.contains("rules[0]"))
        );
        assert_eq!(judge(Some(&policy), &failed_with(2)), Verdict::Ignore);
        assert_eq!(judge(Some(&policy), &failed_with(3)), Verdict::Count);
        assert_eq!(judge(Some(&policy), &failed_with(7)), Verdict::Count);
        assert_eq!(judge(None, &failed_with(42)), Verdict::Count);
    }
}
