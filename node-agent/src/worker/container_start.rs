//! Creating and starting one container instance: image → overlay rootfs, pod spec →
//! [`ContainerConfig`] (privileges from the `securityContext`, sub paths opened inside
//! their volume) → OCI spec (plus the devices the device stage allocates), then
//! `create` + `start` in the runtime. Failures
//! become Kubernetes' reasons: `ErrImagePull` (waiting, retried with back-off),
//! `CreateContainerConfigError` (waiting), `StartError` (terminated, exit code 128).

use std::collections::BTreeMap;

use coxswain_api::k8s::Container;

use super::PodWorker;
use super::observe::is_restart;
use super::record::{Current, Termination, to_ns};
use crate::images::Image;
use crate::runtime::security::container_security;
use crate::runtime::{ContainerConfig, CreateRequest, VolumeMount, build_spec};
use crate::sandbox::qos::{CPU_PERIOD_US, container_amounts, millis_to_shares};

/// A start failure: waiting (config problems, image pulls) or terminated (start errors).
pub(super) enum StartFailure {
    Waiting(&'static str, String),
    Terminated(String),
}

/// The argv Kubernetes runs: `command` replaces the entrypoint, `args` the cmd.
pub fn argv(c: &Container, image: &Image) -> Vec<String> {
    let command = c.command.clone().unwrap_or_default();
    let args = c.args.clone().unwrap_or_default();
    match (command.is_empty(), args.is_empty()) {
        (false, _) => command.into_iter().chain(args).collect(),
        (true, false) => image
            .config
            .entrypoint
            .iter()
            .cloned()
            .chain(args)
            .collect(),
        (true, true) => image
            .config
            .entrypoint
            .iter()
            .chain(image.config.cmd.iter())
            .cloned()
            .collect(),
    }
}

impl PodWorker {
    pub(super) fn start_container(&mut self, init: bool, i: usize) {
        let rec = if init { &self.init[i] } else { &self.apps[i] };
        let (id, spec, restart) = (rec.id.clone(), rec.spec.clone(), is_restart(rec));
        self.release(&id);
        let result = self.create_instance(
            &id,
            &spec,
            if restart {
                rec.restart_count + 1
            } else {
                rec.restart_count
            },
        );
        let now = self.deps.clock.now();
        let backoff = self.deps.config.backoff_initial;
        let rec = self.record_mut(init, i);
        if restart {
            rec.restart_count += 1;
        }
        match result {
            Ok(pid) => {
                rec.current = Current::Running {
                    pid: Some(pid),
                    started: now,
                }
            }
            Err(StartFailure::Waiting(reason, message)) => {
                rec.current = Current::Waiting {
                    reason: reason.into(),
                    message: Some(message),
                };
                rec.next_start = Some(now + backoff);
                if restart {
                    rec.restart_count -= 1; // nothing was created
                }
            }
            Err(StartFailure::Terminated(message)) => {
                rec.current = Current::Terminated(Termination {
                    exit_code: 128,
                    signal: None,
                    reason: "StartError".into(),
                    message: Some(message),
                    started_ns: None,
                    finished_ns: to_ns(now),
                });
            }
        }
        let rec = rec.clone();
        self.save_checkpoint(&rec);
        if !rec.is_running() {
            self.release(&rec.id);
        }
    }

