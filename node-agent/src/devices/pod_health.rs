//! Device health as a pod sees it: which of its devices the plugins report
//! unhealthy, written into its status as the condition `coxswain.dev/DevicesHealthy`
//! and as Kubernetes' `containerStatuses[].allocatedResourcesStatus` (KEP-4680), and
//! the Events a pod and its node get when a device turns unhealthy or recovers.
//! Pure functions here; the tasks that apply them are in [`super::health_events`].

use std::collections::{BTreeMap, BTreeSet};

use coxswain_api::k8s::{PodCondition, PodStatus, Time};
use k8s_openapi::api::core::v1::{ResourceHealth, ResourceStatus};

/// The pod condition saying whether every device the pod holds is healthy.
pub const DEVICES_HEALTHY: &str = "coxswain.dev/DevicesHealthy";
/// Reason (condition and Event) when a held device is unhealthy.
pub const REASON_UNHEALTHY: &str = "DeviceUnhealthy";
/// Reason of the condition when every held device is healthy.
pub const REASON_HEALTHY: &str = "DevicesHealthy";
/// Reason of the Event when the devices are healthy again.
pub const REASON_RECOVERED: &str = "DeviceRecovered";

/// One device's health, as KEP-4680 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// The plugin reports it `Healthy`.
    Healthy,
    /// The plugin reports it `Unhealthy`.
    Unhealthy,
    /// Its plugin is not connected (restarting): nothing is known.
    Unknown,
}

impl Health {
    /// The `allocatedResourcesStatus[].resources[].health` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "Healthy",
            Health::Unhealthy => "Unhealthy",
            Health::Unknown => "Unknown",
        }
    }
}

/// The devices one pod holds and their health:
/// container → resource (as the container requests it) → (device ID, health).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodDeviceHealth {
    /// The pod's namespace (empty when the checkpoint predates names).
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// Per container, per resource, the devices with their health.
    pub containers: BTreeMap<String, BTreeMap<String, Vec<(String, Health)>>>,
}

impl PodDeviceHealth {
    fn devices(&self) -> impl Iterator<Item = (&String, &String, Health)> {
        self.containers
            .values()
            .flat_map(|r| r.iter())
            .flat_map(|(resource, ds)| ds.iter().map(move |(id, h)| (resource, id, *h)))
    }

    /// The unhealthy devices, each once: (resource, device ID).
    pub fn unhealthy(&self) -> BTreeSet<(String, String)> {
        self.devices()
            .filter(|(_, _, h)| *h == Health::Unhealthy)
            .map(|(r, id, _)| (r.clone(), id.clone()))
            .collect()
    }

    /// Whether the health of some device is unknown (its plugin is away).
    pub fn any_unknown(&self) -> bool {
        self.devices().any(|(_, _, h)| h == Health::Unknown)
    }
}

/// What the pod's devices amount to: `Some(false)` a device is unhealthy,
/// `Some(true)` all healthy, `None` nothing unhealthy but some unknown.
pub fn verdict(health: &PodDeviceHealth) -> Option<bool> {
    if !health.unhealthy().is_empty() {
        Some(false)
    } else if health.any_unknown() {
        None
    } else {
        Some(true)
    }
}

/// The message naming the unhealthy devices, e.g.
/// `nvidia.com/gpu GPU-1, GPU-2 unhealthy`.
pub fn unhealthy_message(unhealthy: &BTreeSet<(String, String)>) -> String {
    let mut by_resource: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (resource, id) in unhealthy {
        by_resource.entry(resource).or_default().push(id);
    }
    let parts: Vec<String> = by_resource
        .iter()
        .map(|(resource, ids)| format!("{resource} {}", ids.join(", ")))
        .collect();
    format!("unhealthy device(s): {}", parts.join("; "))
}

/// The condition for `healthy` (the last verdict that was not unknown), keeping
/// `previous`'s transition time when the status did not change.
pub fn condition(
    health: &PodDeviceHealth,
    healthy: bool,
    previous: Option<&PodCondition>,
    now: Time,
) -> PodCondition {
    let status = if healthy { "True" } else { "False" };
    let (reason, message) = if healthy {
        (
            REASON_HEALTHY,
            "every allocated device is healthy".to_string(),
        )
    } else {
        (REASON_UNHEALTHY, unhealthy_message(&health.unhealthy()))
    };
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Some(now),
    };
    PodCondition {
        type_: DEVICES_HEALTHY.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message),
        last_transition_time,
        ..PodCondition::default()
    }
}

