//! Known container escapes, tried on real runc and crun, each against a host canary:
//!
//! - a working directory `/proc/self/fd/<n>`, from the pod spec or from the image
//!   (CVE-2024-21626; runc here is older than its fix, so the agent must refuse it);
//! - a `subPath` that is a symlink planted by an earlier container to point out of its
//!   volume (CVE-2021-25741);
//! - `LD_PRELOAD` in the image's environment reaching a process on the host side (the
//!   lesson of CVE-2025-23266: a hook ran with the container's environment);
//!
//! plus the hardening every container gets (no new privileges, the default capability
//! set, seccomp, masked /proc, a device cgroup that denies devices it was not given).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::{Harness, RUNTIMES, containers, drive, phase, pod, remove, uid};
use coxswain_node_agent::images::{ImageConfig, LocalImageStore, busybox};
use coxswain_node_agent::logs::read_lines;
use coxswain_node_agent::mounts::SystemMounter;
use k8s_openapi::api::core::v1::PodStatus;

const CANARY_TEXT: &str = "host canary\n";

/// A canary file on the host, in the harness's directory.
fn canary(h: &Harness) -> PathBuf {
    let path = h.dir.path().join("canary");
    std::fs::write(&path, CANARY_TEXT).unwrap();
    path
}

fn assert_canary_untouched(path: &Path) {
    assert_eq!(
        std::fs::read_to_string(path).unwrap(),
        CANARY_TEXT,
        "the host canary {} was changed",
        path.display()
    );
}

/// Registers a busybox image named `name` with `config`.
fn import_image(h: &Harness, name: &str, config: ImageConfig) {
    let rootfs = busybox::build_rootfs(
        Path::new(busybox::BUSYBOX),
        &h.dir.path().join(format!("{name}-rootfs")),
    )
    .unwrap();
    LocalImageStore::new(h.deps.config.images_dir(), Arc::new(SystemMounter))
        .import_rootfs_dir(name, &rootfs, config)
        .unwrap();
}

/// The waiting reason and message of app container `i`, once it has one.
fn waiting(status: &PodStatus, i: usize) -> Option<(String, String)> {
    let state = containers(status).get(i)?.state.clone()?;
    let w = state.waiting?;
    Some((w.reason?, w.message.unwrap_or_default()))
}

fn config_error(status: &PodStatus, i: usize) -> bool {
    waiting(status, i).is_some_and(|(reason, _)| reason == "CreateContainerConfigError")
}

fn log(h: &Harness, uid: &str, container: &str) -> String {
    let text = std::fs::read_to_string(
        h.deps
            .config
            .pod_dir(uid)
            .join(format!("logs/{container}/0.log")),
    )
    .unwrap_or_default();
    read_lines(&text)
        .into_iter()
        .map(|(_, line)| line + "\n")
        .collect()
}

/// Shell that tries to write the canary through `..` from the working directory.
fn climb_to(canary: &Path) -> String {
    format!(
        "echo pwned > ../../../../../../../..{0}; cat ../../../../../../../..{0}",
        canary.display()
    )
}

#[test]
fn a_working_dir_under_proc_self_fd_is_refused_from_the_pod_and_from_the_image() {
    for kind in RUNTIMES {
        let h = Harness::new(kind);
        let canary = canary(&h);
        import_image(
            &h,
            "workdir-fd",
            ImageConfig {
                working_dir: "/proc/self/fd/8".into(),
                ..Default::default()
            },
        );
        let script = climb_to(&canary);
        let spec = serde_json::json!({"restartPolicy": "Never", "containers": [
            {"name": "podspec", "image": "busybox", "workingDir": "/proc/self/fd/7",
             "command": ["sh", "-c", script]},
            {"name": "image", "image": "workdir-fd", "command": ["sh", "-c", script]},
        ]});
        let mut w = h.worker(pod(&uid(), spec));
        let status = drive(&mut w, |s| config_error(s, 0) && config_error(s, 1));
        for (i, dir) in [(0, "/proc/self/fd/7"), (1, "/proc/self/fd/8")] {
            let (_, message) = waiting(&status, i).unwrap();
            assert!(
                message.contains(&format!("workingDir {dir:?}: must not be under /proc")),
                "{kind:?}: {message}"
            );
        }
        assert_canary_untouched(&canary);
        remove(&mut w, &h.clock);
    }
}

