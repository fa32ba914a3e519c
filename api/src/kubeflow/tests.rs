//! `PyTorchJob`: registration, defaulting, validation, conversion to a `TrainingJob`, and
//! the example manifests of the trainer.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::*;
use crate::coxswain::{
    ReplicaGroup, ReplicaGroupStatus, ReplicaRestartPolicy, SuccessPolicyType, TrainingJobStatus,
};
use crate::defaulting::{apply_defaults, pod_group_for};
use crate::validation::validate;
use crate::{Object, decode, decode_one, registry};

const PYTORCHJOB_EXAMPLE: &str = include_str!("../../../examples/pytorchjob.yaml");
const TRAININGJOB_EXAMPLE: &str = include_str!("../../../examples/trainingjob-trainer.yaml");

fn example() -> PyTorchJob {
    match decode_one(PYTORCHJOB_EXAMPLE.as_bytes()) {
        Ok(Object::PyTorchJob(job)) => job,
        other => panic!("examples/pytorchjob.yaml must hold a PyTorchJob: {other:?}"),
    }
}

/// A job from YAML text (decoded, not defaulted).
fn job(yaml: &str) -> PyTorchJob {
    match decode_one(yaml.as_bytes()) {
        Ok(Object::PyTorchJob(job)) => job,
        other => panic!("not a PyTorchJob: {other:?}"),
    }
}

const MINIMAL: &str = "
apiVersion: kubeflow.org/v1
kind: PyTorchJob
metadata: {name: mnist, namespace: ml}
spec:
  pytorchReplicaSpecs:
    master:
      template:
        spec:
          containers: [{name: pytorch, image: trainer:1}]
    Worker:
      replicas: 3
      template:
        spec:
          containers:
            - name: pytorch
              image: trainer:1
              env: [{name: MASTER_PORT, value: '1'}, {name: DATA, value: /data}]
";

/// The problems of `job` as `path: message` lines.
fn problems(job: PyTorchJob) -> Vec<String> {
    validate(&Object::PyTorchJob(job))
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// The value of `name` in the environment of the group's first container.
fn env(group: &ReplicaGroup, name: &str) -> Option<String> {
    let container = &group.template.spec.as_ref()?.containers[0];
    let var = container.env.iter().flatten().find(|e| e.name == name)?;
    var.value.clone()
}

#[test]
fn the_kind_is_registered_like_kubeflow_serves_it() {
    let info = registry::lookup("kubeflow.org/v1", "PyTorchJob").expect("registered");
    assert_eq!(
        (info.group, info.version, info.plural, info.namespaced),
        ("kubeflow.org", "v1", "pytorchjobs", true)
    );
    assert_eq!(registry::resolve("pytorchjob"), Some(info));
    assert_eq!(registry::resolve("pytorchjobs.kubeflow.org"), Some(info));
    assert_eq!(
        registry::store_key("kubeflow.org/v1", "PyTorchJob", Some("ml"), "mnist"),
        Ok("/registry/kubeflow.org/pytorchjobs/ml/mnist".to_string())
    );
    // Kubeflow's name rule is a DNS-1035 label: no leading digit.
    let mut numeric = job(MINIMAL);
    numeric.metadata.name = Some("1mnist".to_string());
    assert!(
        problems(numeric)
            .iter()
            .any(|p| p.starts_with("metadata.name")),
    );
}

#[test]
fn defaulting_fills_kubeflow_defaults_once() {
    let mut object = Object::PyTorchJob(job(MINIMAL));
    apply_defaults(&mut object);
    let Object::PyTorchJob(defaulted) = &object else {
        unreachable!()
    };
    let specs = &defaulted.spec.pytorch_replica_specs;
    assert_eq!(specs.keys().collect::<Vec<_>>(), vec![MASTER, WORKER]);
    let master = &specs[MASTER];
    assert_eq!(master.replicas, Some(1));
    assert_eq!(master.restart_policy, Some(RestartPolicy::OnFailure));
    assert_eq!(specs[WORKER].replicas, Some(3));
    let port = &master.template.spec.as_ref().unwrap().containers[0]
        .ports
        .as_ref()
        .unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.container_port),
        (Some(DEFAULT_PORT_NAME), DEFAULT_PORT)
    );
    let run_policy = defaulted.spec.run_policy.as_ref().unwrap();
    assert_eq!(run_policy.clean_pod_policy, Some(CleanPodPolicy::None));
    assert_eq!(defaulted.spec.nproc_per_node.as_deref(), Some("auto"));
    assert_eq!(validate(&object), vec![]);
    let again = {
        let mut copy = object.clone();
        apply_defaults(&mut copy);
        copy
    };
    assert_eq!(again, object);
}

