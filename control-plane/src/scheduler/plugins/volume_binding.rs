//! VolumeBinding: a pod's PersistentVolumeClaims constrain its node, after kube-scheduler's
//! plugin of the same name.
//!
//! - PreFilter: a claim that does not exist (or is being deleted) makes the pod
//!   unresolvable, naming the claim; an unbound claim of an `Immediate` class whose
//!   provisioner no node runs is unschedulable ("pod has unbound immediate
//!   PersistentVolumeClaims"). An `Immediate` class of a node-local CSI driver (one some
//!   node announces) is placed like `WaitForFirstConsumer`: nothing can be provisioned
//!   before the node is known.
//! - Filter: a bound claim's volume's required node affinity must match the node; an
//!   unbound claim needs a node that announces its class's provisioner in
//!   `csi.volume.kubernetes.io/nodeid`.
//!
//! The plugin reads claims, volumes, classes and nodes from reflector stores the runner
//! keeps ([`VolumeView`]); without a view (the simulator, the benchmark) it lets every pod
//! through. Writing `volume.kubernetes.io/selected-node` and waiting for the claims to bind
//! happens in the API binder, right before the pod's binding.

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, PersistentVolume, PersistentVolumeClaim,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::reflector::{ObjectRef, Store};

use super::super::cycle_state::CycleState;
use super::super::framework::{FilterPlugin, Plugin, PreFilterPlugin, PreFilterResult};
use super::super::model::{NodeInfo, PodInfo, Requirement, RequirementOp};
use super::super::snapshot::{ClusterSnapshot, EventMask};
use super::super::status::Status;
use super::node_affinity::requirement_matches;
use crate::controllers::volumes::matching::claim_class;
use crate::nodeservice::volumes::node_drivers;

const NAME: &str = "VolumeBinding";

/// Claims, volumes, classes and nodes as the runner's reflectors last saw them.
#[derive(Clone)]
pub struct VolumeView {
    /// PersistentVolumeClaims.
    pub claims: Store<PersistentVolumeClaim>,
    /// PersistentVolumes.
    pub volumes: Store<PersistentVolume>,
    /// StorageClasses.
    pub classes: Store<StorageClass>,
    /// Nodes (for the CSI drivers they announce).
    pub nodes: Store<Node>,
}

impl std::fmt::Debug for VolumeView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeView").finish_non_exhaustive()
    }
}

/// The plugin; see the module docs.
#[derive(Debug, Default)]
pub struct VolumeBinding {
    view: Option<VolumeView>,
}

impl VolumeBinding {
    /// The plugin reading `view`.
    pub fn new(view: VolumeView) -> Self {
        VolumeBinding { view: Some(view) }
    }
}

/// The pod's namespace (from its `namespace/name` key).
fn namespace(pod: &PodInfo) -> &str {
    pod.key.split_once('/').map_or("default", |(ns, _)| ns)
}

fn bound_volume(claim: &PersistentVolumeClaim) -> Option<&str> {
    let name = claim.spec.as_ref()?.volume_name.as_deref()?;
    (!name.is_empty()).then_some(name)
}

/// Whether `node`'s labels satisfy one node-selector requirement of a volume (an
/// operator the scheduler does not know admits no node).
fn requirement_holds(req: &NodeSelectorRequirement, node: &NodeInfo) -> bool {
    RequirementOp::parse(&req.operator).is_some_and(|op| {
        let req = Requirement {
            key: req.key.clone(),
            op,
            values: req.values.clone().unwrap_or_default(),
        };
        requirement_matches(&req, node)
    })
}

/// Whether `volume`'s required node affinity (an OR of terms) admits `node`.
fn affinity_admits(volume: &PersistentVolume, node: &NodeInfo) -> bool {
    let required = volume
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref());
    let Some(required) = required else {
        return true;
    };
    required.node_selector_terms.iter().any(|term| {
        term.match_expressions
            .iter()
            .flatten()
            .all(|r| requirement_holds(r, node))
    })
}

impl VolumeView {
    fn claim(&self, namespace: &str, name: &str) -> Option<std::sync::Arc<PersistentVolumeClaim>> {
        self.claims.get(&ObjectRef::new(name).within(namespace))
    }

    fn class(&self, name: &str) -> Option<std::sync::Arc<StorageClass>> {
        self.classes.get(&ObjectRef::new(name))
    }

    fn node_runs(&self, node: &str, driver: &str) -> bool {
        self.nodes
            .get(&ObjectRef::new(node))
            .is_some_and(|n| node_drivers(&n).contains(driver))
    }

