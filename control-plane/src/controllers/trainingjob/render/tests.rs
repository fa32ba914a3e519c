//! Unit tests of pod, service, hostfile and pod-group rendering.

use coxswain_api::coxswain::{ReplicaGroup, TrainingJob, TrainingJobSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec, Volume, VolumeMount};

use super::*;

pub(crate) fn group(name: &str, replicas: i32, gpus: Option<i32>) -> ReplicaGroup {
    ReplicaGroup {
        name: name.into(),
        replicas,
        gpus_per_replica: gpus,
        template: PodTemplateSpec {
            metadata: None,
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "trainer".into(),
                    image: Some("busybox".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        },
        restart_policy: None,
    }
}

pub(crate) fn job(groups: Vec<ReplicaGroup>) -> TrainingJob {
    let mut job = TrainingJob::new(
        "llm",
        TrainingJobSpec {
            replica_groups: groups,
            ..Default::default()
        },
    );
    job.metadata.namespace = Some("ml".into());
    job.metadata.uid = Some("uid-1".into());
    job
}

fn env_of(pod: &Pod, container: usize) -> BTreeMap<String, String> {
    pod.spec.as_ref().unwrap().containers[container]
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect()
}

#[test]
fn ranks_put_the_master_group_first() {
    let job = job(vec![group("worker", 2, None), group("master", 1, None)]);
    let order: Vec<(String, i32, i64)> = replicas(&job)
        .iter()
        .map(|r| (r.group.name.clone(), r.index, r.rank))
        .collect();
    assert_eq!(
        order,
        vec![
            ("master".into(), 0, 0),
            ("worker".into(), 0, 1),
            ("worker".into(), 1, 2)
        ]
    );
    assert_eq!(master_addr(&job), "llm-master-0.llm.ml.svc.cluster.local");
}

#[test]
fn pod_env_names_the_rendezvous() {
    let job = job(vec![group("worker", 2, Some(4))]);
    let all = replicas(&job);
    let pod = pod(&job, &all[1]);
    let env = env_of(&pod, 0);
    let expected: BTreeMap<String, String> = [
        ("JOB_NAME", "llm"),
        ("MASTER_ADDR", "llm-worker-0.llm.ml.svc.cluster.local"),
        ("MASTER_PORT", "29500"),
        ("WORLD_SIZE", "2"),
        ("RANK", "1"),
        ("NODE_RANK", "1"),
        ("LOCAL_RANK", "0"),
        ("PET_NNODES", "2"),
        ("PET_NODE_RANK", "1"),
        ("PET_MASTER_ADDR", "llm-worker-0.llm.ml.svc.cluster.local"),
        ("PET_MASTER_PORT", "29500"),
        ("PET_NPROC_PER_NODE", "4"),
        ("OMPI_MCA_orte_default_hostfile", "/etc/mpi/hostfile"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(env, expected);
}

#[test]
fn pod_is_a_stable_gang_member() {
    let mut job = job(vec![group("worker", 2, Some(4))]);
    job.spec.priority_class_name = Some("training".into());
    let all = replicas(&job);
    let pod = pod(&job, &all[1]);
    let meta = &pod.metadata;
    assert_eq!(meta.name.as_deref(), Some("llm-worker-1"));
    assert_eq!(meta.namespace.as_deref(), Some("ml"));
    let labels = meta.labels.clone().unwrap();
    assert_eq!(labels["coxswain.dev/job-name"], "llm");
    assert_eq!(labels["coxswain.dev/replica-group"], "worker");
    assert_eq!(labels["coxswain.dev/replica-index"], "1");
    assert_eq!(labels[PodGroup::POD_LABEL], "llm");
    let owner = &meta.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (
            owner.kind.as_str(),
            owner.uid.as_str(),
            owner.controller,
            owner.block_owner_deletion
        ),
        ("TrainingJob", "uid-1", Some(true), Some(true))
    );
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("llm-worker-1"));
    assert_eq!(spec.subdomain.as_deref(), Some("llm"));
    assert_eq!(spec.scheduler_name.as_deref(), Some("coxswain"));
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    assert_eq!(spec.priority_class_name.as_deref(), Some("training"));
    let resources = spec.containers[0].resources.as_ref().unwrap();
    assert_eq!(resources.limits.as_ref().unwrap()[NVIDIA_GPU].0, "4");
    assert_eq!(resources.requests.as_ref().unwrap()[NVIDIA_GPU].0, "4");
    let hostfile = spec.volumes.as_ref().unwrap().last().unwrap();
    assert_eq!(
        hostfile.config_map.as_ref().map(|c| c.name.as_str()),
        Some("llm-hostfile")
    );
    let mount = spec.containers[0].volume_mounts.as_ref().unwrap();
    assert_eq!(mount[0].mount_path, "/etc/mpi");
}

#[test]
fn user_env_wins_and_template_gpu_limits_are_kept() {
    let mut worker = group("worker", 1, None);
    let container = &mut worker.template.spec.as_mut().unwrap().containers[0];
    container.env = Some(vec![EnvVar {
        name: "MASTER_PORT".into(),
        value: Some("1234".into()),
        value_from: None,
    }]);
    container.resources = Some(ResourceRequirements {
        limits: Some(BTreeMap::from([(NVIDIA_GPU.into(), Quantity("2".into()))])),
        ..Default::default()
    });
    let job = job(vec![worker]);
    let pod = pod(&job, &replicas(&job)[0]);
    let env = env_of(&pod, 0);
    assert_eq!(env["MASTER_PORT"], "1234");
    assert_eq!(env["PET_NPROC_PER_NODE"], "2");
    let resources = pod.spec.unwrap().containers[0].resources.clone().unwrap();
    assert_eq!(resources.requests.unwrap()[NVIDIA_GPU].0, "2");
}

#[test]
fn checkpoint_volume_is_mounted_and_named() {
    let mut worker = group("worker", 1, None);
    let spec = worker.template.spec.as_mut().unwrap();
    spec.volumes = Some(vec![Volume {
        name: "ckpt".into(),
        ..Default::default()
    }]);
    spec.containers.push(Container {
        name: "sidecar".into(),
        volume_mounts: Some(vec![VolumeMount {
            name: "ckpt".into(),
            mount_path: "/state".into(),
            ..Default::default()
        }]),
        ..Default::default()
    });
    let mut job = job(vec![worker]);
    job.spec.checkpoint_volume = Some("ckpt".into());
    let pod = pod(&job, &replicas(&job)[0]);
    assert_eq!(env_of(&pod, 0)["CHECKPOINT_DIR"], "/checkpoints");
    assert_eq!(env_of(&pod, 1)["CHECKPOINT_DIR"], "/state");
    let mounts = pod.spec.as_ref().unwrap().containers[0]
        .volume_mounts
        .clone()
        .unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| m.name == "ckpt" && m.mount_path == "/checkpoints"),
        "{mounts:?}"
    );
    job.spec.checkpoint_path = Some("/ckpt".into());
    let pod = super::pod(&job, &replicas(&job)[0]);
    assert_eq!(env_of(&pod, 0)["CHECKPOINT_DIR"], "/ckpt");
}