#[test]
fn validation_names_the_field_of_each_kubeflow_rule() {
    let mut bad = job(MINIMAL);
    let specs = &mut bad.spec.pytorch_replica_specs;
    let mut master = specs.remove("master").unwrap();
    master.replicas = Some(2);
    specs.insert(MASTER.to_string(), master);
    let worker = specs.get_mut(WORKER).unwrap();
    worker.template.spec.as_mut().unwrap().containers[0].name = "trainer".to_string();
    specs.insert("Chief".to_string(), ReplicaSpec::default());
    bad.spec.nproc_per_node = Some("many".to_string());
    bad.spec.run_policy = Some(RunPolicy {
        backoff_limit: Some(-1),
        scheduling_policy: Some(SchedulingPolicy {
            min_available: Some(9),
            ..Default::default()
        }),
        ..Default::default()
    });
    bad.spec.elastic_policy = Some(ElasticPolicy {
        rdzv_backend: Some("zookeeper".to_string()),
        n_proc_per_node: Some(2),
        ..Default::default()
    });
    bad.api_version = "kubeflow.org/v2".to_string();
    let found = problems(bad);
    for expected in [
        "apiVersion: must be \"kubeflow.org/v1\"",
        "spec.pytorchReplicaSpecs.Master.replicas: must be 1",
        "spec.pytorchReplicaSpecs.Worker.template.spec.containers: a container named \"pytorch\" is required",
        "spec.pytorchReplicaSpecs.Chief: Unsupported value: \"Chief\": supported values: \"Master\", \"Worker\"",
        "spec.nprocPerNode: \"many\": must be auto, cpu, gpu or a whole number of at least 1",
        "spec.runPolicy.backoffLimit: must be greater than or equal to 0",
        "spec.runPolicy.schedulingPolicy.minAvailable: must be between 1 and the job's 6 replicas",
        "spec.elasticPolicy.nProcPerNode: is deprecated and conflicts with spec.nprocPerNode: set only spec.nprocPerNode",
        "spec.elasticPolicy.rdzvBackend: Unsupported value: \"zookeeper\": supported values: \"c10d\", \"etcd\", \"etcd-v2\"",
    ] {
        assert!(
            found.iter().any(|f| f == expected),
            "{expected}\nin {found:#?}"
        );
    }
    assert_eq!(found.len(), 9, "{found:#?}");
}

/// [`MINIMAL`] with its `master` key written as Kubeflow's defaulting writes it.
fn minimal() -> PyTorchJob {
    let mut job = job(MINIMAL);
    let specs = &mut job.spec.pytorch_replica_specs;
    let master = specs.remove("master").unwrap();
    specs.insert(MASTER.to_string(), master);
    job
}

#[test]
fn bad_gangs_are_refused_naming_the_field() {
    assert_eq!(problems(minimal()), Vec::<String>::new());
    // A GPU no device plugin could serve (not <vendor domain>/<type>).
    let mut bare_gpu = minimal();
    let worker = bare_gpu.spec.pytorch_replica_specs.get_mut(WORKER).unwrap();
    worker.template.spec.as_mut().unwrap().containers[0].resources =
        Some(k8s_openapi::api::core::v1::ResourceRequirements {
            limits: Some(
                [(
                    "gpu".to_string(),
                    k8s_openapi::apimachinery::pkg::api::resource::Quantity("1".to_string()),
                )]
                .into(),
            ),
            ..Default::default()
        });
    let found = problems(bare_gpu);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with(
            "spec.pytorchReplicaSpecs.Worker.template.spec.containers[0].resources.limits[gpu]: "
        ) && found[0].contains("like nvidia.com/gpu"),
        "{found:#?}"
    );

    // No pods at all.
    let mut empty = job(MINIMAL);
    empty.spec.pytorch_replica_specs.remove("master");
    empty
        .spec
        .pytorch_replica_specs
        .get_mut(WORKER)
        .unwrap()
        .replicas = Some(0);
    assert_eq!(
        problems(empty),
        vec!["spec.pytorchReplicaSpecs: the replicas of all types must add up to at least 1"]
    );

    // Pod names that cannot be host names: `<job>-worker-<i>` over 63 characters.
    let mut long = minimal();
    long.metadata.name = Some("m".repeat(55));
    let found = problems(long);
    assert_eq!(found.len(), 2, "{found:#?}");
    for (found, replica_type) in found.iter().zip(["Master", "Worker"]) {
        assert!(
            found.starts_with(&format!(
                "spec.pytorchReplicaSpecs.{replica_type}: pod names like"
            )) && found.contains("64 characters"),
            "{found}"
        );
    }
}