    fn any_node_runs(&self, driver: &str) -> bool {
        self.nodes
            .state()
            .iter()
            .any(|n| node_drivers(n).contains(driver))
    }
}

impl Plugin for VolumeBinding {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Claims and volumes are not cluster events of the snapshot yet: any change retries.
    fn cured_by(&self) -> EventMask {
        EventMask::ALL
    }
}

impl PreFilterPlugin for VolumeBinding {
    fn pre_filter(
        &self,
        _snapshot: &ClusterSnapshot,
        _state: &mut CycleState,
        pod: &PodInfo,
    ) -> Result<PreFilterResult, Status> {
        let Some(view) = &self.view else {
            return Ok(PreFilterResult::default());
        };
        let ns = namespace(pod);
        for name in &pod.claims {
            let Some(claim) = view.claim(ns, name) else {
                return Err(Status::unresolvable(
                    NAME,
                    format!("persistentvolumeclaim \"{name}\" not found"),
                ));
            };
            if claim.metadata.deletion_timestamp.is_some() {
                return Err(Status::unresolvable(
                    NAME,
                    format!("persistentvolumeclaim \"{name}\" is being deleted"),
                ));
            }
            if bound_volume(&claim).is_some() {
                continue;
            }
            let class = view.class(claim_class(&claim));
            let immediate = class.as_ref().is_none_or(|c| {
                c.volume_binding_mode.as_deref().unwrap_or("Immediate") == "Immediate"
            });
            let node_local = class
                .as_ref()
                .is_some_and(|c| view.any_node_runs(&c.provisioner));
            if immediate && !node_local {
                return Err(Status::unschedulable(
                    NAME,
                    "pod has unbound immediate PersistentVolumeClaims",
                ));
            }
        }
        Ok(PreFilterResult::default())
    }
}

impl FilterPlugin for VolumeBinding {
    fn filter(
        &self,
        _snapshot: &ClusterSnapshot,
        _state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        let Some(view) = &self.view else {
            return Status::success();
        };
        let ns = namespace(pod);
        for name in &pod.claims {
            let Some(claim) = view.claim(ns, name) else {
                continue;
            };
            if let Some(volume_name) = bound_volume(&claim) {
                let volume = view.volumes.get(&ObjectRef::new(volume_name));
                if volume.is_some_and(|v| !affinity_admits(&v, node)) {
                    return Status::unresolvable(NAME, "node(s) had volume node affinity conflict");
                }
                continue;
            }
            let Some(class) = view.class(claim_class(&claim)) else {
                continue;
            };
            if !view.node_runs(&node.name, &class.provisioner) {
                return Status::unresolvable(
                    NAME,
                    format!(
                        "node(s) did not run CSI driver {} for persistentvolumeclaim \"{name}\"",
                        class.provisioner
                    ),
                );
            }
        }
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::model::Resources;

    fn node(name: &str, zone: &str) -> NodeInfo {
        let mut node = NodeInfo::new(name, Resources::new(1000, 1 << 30, 10), Vec::new());
        node.labels
            .insert("kubernetes.io/hostname".into(), name.into());
        node.labels.insert("zone".into(), zone.into());
        node
    }

    fn volume(terms: serde_json::Value) -> PersistentVolume {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "v"},
            "spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": terms}}},
        }))
        .unwrap()
    }

    #[test]
    fn a_volumes_node_affinity_is_an_or_of_ands() {
        let pinned = volume(serde_json::json!([
            {"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]},
                {"key": "zone", "operator": "NotIn", "values": ["b"]},
            ]},
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["c"]}]},
        ]));
        assert!(affinity_admits(&pinned, &node("n1", "a")));
        assert!(!affinity_admits(&pinned, &node("n1", "b")));
        assert!(!affinity_admits(&pinned, &node("n2", "a")));
        assert!(affinity_admits(&pinned, &node("n2", "c")));
        let anywhere: PersistentVolume =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "v"}, "spec": {}}))
                .unwrap();
        assert!(affinity_admits(&anywhere, &node("n9", "z")));
    }

    #[test]
    fn without_a_view_every_pod_passes() {
        let mut pod = PodInfo::new("ns/p", 0, 0, 0);
        pod.claims = vec!["missing".into()];
        let plugin = VolumeBinding::default();
        let snapshot = ClusterSnapshot::new();
        assert!(
            plugin
                .pre_filter(&snapshot, &mut CycleState::new(), &pod)
                .is_ok()
        );
        assert!(
            plugin
                .filter(&snapshot, &CycleState::new(), &pod, &node("n1", "a"))
                .is_success()
        );
    }
}