/// Writes `condition` into `status` (replacing one of the same type) and each
/// container's `allocatedResourcesStatus` from `health`.
pub fn decorate(status: &mut PodStatus, health: &PodDeviceHealth, condition: Option<PodCondition>) {
    if let Some(condition) = condition {
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        conditions.retain(|c| c.type_ != DEVICES_HEALTHY);
        conditions.push(condition);
    }
    let lists = [
        status.container_statuses.as_mut(),
        status.init_container_statuses.as_mut(),
    ];
    for container in lists.into_iter().flatten().flatten() {
        let Some(resources) = health.containers.get(&container.name) else {
            continue;
        };
        let statuses = resources
            .iter()
            .map(|(resource, devices)| ResourceStatus {
                name: resource.clone(),
                resources: Some(
                    devices
                        .iter()
                        .map(|(id, h)| ResourceHealth {
                            resource_id: id.clone(),
                            health: Some(h.as_str().to_string()),
                            ..ResourceHealth::default()
                        })
                        .collect(),
                ),
            })
            .collect();
        container.allocated_resources_status = Some(statuses);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coxswain_api::k8s::ContainerStatus;
    use k8s_openapi::jiff::Timestamp;

    fn health(states: &[(&str, Health)]) -> PodDeviceHealth {
        let devices = states.iter().map(|(id, h)| (id.to_string(), *h)).collect();
        PodDeviceHealth {
            namespace: "default".into(),
            name: "p".into(),
            containers: [(
                "train".to_string(),
                [("nvidia.com/gpu".to_string(), devices)].into(),
            )]
            .into(),
        }
    }

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(second).unwrap())
    }

    #[test]
    fn the_verdict_is_false_on_any_unhealthy_device_and_open_while_a_plugin_is_away() {
        use Health::*;
        assert_eq!(
            verdict(&health(&[("a", Healthy), ("b", Healthy)])),
            Some(true)
        );
        assert_eq!(
            verdict(&health(&[("a", Healthy), ("b", Unhealthy)])),
            Some(false)
        );
        assert_eq!(
            verdict(&health(&[("a", Unknown), ("b", Unhealthy)])),
            Some(false)
        );
        assert_eq!(verdict(&health(&[("a", Healthy), ("b", Unknown)])), None);
    }

    #[test]
    fn the_condition_names_the_devices_and_keeps_its_transition_time_until_it_flips() {
        let sick = health(&[("GPU-1", Health::Unhealthy), ("GPU-2", Health::Healthy)]);
        let first = condition(&sick, false, None, at(10));
        assert_eq!(first.type_, DEVICES_HEALTHY);
        assert_eq!(first.status, "False");
        assert_eq!(first.reason.as_deref(), Some(REASON_UNHEALTHY));
        assert_eq!(
            first.message.as_deref(),
            Some("unhealthy device(s): nvidia.com/gpu GPU-1")
        );
        let again = condition(&sick, false, Some(&first), at(20));
        assert_eq!(again.last_transition_time, Some(at(10)));
        let well = health(&[("GPU-1", Health::Healthy), ("GPU-2", Health::Healthy)]);
        let back = condition(&well, true, Some(&again), at(30));
        assert_eq!(back.status, "True");
        assert_eq!(back.reason.as_deref(), Some(REASON_HEALTHY));
        assert_eq!(back.last_transition_time, Some(at(30)));
    }

    #[test]
    fn decorate_replaces_the_condition_and_fills_allocated_resources_status() {
        let h = health(&[("GPU-1", Health::Unhealthy)]);
        let mut status = PodStatus {
            conditions: Some(vec![
                PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                },
                PodCondition {
                    type_: DEVICES_HEALTHY.into(),
                    status: "True".into(),
                    ..Default::default()
                },
            ]),
            container_statuses: Some(vec![
                ContainerStatus {
                    name: "train".into(),
                    ..Default::default()
                },
                ContainerStatus {
                    name: "sidecar".into(),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let c = condition(&h, false, None, at(1));
        decorate(&mut status, &h, Some(c));
        let conditions = status.conditions.as_ref().unwrap();
        assert_eq!(conditions.len(), 2);
        let ours = conditions
            .iter()
            .find(|c| c.type_ == DEVICES_HEALTHY)
            .unwrap();
        assert_eq!(ours.status, "False");
        let statuses = status.container_statuses.unwrap();
        let train = statuses[0].allocated_resources_status.as_ref().unwrap();
        assert_eq!(train.len(), 1);
        assert_eq!(train[0].name, "nvidia.com/gpu");
        let resources = train[0].resources.as_ref().unwrap();
        assert_eq!(resources[0].resource_id, "GPU-1");
        assert_eq!(resources[0].health.as_deref(), Some("Unhealthy"));
        assert!(statuses[1].allocated_resources_status.is_none());
    }
}
