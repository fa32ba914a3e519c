//! Helpers for `status.conditions` lists, after apimachinery's `meta.SetStatusCondition`.
//!
//! The caller supplies the time: this crate reads no clock.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// The condition of type `type_`, if present.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of type `type_` is present with status `True`.
pub fn is_condition_true(conditions: &[Condition], type_: &str) -> bool {
    find_condition(conditions, type_).is_some_and(|c| c.status == "True")
}

/// Adds `condition`, or updates the one of its type. `lastTransitionTime` changes only
/// when the status does; reason, message and observed generation are always updated.
/// Returns whether anything changed.
pub fn set_condition(conditions: &mut Vec<Condition>, condition: Condition) -> bool {
    let Some(existing) = conditions.iter_mut().find(|c| c.type_ == condition.type_) else {
        conditions.push(condition);
        return true;
    };
    let before = existing.clone();
    if existing.status != condition.status {
        existing.status = condition.status;
        existing.last_transition_time = condition.last_transition_time;
    }
    existing.reason = condition.reason;
    existing.message = condition.message;
    existing.observed_generation = condition.observed_generation;
    *existing != before
}

/// Removes the condition of type `type_`; returns whether one was there.
pub fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) -> bool {
    let before = conditions.len();
    conditions.retain(|c| c.type_ != type_);
    conditions.len() != before
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn condition(status: &str, reason: &str, at: i64) -> Condition {
        Condition {
            type_: "Running".into(),
            status: status.into(),
            reason: reason.into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: Time(
                k8s_openapi::jiff::Timestamp::from_second(at).expect("valid timestamp"),
            ),
        }
    }

    #[test]
    fn transition_time_moves_only_with_status() {
        let mut conditions = Vec::new();
        assert!(set_condition(
            &mut conditions,
            condition("False", "Pending", 1)
        ));
        assert!(!set_condition(
            &mut conditions,
            condition("False", "Pending", 2)
        ));
        assert_eq!(
            conditions[0].last_transition_time,
            condition("False", "", 1).last_transition_time
        );
        assert!(set_condition(
            &mut conditions,
            condition("False", "Waiting", 3)
        ));
        assert_eq!(
            conditions[0].last_transition_time,
            condition("False", "", 1).last_transition_time
        );
        assert!(set_condition(
            &mut conditions,
            condition("True", "AllPodsRunning", 4)
        ));
        assert_eq!(
            conditions[0].last_transition_time,
            condition("True", "", 4).last_transition_time
        );
        assert!(is_condition_true(&conditions, "Running"));
        assert!(!is_condition_true(&conditions, "Succeeded"));
        assert!(remove_condition(&mut conditions, "Running"));
        assert!(!remove_condition(&mut conditions, "Running"));
        assert!(find_condition(&conditions, "Running").is_none());
    }
}
