//! The OpenAPI schemas served for each kind: described schemas for coxswain's kinds (what
//! `kubectl explain trainingjob.spec` prints), open objects for the Kubernetes kinds.

use coxswain_api::registry::KindInfo;
use serde_json::{Map, Value, json};

use super::openapi::schema_name;

fn string(description: &str) -> Value {
    json!({"type": "string", "description": description})
}

fn integer(description: &str) -> Value {
    json!({"type": "integer", "format": "int32", "description": description})
}

fn boolean(description: &str) -> Value {
    json!({"type": "boolean", "description": description})
}

fn open(description: &str) -> Value {
    json!({"type": "object", "description": description, "x-kubernetes-preserve-unknown-fields": true})
}

fn object(description: &str, required: &[&str], properties: &[(&str, Value)]) -> Value {
    let properties: Map<String, Value> = properties
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect();
    let mut schema =
        json!({"type": "object", "description": description, "properties": properties});
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    schema
}

fn reference(name: &str, description: &str) -> Value {
    json!({"description": description, "allOf": [{"$ref": format!("#/components/schemas/{name}")}]})
}

fn list_of(name: &str, description: &str) -> Value {
    json!({"type": "array", "description": description,
           "items": {"allOf": [{"$ref": format!("#/components/schemas/{name}")}]}})
}

const CX: &str = "dev.coxswain.v1alpha1";

/// `ObjectMeta`, with the fields users set.
pub fn object_meta() -> Value {
    object(
        "Standard object metadata.",
        &[],
        &[
            (
                "name",
                string("Name of the object, unique within its namespace."),
            ),
            (
                "generateName",
                string("Prefix of a name the server generates when name is empty."),
            ),
            (
                "namespace",
                string("Namespace of the object; empty for cluster-scoped kinds."),
            ),
            (
                "labels",
                json!({"type": "object", "description": "Labels for selecting objects.", "additionalProperties": {"type": "string"}}),
            ),
            (
                "annotations",
                json!({"type": "object", "description": "Unstructured data for tools.", "additionalProperties": {"type": "string"}}),
            ),
            (
                "finalizers",
                json!({"type": "array", "description": "Must be empty before the object is removed.", "items": {"type": "string"}}),
            ),
            (
                "ownerReferences",
                json!({"type": "array", "description": "Objects this one belongs to.", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}),
            ),
            ("uid", string("Set by the server: the object's unique id.")),
            (
                "resourceVersion",
                string("Set by the server: the version of the object, for optimistic concurrency."),
            ),
            (
                "generation",
                json!({"type": "integer", "format": "int64", "description": "Set by the server: bumped when the spec changes."}),
            ),
            (
                "creationTimestamp",
                string("Set by the server: when the object was created."),
            ),
            (
                "deletionTimestamp",
                string("Set by the server: when the object will be deleted."),
            ),
            (
                "managedFields",
                json!({"type": "array", "description": "Fields owned by each field manager (server-side apply).", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}),
            ),
        ],
    )
}

/// The top-level schema of `kind`.
pub fn kind_schema(kind: &KindInfo) -> Value {
    let (description, spec, status) = match kind.kind {
        "TrainingJob" => (
            "A distributed-training job: replica groups of pods scheduled as one gang.",
            reference(&format!("{CX}.TrainingJobSpec"), "What to run."),
            reference(
                &format!("{CX}.TrainingJobStatus"),
                "What is running, written by the controller.",
            ),
        ),
        "PodGroup" => (
            "A gang of pods that is scheduled all or nothing.",
            object(
                "The gang's requirements.",
                &["minMember"],
                &[
                    (
                        "minMember",
                        integer("Pods that must be placed together before any starts."),
                    ),
                    (
                        "minResources",
                        open("Resources the whole gang needs before it is admitted."),
                    ),
                    ("queue", string("The queue the gang is admitted through.")),
                    (
                        "priorityClassName",
                        string("The PriorityClass of the gang."),
                    ),
                    (
                        "scheduleTimeoutSeconds",
                        integer("Seconds the gang may wait to be placed."),
                    ),
                    (
                        "topology",
                        reference(
                            &format!("{CX}.TopologyConstraint"),
                            "Pack the gang into one network-topology domain.",
                        ),
                    ),
                ],
            ),
            open("Placement progress of the gang."),
        ),
        "Queue" => (
            "A queue with GPU, CPU and memory quotas that jobs are admitted through.",
            object(
                "The queue's quotas and place in the hierarchy.",
                &[],
                &[
                    (
                        "quotas",
                        open("Per-resource nominal quota and borrowing limit."),
                    ),
                    (
                        "weight",
                        integer("Share of spare capacity relative to sibling queues."),
                    ),
                    (
                        "priority",
                        integer("Higher-priority queues are admitted first."),
                    ),
                    (
                        "parent",
                        string("The parent queue, for hierarchical quotas."),
                    ),
                    ("cohort", string("Queues that may borrow from each other.")),
                    (
                        "reclaimable",
                        boolean("Whether borrowed resources may be reclaimed by preemption."),
                    ),
                ],
            ),
            open("Allocated resources and pending jobs."),
        ),
        _ => {
            let mut schema = object(
                &format!("{} ({}).", kind.kind, kind.api_version),
                &[],
                &[
                    ("apiVersion", string("The versioned schema of this object.")),
                    ("kind", string("The kind of this object.")),
                    (
                        "metadata",
                        reference(
                            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
                            "Standard object metadata.",
                        ),
                    ),
                ],
            );
            schema["x-kubernetes-preserve-unknown-fields"] = json!(true);
            schema["x-kubernetes-group-version-kind"] = json!([gvk(kind)]);
            return schema;
        }
    };
    let mut schema = object(
        description,
        &["spec"],
        &[
            ("apiVersion", string("coxswain.dev/v1alpha1")),
            ("kind", string(kind.kind)),
            (
                "metadata",
                reference(
                    "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
                    "Standard object metadata.",
                ),
            ),
            ("spec", spec),
            ("status", status),
        ],
    );
    schema["x-kubernetes-group-version-kind"] = json!([gvk(kind)]);
    schema
}

