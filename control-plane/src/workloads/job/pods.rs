//! The pods a Job creates: labels, the completion index, hostname.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};

use crate::workloads::owned::{owner_ref, pod_from_template};

/// Label and annotation carrying an Indexed Job pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// Label with the Job's uid (also the generated selector's key).
pub const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
/// Label with the Job's name.
pub const JOB_NAME: &str = "batch.kubernetes.io/job-name";
/// Legacy form of [`CONTROLLER_UID`], still set for old selectors.
pub const LEGACY_CONTROLLER_UID: &str = "controller-uid";
/// Legacy form of [`JOB_NAME`].
pub const LEGACY_JOB_NAME: &str = "job-name";

/// The labels every pod of `job` gets (and the generated selector's template labels).
pub fn job_labels(job: &Job) -> BTreeMap<String, String> {
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    [
        (CONTROLLER_UID, uid.clone()),
        (LEGACY_CONTROLLER_UID, uid),
        (JOB_NAME, name.clone()),
        (LEGACY_JOB_NAME, name),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The completion index of an Indexed Job's pod (annotation, else label).
pub fn completion_index(pod: &Pod) -> Option<i32> {
    let meta = &pod.metadata;
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(COMPLETION_INDEX))
        .or_else(|| meta.labels.as_ref().and_then(|l| l.get(COMPLETION_INDEX)))
        .and_then(|v| v.parse().ok())
}

/// A new pod for `job`; `index` for Indexed Jobs.
pub fn new_pod(job: &Job, index: Option<i32>) -> Pod {
    let name = job.metadata.name.clone().unwrap_or_default();
    let namespace = job.metadata.namespace.clone().unwrap_or_default();
    let template = &job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut labels = job_labels(job);
    let generate_name = match index {
        Some(i) => {
            labels.insert(COMPLETION_INDEX.to_string(), i.to_string());
            format!("{name}-{i}-")
        }
        None => format!("{name}-"),
    };
    let mut pod = pod_from_template(template, &namespace, generate_name, owner_ref(job), &labels);
    if let Some(i) = index {
        pod.metadata
            .annotations
            .get_or_insert_default()
            .insert(COMPLETION_INDEX.to_string(), i.to_string());
        if let Some(spec) = pod.spec.as_mut() {
            // Stable per-index DNS names (with the template's subdomain, `<job>-<i>.<subdomain>`).
            spec.hostname = Some(format!("{name}-{i}"));
            let env = EnvVar {
                name: "JOB_COMPLETION_INDEX".to_string(),
                value: None,
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        api_version: None,
                        field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
                    }),
                    ..EnvVarSource::default()
                }),
            };
            for container in spec
                .containers
                .iter_mut()
                .chain(spec.init_containers.iter_mut().flatten())
            {
                let vars = container.env.get_or_insert_default();
                vars.retain(|v| v.name != env.name);
                vars.push(env.clone());
            }
        }
    }
    pod
}
