//! The rolling-update arithmetic, as Kubernetes does it: how far the new ReplicaSet may grow
//! (`maxSurge`) and how far the old ones may shrink (`maxUnavailable`). Pure functions.

use k8s_openapi::api::apps::v1::RollingUpdateDeployment;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// A ReplicaSet's size and how many of its pods are available, capped at its size (pods
/// beyond it are about to be deleted, unavailable ones first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RsCount {
    /// `spec.replicas`.
    pub replicas: i32,
    /// Available pods, at most `replicas`.
    pub available: i32,
}

/// `value` of `total`: an integer, or a percentage rounded up or down. `field` names it in
/// the error.
pub fn scaled_value(
    value: &IntOrString,
    total: i32,
    round_up: bool,
    field: &str,
) -> Result<i32, String> {
    match value {
        IntOrString::Int(n) if *n >= 0 => Ok(*n),
        IntOrString::Int(n) => Err(format!("{field}: must be non-negative, got {n}")),
        IntOrString::String(s) => {
            let percent: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .filter(|p| *p >= 0)
                .ok_or_else(|| format!("{field}: {s:?} is not an integer or a percentage"))?;
            let scaled = percent * i64::from(total);
            let value = if round_up {
                (scaled + 99) / 100
            } else {
                scaled / 100
            };
            Ok(value.min(i64::from(i32::MAX)) as i32)
        }
    }
}

/// `(maxSurge, maxUnavailable)` for `replicas`: defaults 25 % each, surge rounded up,
/// unavailable rounded down, and never both zero (unavailable becomes 1).
pub fn surge_and_unavailable(
    replicas: i32,
    rolling: Option<&RollingUpdateDeployment>,
) -> Result<(i32, i32), String> {
    let quarter = IntOrString::String("25%".into());
    let surge = rolling
        .and_then(|r| r.max_surge.as_ref())
        .unwrap_or(&quarter);
    let unavailable = rolling
        .and_then(|r| r.max_unavailable.as_ref())
        .unwrap_or(&quarter);
    let surge = scaled_value(
        surge,
        replicas,
        true,
        "spec.strategy.rollingUpdate.maxSurge",
    )?;
    let unavailable = scaled_value(
        unavailable,
        replicas,
        false,
        "spec.strategy.rollingUpdate.maxUnavailable",
    )?;
    if surge == 0 && unavailable == 0 {
        return Ok((0, 1));
    }
    Ok((surge, unavailable.min(replicas)))
}

/// The new ReplicaSet's next size: grow while all ReplicaSets together stay within
/// `replicas + max_surge`.
pub fn new_rs_target(replicas: i32, max_surge: i32, total: i32, new: i32) -> i32 {
    if new >= replicas {
        return replicas;
    }
    let max_total = replicas + max_surge;
    if total >= max_total {
        return new;
    }
    new + (max_total - total).min(replicas - new)
}

/// The old ReplicaSets' next sizes (oldest first): first drop their unavailable pods, then
/// shrink while at least `replicas - max_unavailable` pods stay available.
pub fn old_rs_targets(
    replicas: i32,
    max_unavailable: i32,
    new: RsCount,
    olds: &[RsCount],
) -> Vec<i32> {
    let mut targets: Vec<i32> = olds.iter().map(|o| o.replicas).collect();
    let old_total: i32 = targets.iter().sum();
    if old_total == 0 {
        return targets;
    }
    let min_available = replicas - max_unavailable;
    let new_unavailable = new.replicas - new.available;
    let max_scaled_down = old_total + new.replicas - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return targets;
    }
    let mut cleaned = 0;
    for (target, old) in targets.iter_mut().zip(olds) {
        if cleaned >= max_scaled_down {
            break;
        }
        let unhealthy = (old.replicas - old.available).max(0);
        let down = unhealthy.min(max_scaled_down - cleaned);
        *target -= down;
        cleaned += down;
    }
    let available: i32 = new.available
        + targets
            .iter()
            .zip(olds)
            .map(|(t, o)| o.available.min(*t))
            .sum::<i32>();
    let mut to_remove = available - min_available;
    for target in targets.iter_mut() {
        if to_remove <= 0 {
            break;
        }
        let down = (*target).min(to_remove);
        *target -= down;
        to_remove -= down;
    }
    targets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_as_kubernetes_does() {
        let rolling = RollingUpdateDeployment::default();
        assert_eq!(surge_and_unavailable(10, Some(&rolling)), Ok((3, 2)));
        assert_eq!(surge_and_unavailable(1, None), Ok((1, 0)));
        let zero = RollingUpdateDeployment {
            max_surge: Some(IntOrString::Int(0)),
            max_unavailable: Some(IntOrString::String("0%".into())),
        };
        assert_eq!(surge_and_unavailable(4, Some(&zero)), Ok((0, 1)));
        let bad = RollingUpdateDeployment {
            max_surge: Some(IntOrString::String("lots".into())),
            max_unavailable: None,
        };
        assert!(
            surge_and_unavailable(4, Some(&bad))
                .unwrap_err()
                .contains("maxSurge")
        );
    }

    #[test]
    fn a_rollout_never_drops_below_min_available() {
        // 4 replicas, surge 0, unavailable 1: every step keeps 3 available.
        let (replicas, surge, unavailable) = (4, 0, 1);
        let mut new = RsCount {
            replicas: 0,
            available: 0,
        };
        let mut old = RsCount {
            replicas: 4,
            available: 4,
        };
        for _ in 0..20 {
            let targets = old_rs_targets(replicas, unavailable, new, &[old]);
            old.replicas = targets[0];
            old.available = old.available.min(old.replicas);
            assert!(new.available + old.available >= replicas - unavailable);
            new.replicas =
                new_rs_target(replicas, surge, old.replicas + new.replicas, new.replicas);
            assert!(old.replicas + new.replicas <= replicas + surge);
            // The kubelet makes every new pod available before the next step.
            new.available = new.replicas;
        }
        assert_eq!((old.replicas, new.replicas, new.available), (0, 4, 4));
    }

    #[test]
    fn unavailable_old_pods_go_first() {
        // 3 replicas, min available 2: the 2 unavailable old pods go, the available one stays.
        let new = RsCount {
            replicas: 1,
            available: 1,
        };
        let old = RsCount {
            replicas: 3,
            available: 1,
        };
        assert_eq!(old_rs_targets(3, 1, new, &[old]), vec![1]);
        // While the new pod is not available either, only one unhealthy old pod may go.
        let new = RsCount {
            replicas: 1,
            available: 0,
        };
        assert_eq!(old_rs_targets(3, 1, new, &[old]), vec![2]);
    }
}
