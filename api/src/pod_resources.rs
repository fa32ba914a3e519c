//! What a pod asks for in total, as the scheduler and quotas count it.
//!
//! Follows Kubernetes' `PodRequests`: a container's request defaults to its limit; the
//! pod needs the larger of (all app containers plus sidecars) and (the largest regular
//! init container plus the sidecars started before it), plus the pod's `overhead`.
//! Sidecars are init containers with `restartPolicy: Always`. Quantities that do not
//! parse are skipped: validation reports them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::quantity::{MAX_MILLIS, ParsedQuantity, QuantityFormat};

/// Resource totals by resource name, in milli-units with the notation first seen.
#[derive(Debug, Clone, Default, PartialEq)]
struct Totals(BTreeMap<String, (i128, QuantityFormat)>);

impl Totals {
    fn add(&mut self, other: &Totals) {
        for (name, (millis, format)) in &other.0 {
            let entry = self.0.entry(name.clone()).or_insert((0, *format));
            entry.0 = entry.0.saturating_add(*millis);
        }
    }

    fn max(&mut self, other: &Totals) {
        for (name, (millis, format)) in &other.0 {
            let entry = self.0.entry(name.clone()).or_insert((*millis, *format));
            entry.0 = entry.0.max(*millis);
        }
    }

    fn add_list(&mut self, list: &BTreeMap<String, Quantity>) {
        for (name, quantity) in list {
            if let Ok(value) = ParsedQuantity::parse(&quantity.0) {
                let entry = self.0.entry(name.clone()).or_insert((0, value.format()));
                entry.0 = entry.0.saturating_add(value.millis());
            }
        }
    }

    fn into_quantities(self) -> BTreeMap<String, ParsedQuantity> {
        self.0
            .into_iter()
            .filter_map(|(name, (millis, format))| {
                let millis = millis.clamp(-MAX_MILLIS, MAX_MILLIS);
                ParsedQuantity::from_millis(millis, format)
                    .ok()
                    .map(|q| (name, q))
            })
            .collect()
    }
}

fn container_requests(container: &Container) -> Totals {
    let mut totals = Totals::default();
    let Some(resources) = &container.resources else {
        return totals;
    };
    let empty = BTreeMap::new();
    let requests = resources.requests.as_ref().unwrap_or(&empty);
    totals.add_list(requests);
    if let Some(limits) = &resources.limits {
        let defaulted: BTreeMap<String, Quantity> = limits
            .iter()
            .filter(|(name, _)| !requests.contains_key(*name))
            .map(|(name, q)| (name.clone(), q.clone()))
            .collect();
        totals.add_list(&defaulted);
    }
    totals
}

/// The resources a pod with `spec` needs on its node, by resource name.
pub fn pod_requests(spec: &PodSpec) -> BTreeMap<String, ParsedQuantity> {
    let mut running = Totals::default();
    for container in &spec.containers {
        running.add(&container_requests(container));
    }
    let mut sidecars = Totals::default();
    let mut init_peak = Totals::default();
    for container in spec.init_containers.iter().flatten() {
        let requests = container_requests(container);
        if container.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&requests);
            init_peak.max(&sidecars);
        } else {
            let mut during = sidecars.clone();
            during.add(&requests);
            init_peak.max(&during);
        }
    }
    running.add(&sidecars);
    running.max(&init_peak);
    if let Some(overhead) = &spec.overhead {
        running.add_list(overhead);
    }
    running.into_quantities()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ResourceRequirements;

    use super::*;

    fn container(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
        let list = |pairs: &[(&str, &str)]| {
            Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                    .collect(),
            )
        };
        Container {
            resources: Some(ResourceRequirements {
                requests: list(requests),
                limits: list(limits),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn totals(spec: &PodSpec) -> Vec<(String, String)> {
        pod_requests(spec)
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect()
    }

    #[test]
    fn sums_containers_and_defaults_requests_to_limits() {
        let spec = PodSpec {
            containers: vec![
                container(&[("cpu", "500m")], &[("cpu", "1"), ("nvidia.com/gpu", "2")]),
                container(&[("cpu", "1500m"), ("memory", "1Gi")], &[]),
            ],
            overhead: Some([("cpu".to_string(), Quantity("100m".into()))].into()),
            ..Default::default()
        };
        assert_eq!(
            totals(&spec),
            vec![
                ("cpu".to_string(), "2100m".to_string()),
                ("memory".to_string(), "1Gi".to_string()),
                ("nvidia.com/gpu".to_string(), "2".to_string()),
            ]
        );
    }

    #[test]
    fn init_containers_and_sidecars() {
        let mut sidecar = container(&[("cpu", "1")], &[]);
        sidecar.restart_policy = Some("Always".into());
        let spec = PodSpec {
            init_containers: Some(vec![
                container(&[("cpu", "4")], &[]),
                sidecar,
                container(&[("cpu", "3500m"), ("memory", "2Gi")], &[]),
            ]),
            containers: vec![container(&[("cpu", "2")], &[])],
            ..Default::default()
        };
        // Peak during init: 3.5 + 1 (sidecar) = 4.5 cores; running: 2 + 1 = 3 cores.
        assert_eq!(
            totals(&spec),
            vec![
                ("cpu".to_string(), "4500m".to_string()),
                ("memory".to_string(), "2Gi".to_string()),
            ]
        );
    }
}