#[test]
fn an_unknown_restart_policy_is_refused_with_its_path() {
    let text = MINIMAL.replace("replicas: 3", "replicas: 3\n      restartPolicy: Sometimes");
    let error = decode_one(text.as_bytes()).expect_err("an unknown policy must not decode");
    assert!(
        error
            .to_string()
            .contains("spec.pytorchReplicaSpecs.Worker.restartPolicy"),
        "{error}"
    );
}

#[test]
fn the_example_converts_to_a_valid_training_job_with_kubeflow_ranks() {
    let job = example();
    assert_eq!(validate(&Object::PyTorchJob(job.clone())), vec![]);
    let converted = to_training_job(&job).expect("the example converts");
    assert_eq!(converted.metadata.name.as_deref(), Some("pytorch-trainer"));
    assert_eq!(converted.metadata.namespace.as_deref(), Some("default"));
    let groups = &converted.spec.replica_groups;
    let names: Vec<(&str, i32)> = groups
        .iter()
        .map(|g| (g.name.as_str(), g.replicas))
        .collect();
    assert_eq!(names, vec![("master", 1), ("worker", 1)]);
    for (group, rank) in groups.iter().zip(["0", "1"]) {
        assert_eq!(env(group, "RANK").as_deref(), Some(rank), "{}", group.name);
        assert_eq!(env(group, "PET_NODE_RANK").as_deref(), Some(rank));
        assert_eq!(env(group, "WORLD_SIZE").as_deref(), Some("2"));
        assert_eq!(env(group, "PET_NNODES").as_deref(), Some("2"));
        assert_eq!(
            env(group, "MASTER_ADDR").as_deref(),
            Some("pytorch-trainer-master-0")
        );
        assert_eq!(env(group, "MASTER_PORT").as_deref(), Some("23456"));
        assert_eq!(env(group, "EPOCHS").as_deref(), Some("20"), "user env kept");
        assert_eq!(group.restart_policy, Some(ReplicaRestartPolicy::OnFailure));
        let labels = group
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap();
        assert_eq!(labels[JOB_NAME_LABEL], "pytorch-trainer");
        assert_eq!(labels[REPLICA_TYPE_LABEL], group.name);
    }
    // The master's pod is named as Kubeflow names it, so MASTER_ADDR reaches it.
    assert_eq!(converted.pod_name("master", 0), "pytorch-trainer-master-0");
    let success = converted.spec.success_policy.clone().unwrap();
    assert_eq!(
        (success.type_, success.group.as_deref()),
        (SuccessPolicyType::Group, Some("master"))
    );
    assert_eq!(converted.spec.queue.as_deref(), Some("default"));
    assert_eq!(
        converted.spec.run_policy.as_ref().unwrap().backoff_limit,
        Some(3)
    );

    let mut object = Object::TrainingJob(converted.clone());
    assert_eq!(validate(&object), vec![]);
    apply_defaults(&mut object);
    assert_eq!(validate(&object), vec![]);
    assert_eq!(pod_group_for(&converted).spec.min_member, 2);
}

#[test]
fn several_workers_get_the_shared_environment_but_no_fixed_rank() {
    let mut source = job(MINIMAL);
    source.metadata.uid = Some("u-1".to_string());
    source.spec.nproc_per_node = Some("2".to_string());
    let converted = to_training_job(&source).expect("converts");
    let worker = &converted.spec.replica_groups[1];
    assert_eq!((worker.name.as_str(), worker.replicas), ("worker", 3));
    assert_eq!(env(worker, "RANK"), None);
    assert_eq!(env(worker, "WORLD_SIZE").as_deref(), Some("8"));
    assert_eq!(env(worker, "PET_NNODES").as_deref(), Some("4"));
    assert_eq!(env(worker, "PET_NPROC_PER_NODE").as_deref(), Some("2"));
    assert_eq!(
        env(worker, "MASTER_PORT").as_deref(),
        Some("23456"),
        "Kubeflow's value wins"
    );
    assert_eq!(env(worker, "DATA").as_deref(), Some("/data"));
    let master = &converted.spec.replica_groups[0];
    assert_eq!(env(master, "RANK").as_deref(), Some("0"));
    let owner = &converted.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (
            owner.kind.as_str(),
            owner.name.as_str(),
            owner.uid.as_str(),
            owner.controller
        ),
        ("PyTorchJob", "mnist", "u-1", Some(true))
    );
}