fn gvk(kind: &KindInfo) -> Value {
    json!({"group": kind.group, "version": kind.version, "kind": kind.kind})
}

/// Schemas `kind_schema(kind)` refers to.
pub fn extra_schemas(kind: &KindInfo) -> Vec<(String, Value)> {
    let topology = (
        format!("{CX}.TopologyConstraint"),
        object(
            "How a gang's pods must be packed across the network.",
            &["level"],
            &[
                (
                    "level",
                    string("The domain every pod must share: Block, Rack, Switch or Node."),
                ),
                (
                    "mode",
                    string(
                        "Required (placement fails when impossible) or Preferred (pack as tightly as possible).",
                    ),
                ),
            ],
        ),
    );
    match kind.kind {
        "TrainingJob" => vec![
            (format!("{CX}.TrainingJobSpec"), object("The desired state of a training job.", &["replicaGroups"], &[
                ("replicaGroups", list_of(&format!("{CX}.ReplicaGroup"), "The groups of identical pods (master, worker, ...); at least one.")),
                ("topology", reference(&format!("{CX}.TopologyConstraint"), "Pack the whole job into one network-topology domain.")),
                ("queue", string("The Queue the job is admitted through (default \"default\").")),
                ("priorityClassName", string("The PriorityClass of the job's pods.")),
                ("runPolicy", reference(&format!("{CX}.RunPolicy"), "Limits on the job's lifetime and retries.")),
                ("successPolicy", reference(&format!("{CX}.SuccessPolicy"), "When the job counts as succeeded (default: every pod succeeded).")),
                ("checkpointVolume", string("Name of a volume in every group's template where checkpoints are written; kept across restarts.")),
                ("checkpointPath", string("Where the checkpoint volume is mounted when a container does not mount it (default /checkpoints); exported as CHECKPOINT_DIR.")),
                ("minMember", integer("Pods that must be placed together before any is bound (default: all replicas).")),
                ("masterPort", integer("The rendezvous port on the master's pod 0, exported as MASTER_PORT (default 29500).")),
            ])),
            (format!("{CX}.ReplicaGroup"), object("A group of identical pods within a training job.", &["name", "replicas"], &[
                ("name", string("The group's name, a DNS-1123 label; part of its pods' names.")),
                ("replicas", integer("How many pods the group runs (at least 1).")),
                ("gpusPerReplica", integer("Whole GPUs each pod gets (an nvidia.com/gpu limit on the first container when the template sets none).")),
                ("template", open("The pod each replica runs (a PodTemplateSpec).")),
                ("restartPolicy", string("OnFailure (default), Always, Never or ExitCode.")),
            ])),
            (format!("{CX}.RunPolicy"), object("Limits on a training job's lifetime and retries.", &[], &[
                ("backoffLimit", integer("Gang restarts allowed before the job fails (default 3).")),
                ("activeDeadlineSeconds", integer("Seconds the job may run after it starts.")),
                ("ttlSecondsAfterFinished", integer("Seconds after finishing before the job is deleted.")),
                ("suspend", boolean("When true, no pods run.")),
                ("schedulingTimeoutSeconds", integer("Seconds the gang may wait to be scheduled before the job fails.")),
            ])),
            (format!("{CX}.SuccessPolicy"), object("When a training job counts as succeeded.", &["type"], &[
                ("type", string("AllWorkers or Group.")),
                ("group", string("The group whose pods must succeed, for type Group.")),
            ])),
            (format!("{CX}.TrainingJobStatus"), object("The observed state of a training job.", &[], &[
                ("conditions", json!({"type": "array", "description": "Created, Scheduled, Running, Restarting, Succeeded, Failed, Suspended.", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}})),
                ("replicaGroups", json!({"type": "array", "description": "Pod counters per replica group.", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}})),
                ("restarts", integer("Gang restarts so far.")),
                ("startTime", string("When the job's pods were first scheduled.")),
                ("completionTime", string("When the job succeeded or failed.")),
                ("reason", string("Why the job is in its state.")),
                ("message", string("What happened, in words a person can act on.")),
            ])),
            topology,
        ],
        "PodGroup" => vec![topology],
        _ => Vec::new(),
    }
    .into_iter()
    .filter(|(name, _)| *name != schema_name(kind))
    .collect()
}
