//! Kubernetes-style conditions on a training job's status.

use coxswain_api::coxswain::{TrainingJobConditionType, TrainingJobStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// The condition of `type_`, if the status has one.
pub fn get(status: &TrainingJobStatus, type_: TrainingJobConditionType) -> Option<&Condition> {
    status.conditions.iter().find(|c| c.type_ == type_.as_str())
}

/// Whether the condition of `type_` is `True`.
pub fn is_true(status: &TrainingJobStatus, type_: TrainingJobConditionType) -> bool {
    get(status, type_).is_some_and(|c| c.status == "True")
}

/// Sets the condition of `type_`; `lastTransitionTime` moves only when its status changes.
pub fn set(
    status: &mut TrainingJobStatus,
    type_: TrainingJobConditionType,
    value: bool,
    reason: &str,
    message: impl Into<String>,
    now: Timestamp,
) {
    let value = if value { "True" } else { "False" };
    let message = message.into();
    match status
        .conditions
        .iter_mut()
        .find(|c| c.type_ == type_.as_str())
    {
        Some(condition) => {
            if condition.status != value {
                condition.status = value.to_string();
                condition.last_transition_time = Time(now);
            }
            condition.reason = reason.to_string();
            condition.message = message;
        }
        None => status.conditions.push(Condition {
            type_: type_.as_str().to_string(),
            status: value.to_string(),
            reason: reason.to_string(),
            message,
            last_transition_time: Time(now),
            observed_generation: None,
        }),
    }
}

/// Sets the condition of `type_` to `False` only if it exists and is `True`.
pub fn clear(
    status: &mut TrainingJobStatus,
    type_: TrainingJobConditionType,
    reason: &str,
    message: impl Into<String>,
    now: Timestamp,
) {
    if is_true(status, type_) {
        set(status, type_, false, reason, message, now);
    }
}