#[test]
fn a_worker_only_job_succeeds_when_all_workers_do_and_gets_no_master_address() {
    let mut source = job(MINIMAL);
    source.spec.pytorch_replica_specs.remove("master");
    let converted = to_training_job(&source).expect("converts");
    let worker = &converted.spec.replica_groups[0];
    assert_eq!(converted.spec.replica_groups.len(), 1);
    assert_eq!(env(worker, "MASTER_ADDR"), None);
    assert_eq!(env(worker, "PET_NNODES").as_deref(), Some("3"));
    assert_eq!(
        converted.spec.success_policy.unwrap().type_,
        SuccessPolicyType::AllWorkers
    );
}

#[test]
fn conversion_refuses_invalid_jobs_and_partial_gangs_naming_the_field() {
    let mut partial = job(MINIMAL);
    partial.spec.run_policy = Some(RunPolicy {
        scheduling_policy: Some(SchedulingPolicy {
            min_available: Some(2),
            ..Default::default()
        }),
        ..Default::default()
    });
    let error = to_training_job(&partial).expect_err("a gang of 2 of 4 is refused");
    assert_eq!(
        error.to_string(),
        "spec.runPolicy.schedulingPolicy.minAvailable: coxswain starts all 4 pods of a job \
         as one gang: set it to 4 or leave it unset"
    );

    let mut two_masters = job(MINIMAL);
    two_masters
        .spec
        .pytorch_replica_specs
        .get_mut("master")
        .unwrap()
        .replicas = Some(2);
    let error = to_training_job(&two_masters).expect_err("two masters are refused");
    assert!(
        error
            .to_string()
            .contains("spec.pytorchReplicaSpecs.Master.replicas: must be 1"),
        "{error}"
    );
}

#[test]
fn a_training_job_status_reads_back_in_kubeflow_terms() {
    let time = Time(Default::default());
    let status = TrainingJobStatus {
        conditions: vec![Condition {
            type_: "Running".to_string(),
            status: "True".to_string(),
            reason: "AllPodsRunning".to_string(),
            message: String::new(),
            last_transition_time: time.clone(),
            observed_generation: None,
        }],
        replica_groups: vec![
            ReplicaGroupStatus {
                name: "master".to_string(),
                active: 1,
                ..Default::default()
            },
            ReplicaGroupStatus {
                name: "worker".to_string(),
                active: 2,
                failed: 1,
                ..Default::default()
            },
        ],
        start_time: Some(time.clone()),
        ..Default::default()
    };
    let back = status_from_training_job(&status);
    let condition = &back.conditions[0];
    assert_eq!(
        (
            condition.type_.as_str(),
            condition.reason.as_deref(),
            condition.message.as_deref()
        ),
        ("Running", Some("AllPodsRunning"), None)
    );
    assert_eq!(condition.last_update_time, Some(time.clone()));
    assert_eq!(back.replica_statuses[MASTER].active, 1);
    assert_eq!(
        (
            back.replica_statuses[WORKER].active,
            back.replica_statuses[WORKER].failed
        ),
        (2, 1)
    );
    assert_eq!(back.start_time, Some(time));
}

#[test]
fn the_trainer_training_job_example_is_valid_and_gangs_both_workers() {
    let objects = decode(TRAININGJOB_EXAMPLE.as_bytes()).expect("decodes");
    let [Object::TrainingJob(job)] = objects.as_slice() else {
        panic!("examples/trainingjob-trainer.yaml must hold one TrainingJob: {objects:?}");
    };
    let mut object = Object::TrainingJob(job.clone());
    assert_eq!(validate(&object), vec![]);
    apply_defaults(&mut object);
    assert_eq!(validate(&object), vec![]);
    assert_eq!(pod_group_for(job).spec.min_member, 2);
    // The TrainingJob controller injects the rendezvous but keeps values a template sets, so
    // the example must not pin them (a short MASTER_ADDR does not resolve in the cluster).
    let group = &job.spec.replica_groups[0];
    for name in ["MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK"] {
        assert_eq!(env(group, name), None, "the example pins {name}");
    }
}