    fn create_instance(&self, id: &str, c: &Container, attempt: u32) -> Result<u32, StartFailure> {
        let image_name = c.image.clone().unwrap_or_default();
        if image_name.is_empty() {
            return Err(StartFailure::Waiting(
                "InvalidImageName",
                format!("container {:?}: no image given", c.name),
            ));
        }
        let image = self
            .deps
            .images
            .resolve(&image_name)
            .map_err(|e| StartFailure::Waiting(e.reason(), e.to_string()))?;
        let args = argv(c, &image);
        if args.is_empty() {
            return Err(StartFailure::Waiting(
                "CreateContainerConfigError",
                format!(
                    "container {:?}: no command given and image {image_name:?} has none",
                    c.name
                ),
            ));
        }
        let sandbox = self
            .sandbox
            .clone()
            .ok_or_else(|| StartFailure::Waiting("ContainerCreating", "no sandbox yet".into()))?;
        let mut mounts = Vec::new();
        // Staged sub paths, held until the runtime has mounted them (see `subpath`).
        let mut sub_paths = Vec::new();
        for m in c.volume_mounts.iter().flatten() {
            let source = self.volumes.get(&m.name).ok_or_else(|| {
                StartFailure::Waiting(
                    "CreateContainerConfigError",
                    format!(
                        "container {:?}: volumeMount {:?} names no volume of the pod",
                        c.name, m.name
                    ),
                )
            })?;
            let source = match m.sub_path.as_deref() {
                Some(sub) if !sub.is_empty() => {
                    let target = self
                        .deps
                        .config
                        .container_dir(id)
                        .join("subpaths")
                        .join(sub_paths.len().to_string());
                    let staged = self
                        .deps
                        .volumes
                        .stage_sub_path(source, sub, &target)
                        .map_err(|e| {
                            StartFailure::Waiting(
                                "CreateContainerConfigError",
                                format!("container {:?}: {e}", c.name),
                            )
                        })?;
                    let path = staged.path().to_path_buf();
                    sub_paths.push(staged);
                    path
                }
                _ => source.clone(),
            };
            mounts.push(VolumeMount {
                source,
                destination: m.mount_path.clone(),
                read_only: m.read_only.unwrap_or(false),
            });
        }
        mounts.extend(self.dns_mounts(&mounts));
        let env = self.environment(c, &image)?;
        let pod_sc = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.clone())
            .unwrap_or_default();
        let sc = c.security_context.clone().unwrap_or_default();
        let security = container_security(&pod_sc, c).map_err(|e| {
            StartFailure::Waiting(
                "CreateContainerConfigError",
                format!("container {:?}: {e}", c.name),
            )
        })?;
        let (requests, limits) = container_amounts(c);
        let meta = &self.pod.metadata;
        let annotations = BTreeMap::from([
            (
                "io.kubernetes.pod.name".to_string(),
                meta.name.clone().unwrap_or_default(),
            ),
            (
                "io.kubernetes.pod.namespace".to_string(),
                meta.namespace.clone().unwrap_or_default(),
            ),
            ("io.kubernetes.pod.uid".to_string(), self.uid.clone()),
            ("io.kubernetes.container.name".to_string(), c.name.clone()),
        ]);
        let dir = self.deps.config.container_dir(id);
        let rootfs = self
            .deps
            .images
            .mount_rootfs(&image, &dir)
            .map_err(|e| StartFailure::Waiting("CreateContainerError", e.to_string()))?;
        let config = ContainerConfig {
            args,
            env,
            cwd: c
                .working_dir
                .clone()
                .filter(|w| !w.is_empty())
                .unwrap_or_else(|| image.config.working_dir.clone()),
            uid: sc.run_as_user.or(pod_sc.run_as_user).unwrap_or(0) as u32,
            gid: sc.run_as_group.or(pod_sc.run_as_group).unwrap_or(0) as u32,
            rootfs,
            readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
            mounts,
            cgroups_path: format!("{}/{id}", sandbox.cgroup),
            hostname: self.hostname(),
            host_network: crate::network::uses_host_network(&self.pod),
            namespaces: Some(sandbox.namespaces.clone()),
            memory_limit: limits.memory_bytes,
            cpu_shares: requests.cpu_millis.map(millis_to_shares),
            cpu_quota_us: limits
                .cpu_millis
                .map(|m| (m * CPU_PERIOD_US / 1000).max(1000)),
            seccomp: self.deps.config.seccomp && self.deps.runtime.supports_seccomp(),
            security,
            annotations,
        };
        let mut spec = build_spec(&config)
            .map_err(|e| StartFailure::Waiting("CreateContainerConfigError", e.to_string()))?;
        self.deps
            .devices
            .prepare_container(&self.pod, c, &mut spec)
            .map_err(|e| StartFailure::Waiting(e.reason(), e.to_string()))?;
        let request = CreateRequest {
            id: id.to_string(),
            bundle: dir,
            spec,
            log_path: self
                .pod_dir()
                .join("logs")
                .join(&c.name)
                .join(format!("{attempt}.log")),
        };
        let pid = self
            .deps
            .runtime
            .create(&request)
            .map_err(|e| StartFailure::Terminated(e.to_string()))?;
        drop(sub_paths); // mounted by now
        self.deps
            .runtime
            .start(id)
            .map_err(|e| StartFailure::Terminated(e.to_string()))?;
        Ok(pid)
    }
}