#[test]
fn hostfile_service_and_pod_group() {
    let mut job = job(vec![group("master", 1, Some(8)), group("worker", 2, None)]);
    assert_eq!(
        hostfile(&job),
        "llm-master-0.llm.ml.svc.cluster.local slots=8\n\
         llm-worker-0.llm.ml.svc.cluster.local slots=1\n\
         llm-worker-1.llm.ml.svc.cluster.local slots=1\n"
    );
    let map = hostfile_config_map(&job);
    assert_eq!(map.metadata.name.as_deref(), Some("llm-hostfile"));
    assert!(map.data.unwrap()[HOSTFILE_KEY].starts_with("llm-master-0."));

    let service = headless_service(&job);
    let spec = service.spec.unwrap();
    assert_eq!(service.metadata.name.as_deref(), Some("llm"));
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
    assert_eq!(spec.publish_not_ready_addresses, Some(true));
    assert_eq!(spec.selector.unwrap()["coxswain.dev/job-name"], "llm");

    job.spec.queue = Some("research".into());
    let group = pod_group(&job);
    assert_eq!(group.metadata.name.as_deref(), Some("llm"));
    assert_eq!(group.spec.min_member, 3);
    assert_eq!(group.spec.queue.as_deref(), Some("research"));
    job.spec.min_member = Some(2);
    assert_eq!(pod_group(&job).spec.min_member, 2);
}