#[test]
fn a_sub_path_symlinked_out_of_its_volume_is_refused_and_one_inside_is_mounted() {
    for kind in RUNTIMES {
        let h = Harness::new(kind);
        let canary = canary(&h);
        let uid = uid();
        // The init container plants the symlinks a later container mounts.
        let spec = serde_json::json!({"restartPolicy": "Never",
        "volumes": [{"name": "data", "emptyDir": {}}],
        "initContainers": [{"name": "plant", "image": "busybox", "command": ["sh", "-c",
            "mkdir /data/inner && echo inside > /data/inner/file && \
             ln -s / /data/escape && ln -s inner /data/alias"],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
        "containers": [
            {"name": "good", "image": "busybox", "command": ["cat", "/in/file"],
             "volumeMounts": [{"name": "data", "mountPath": "/in", "subPath": "alias"}]},
            {"name": "evil", "image": "busybox", "command": ["sh", "-c",
                format!("echo pwned > /host{}", canary.display())],
             "volumeMounts": [{"name": "data", "mountPath": "/host", "subPath": "escape"}]},
        ]});
        let mut w = h.worker(pod(&uid, spec));
        let status = drive(&mut w, |s| {
            config_error(s, 1)
                && containers(s)[0]
                    .state
                    .as_ref()
                    .is_some_and(|st| st.terminated.is_some())
        });
        let (_, message) = waiting(&status, 1).unwrap();
        assert!(
            message.contains("subPath \"escape\"") && message.contains("outside the volume"),
            "{kind:?}: {message}"
        );
        let good = containers(&status)[0].state.clone().unwrap();
        let good = good.terminated.unwrap();
        assert_eq!(good.exit_code, 0, "{kind:?}: {good:?}");
        assert_eq!(log(&h, &uid, "good"), "inside\n", "{kind:?}");
        assert_canary_untouched(&canary);
        remove(&mut w, &h.clock);
    }
}

/// Builds a shared object whose constructor creates `marker` in any process loading it.
fn preload_library(dir: &Path, marker: &Path) -> PathBuf {
    let source = dir.join("preload.c");
    std::fs::write(
        &source,
        format!(
            "#include <fcntl.h>\n#include <unistd.h>\n\
             __attribute__((constructor)) static void mark(void) {{\n\
             int fd = open(\"{}\", O_WRONLY | O_CREAT | O_APPEND, 0644);\n\
             if (fd >= 0) {{ write(fd, \"x\", 1); close(fd); }} }}\n",
            marker.display()
        ),
    )
    .unwrap();
    let library = dir.join("preload.so");
    let out = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&source)
        .output()
        .expect("the LD_PRELOAD test needs a C compiler (cc), which Rust's linker needs too");
    assert!(out.status.success(), "cc: {out:?}");
    library
}

#[test]
fn ld_preload_in_the_image_env_reaches_no_host_side_process() {
    for kind in RUNTIMES {
        let h = Harness::new(kind);
        let marker = h.dir.path().join("preloaded");
        let library = preload_library(h.dir.path(), &marker);
        // The library does fire in a host process that is given it.
        let proof = Command::new("/bin/true")
            .env("LD_PRELOAD", &library)
            .status()
            .unwrap();
        assert!(
            proof.success() && marker.exists(),
            "the preload library never ran"
        );
        std::fs::remove_file(&marker).unwrap();

        let preload = format!("LD_PRELOAD={}", library.display());
        import_image(
            &h,
            "preloading",
            ImageConfig {
                env: vec![preload.clone()],
                ..Default::default()
            },
        );
        let uid = uid();
        let spec = serde_json::json!({"restartPolicy": "Never", "containers": [{
            "name": "main", "image": "preloading", "command": ["sh", "-c", "echo $LD_PRELOAD"],
        }]});
        let mut w = h.worker(pod(&uid, spec));
        let bundle = h.deps.config.container_dir(&format!("{uid}_main"));
        let hooks = std::cell::RefCell::new(None);
        let status = drive(&mut w, |s| {
            if hooks.borrow().is_none()
                && let Ok(text) = std::fs::read_to_string(bundle.join("config.json"))
            {
                let config: serde_json::Value = serde_json::from_str(&text).unwrap();
                *hooks.borrow_mut() = Some(config["hooks"].clone());
            }
            phase(s) == "Succeeded" || phase(s) == "Failed"
        });
        assert_eq!(phase(&status), "Succeeded", "{kind:?}: {status:#?}");
        // The container got its environment; nothing on the host loaded the library.
        assert_eq!(log(&h, &uid, "main"), format!("{}\n", library.display()));
        let hooks = hooks.into_inner();
        assert!(
            hooks.as_ref().is_some_and(|h| h.is_null()),
            "{kind:?}: the spec runs hooks: {hooks:?}"
        );
        assert!(
            !marker.exists(),
            "{kind:?}: a host-side process (shim, runtime, hook) loaded the image's LD_PRELOAD"
        );
        remove(&mut w, &h.clock);
    }
}

#[test]
fn containers_run_without_new_privileges_with_default_capabilities_and_masked_proc() {
    for kind in RUNTIMES {
        let h = Harness::new(kind);
        let uid = uid();
        let show = "grep -E '^(NoNewPrivs|CapBnd|Seccomp):' /proc/self/status; \
                    echo keys=$(grep -c ' /proc/keys ' /proc/self/mountinfo); \
                    mknod /tmp/mem c 1 1 && (head -c 1 /tmp/mem >/dev/null 2>&1 \
                      && echo mem=read || echo mem=denied); \
                    echo null=$(echo x > /dev/null && echo ok)";
        let spec = serde_json::json!({"restartPolicy": "Never", "containers": [
            {"name": "plain", "image": "busybox", "command": ["sh", "-c", show]},
            {"name": "loose", "image": "busybox", "command": ["sh", "-c", show],
             "securityContext": {"allowPrivilegeEscalation": true,
                                 "capabilities": {"drop": ["ALL"], "add": ["MKNOD"]}}},
        ]});
        let mut w = h.worker(pod(&uid, spec));
        let status = drive(&mut w, |s| phase(s) == "Succeeded" || phase(s) == "Failed");
        assert_eq!(phase(&status), "Succeeded", "{kind:?}: {status:#?}");
        let plain = log(&h, &uid, "plain");
        for line in [
            "NoNewPrivs:\t1",
            "CapBnd:\t00000000a80425fb",
            "Seccomp:\t2",
            "mem=denied",
            "null=ok",
            "keys=1",
        ] {
            assert!(plain.contains(line), "{kind:?}: no {line:?} in\n{plain}");
        }
        let loose = log(&h, &uid, "loose");
        for line in ["NoNewPrivs:\t0", "CapBnd:\t0000000008000000", "mem=denied"] {
            assert!(loose.contains(line), "{kind:?}: no {line:?} in\n{loose}");
        }
        remove(&mut w, &h.clock);
    }
}
