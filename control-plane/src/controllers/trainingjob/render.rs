//! What a training job's children look like: its pods (rendezvous env, hostnames, gang
//! label, GPUs, checkpoint and hostfile mounts), its headless service, its MPI hostfile and
//! its pod group. Pure functions of the job, so they are tested without an API.

use std::collections::BTreeMap;

use coxswain_api::ParsedQuantity;
use coxswain_api::coxswain::{PodGroup, ReplicaGroup, TrainingJob};
use coxswain_api::defaulting::pod_group_for;
use coxswain_api::resources::NVIDIA_GPU;
use k8s_openapi::Resource;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, EnvVar, Pod, PodSpec, ResourceRequirements,
    Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// The scheduler that places training-job pods (gangs need it).
pub const SCHEDULER_NAME: &str = "coxswain";
/// Where the MPI hostfile is mounted (a directory holding `hostfile`).
pub const HOSTFILE_DIR: &str = "/etc/mpi";
/// The hostfile's key in its config map and its file name under [`HOSTFILE_DIR`].
pub const HOSTFILE_KEY: &str = "hostfile";
/// The name of the pod volume holding the hostfile.
const HOSTFILE_VOLUME: &str = "coxswain-hostfile";

/// One pod of the gang: its group, index in the group and global rank.
#[derive(Debug, Clone, PartialEq)]
pub struct Replica<'a> {
    /// The replica group.
    pub group: &'a ReplicaGroup,
    /// The index within the group.
    pub index: i32,
    /// The global rank: the master group's pods first, then the other groups in order.
    pub rank: i64,
}

/// Every pod of the job in rank order.
pub fn replicas(job: &TrainingJob) -> Vec<Replica<'_>> {
    let mut rank = 0;
    let mut out = Vec::new();
    for group in job.groups_in_rank_order() {
        for index in 0..group.replicas.max(0) {
            out.push(Replica { group, index, rank });
            rank += 1;
        }
    }
    out
}

fn job_name(job: &TrainingJob) -> &str {
    job.metadata.name.as_deref().unwrap_or_default()
}

fn namespace(job: &TrainingJob) -> &str {
    job.metadata.namespace.as_deref().unwrap_or("default")
}

/// The DNS name of a pod through the job's headless service:
/// `<job>-<group>-<index>.<job>.<namespace>.svc.cluster.local`.
pub fn pod_fqdn(job: &TrainingJob, group: &str, index: i32) -> String {
    let job_name = job_name(job);
    format!(
        "{}.{job_name}.{}.svc.cluster.local",
        job.pod_name(group, index),
        namespace(job)
    )
}

/// The rendezvous address: pod 0 of the master group.
pub fn master_addr(job: &TrainingJob) -> String {
    let master = job
        .master_group()
        .map(|g| g.name.as_str())
        .unwrap_or_default();
    pod_fqdn(job, master, 0)
}

/// Whole GPUs a replica of `group` gets: `gpusPerReplica`, else the template's
/// `nvidia.com/gpu` limits.
pub fn gpus_per_replica(group: &ReplicaGroup) -> i64 {
    if let Some(gpus) = group.gpus_per_replica {
        return i64::from(gpus.max(0));
    }
    let containers = group.template.spec.iter().flat_map(|s| &s.containers);
    containers
        .filter_map(|c| c.resources.as_ref()?.limits.as_ref()?.get(NVIDIA_GPU))
        .filter_map(|q| ParsedQuantity::parse(&q.0).ok())
        .map(|q| i64::try_from(q.millis() / 1000).unwrap_or(0))
        .sum()
}

/// The ownerReference that makes the job its children's controller.
pub fn owner_reference(job: &TrainingJob) -> OwnerReference {
    OwnerReference {
        api_version: TrainingJob::API_VERSION.to_string(),
        kind: TrainingJob::KIND.to_string(),
        name: job_name(job).to_string(),
        uid: job.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn child_meta(job: &TrainingJob, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(namespace(job).to_string()),
        labels: Some(BTreeMap::from([(
            TrainingJob::JOB_NAME_LABEL.to_string(),
            job_name(job).to_string(),
        )])),
        owner_references: Some(vec![owner_reference(job)]),
        ..Default::default()
    }
}

/// The env every container of `replica`'s pod gets (see docs/controllers.md).
pub fn rendezvous_env(job: &TrainingJob, replica: &Replica<'_>) -> Vec<(String, String)> {
    let world = job.total_replicas().to_string();
    let rank = replica.rank.to_string();
    let addr = master_addr(job);
    let port = job
        .spec
        .master_port
        .unwrap_or(TrainingJob::DEFAULT_MASTER_PORT)
        .to_string();
    let nproc = gpus_per_replica(replica.group).max(1).to_string();
    let mut env = vec![
        ("JOB_NAME", job_name(job).to_string()),
        ("MASTER_ADDR", addr.clone()),
        ("MASTER_PORT", port.clone()),
        ("WORLD_SIZE", world.clone()),
        ("RANK", rank.clone()),
        ("NODE_RANK", rank.clone()),
        ("LOCAL_RANK", "0".to_string()),
        ("PET_NNODES", world),
        ("PET_NODE_RANK", rank),
        ("PET_MASTER_ADDR", addr),
        ("PET_MASTER_PORT", port),
        ("PET_NPROC_PER_NODE", nproc),
        (
            "OMPI_MCA_orte_default_hostfile",
            format!("{HOSTFILE_DIR}/{HOSTFILE_KEY}"),
        ),
    ];
    if job.spec.checkpoint_volume.is_some() {
        env.push(("CHECKPOINT_DIR", String::new()));
    }
    env.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The pod of `replica`: the group's template plus the gang's labels, stable hostname,
/// rendezvous env, hostfile and checkpoint mounts, GPUs, `restartPolicy: Never` (the
/// controller restarts the gang) and the `coxswain` scheduler.
pub fn pod(job: &TrainingJob, replica: &Replica<'_>) -> Pod {
    let group = replica.group;
    let name = job.pod_name(&group.name, replica.index);
    let template_meta = group.template.metadata.clone().unwrap_or_default();
    let mut meta = child_meta(job, name.clone());
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    for (key, value) in template_meta.labels.unwrap_or_default() {
        labels.entry(key).or_insert(value);
    }
    labels.insert(
        TrainingJob::REPLICA_GROUP_LABEL.to_string(),
        group.name.clone(),
    );
    labels.insert(
        TrainingJob::REPLICA_INDEX_LABEL.to_string(),
        replica.index.to_string(),
    );
    labels.insert(PodGroup::POD_LABEL.to_string(), job_name(job).to_string());
    meta.annotations = template_meta.annotations.filter(|a| !a.is_empty());

    let mut spec = group.template.spec.clone().unwrap_or_default();
    spec.hostname = Some(name);
    spec.subdomain = Some(job_name(job).to_string());
    spec.scheduler_name = Some(SCHEDULER_NAME.to_string());
    spec.restart_policy = Some("Never".to_string());
    if spec.priority_class_name.is_none() {
        spec.priority_class_name = job.spec.priority_class_name.clone();
    }
    add_gpus(&mut spec, gpus_per_replica(group));
    spec.volumes.get_or_insert_with(Vec::new).push(Volume {
        name: HOSTFILE_VOLUME.to_string(),
        config_map: Some(ConfigMapVolumeSource {
            name: hostfile_name(job),
            ..Default::default()
        }),
        ..Default::default()
    });
    let env = rendezvous_env(job, replica);
    let checkpoint = job.spec.checkpoint_volume.as_deref();
    let checkpoint_path = job
        .spec
        .checkpoint_path
        .as_deref()
        .unwrap_or(TrainingJob::DEFAULT_CHECKPOINT_PATH);
    let containers = spec.init_containers.iter_mut().flatten();
    for container in containers.chain(spec.containers.iter_mut()) {
        let mounts = container.volume_mounts.get_or_insert_with(Vec::new);
        mounts.push(VolumeMount {
            name: HOSTFILE_VOLUME.to_string(),
            mount_path: HOSTFILE_DIR.to_string(),
            read_only: Some(true),
            ..Default::default()
        });
        let mut env = env.clone();
        if let Some(volume) = checkpoint {
            let dir = match mounts.iter().find(|m| m.name == volume) {
                Some(mount) => mount.mount_path.clone(),
                None => {
                    mounts.push(VolumeMount {
                        name: volume.to_string(),
                        mount_path: checkpoint_path.to_string(),
                        ..Default::default()
                    });
                    checkpoint_path.to_string()
                }
            };
            for (name, value) in &mut env {
                if name == "CHECKPOINT_DIR" {
                    *value = dir.clone();
                }
            }
        }
        add_env(container, env);
    }
    Pod {
        metadata: meta,
        spec: Some(spec),
        status: None,
    }
}

/// Adds `env` to the container; a variable the template already sets keeps its value.
fn add_env(container: &mut Container, env: Vec<(String, String)>) {
    let vars = container.env.get_or_insert_with(Vec::new);
    for (name, value) in env {
        if !vars.iter().any(|v| v.name == name) {
            vars.push(EnvVar {
                name,
                value: Some(value),
                value_from: None,
            });
        }
    }
}

/// Gives the first container `gpus` GPUs when no container asks for any, and makes every
/// container's GPU request equal its limit (extended resources are not overcommitted).
fn add_gpus(spec: &mut PodSpec, gpus: i64) {
    let declares = spec.containers.iter().any(|c| {
        c.resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .is_some_and(|l| l.contains_key(NVIDIA_GPU))
    });
    if !declares
        && gpus > 0
        && let Some(first) = spec.containers.first_mut()
    {
        first
            .resources
            .get_or_insert_with(ResourceRequirements::default)
            .limits
            .get_or_insert_with(BTreeMap::new)
            .insert(NVIDIA_GPU.to_string(), Quantity(gpus.to_string()));
    }
    for container in &mut spec.containers {
        let Some(resources) = container.resources.as_mut() else {
            continue;
        };
        if let Some(limit) = resources.limits.as_ref().and_then(|l| l.get(NVIDIA_GPU)) {
            let limit = limit.clone();
            resources
                .requests
                .get_or_insert_with(BTreeMap::new)
                .entry(NVIDIA_GPU.to_string())
                .or_insert(limit);
        }
    }
}

/// The name of the job's hostfile config map: `<job>-hostfile`.
pub fn hostfile_name(job: &TrainingJob) -> String {
    format!("{}-hostfile", job_name(job))
}

/// The MPI hostfile: one `<fqdn> slots=<gpus or 1>` line per replica, in rank order.
pub fn hostfile(job: &TrainingJob) -> String {
    replicas(job)
        .iter()
        .map(|r| {
            format!(
                "{} slots={}\n",
                pod_fqdn(job, &r.group.name, r.index),
                gpus_per_replica(r.group).max(1)
            )
        })
        .collect()
}

/// The config map holding the job's hostfile.
pub fn hostfile_config_map(job: &TrainingJob) -> ConfigMap {
    ConfigMap {
        metadata: child_meta(job, hostfile_name(job)),
        data: Some(BTreeMap::from([(HOSTFILE_KEY.to_string(), hostfile(job))])),
        ..Default::default()
    }
}

/// The headless service that gives every pod the DNS name `<pod>.<job>.<ns>.svc...`;
/// not-ready pods are published so the rendezvous can start before all are ready.
pub fn headless_service(job: &TrainingJob) -> Service {
    let port = job
        .spec
        .master_port
        .unwrap_or(TrainingJob::DEFAULT_MASTER_PORT);
    Service {
        metadata: child_meta(job, job_name(job).to_string()),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_string()),
            selector: Some(BTreeMap::from([(
                TrainingJob::JOB_NAME_LABEL.to_string(),
                job_name(job).to_string(),
            )])),
            publish_not_ready_addresses: Some(true),
            ports: Some(vec![ServicePort {
                name: Some("rendezvous".to_string()),
                port,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// The job's pod group: [`pod_group_for`] with the job's own `minMember` when it sets one.
pub fn pod_group(job: &TrainingJob) -> PodGroup {
    let mut group = pod_group_for(job);
    if let Some(min) = job.spec.min_member {
        group.spec.min_member = min;
    }
    group.metadata.owner_references = Some(vec![owner_reference(job)]);
    group
        .metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(
            TrainingJob::JOB_NAME_LABEL.to_string(),
            job_name(job).to_string(),
        );
    group
}

#[cfg(test)]
pub(crate) mod tests;
