//! The pod's persistent network, IPC and UTS namespaces, bind-mounted at
//! `<root>/netns/<uid>`, `<root>/ipcns/<uid>` and `<root>/utsns/<uid>` so that every
//! container of the pod can join them by path and they outlive the agent.
//!
//! [`UnshareNamespaces`] creates them in a helper process (util-linux `unshare`
//! with `--net=FILE` etc.), so no agent thread ever changes namespaces.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use super::SandboxError;
use crate::mounts::{Mounter, is_mount_point};

/// The kinds of namespace a pod sandbox holds, with their directory names.
pub const KINDS: [(&str, &str); 3] = [("net", "netns"), ("ipc", "ipcns"), ("uts", "utsns")];

/// Paths of one pod's namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNamespaces {
    /// The network namespace.
    pub net: PathBuf,
    /// The IPC namespace.
    pub ipc: PathBuf,
    /// The UTS namespace (the pod's hostname).
    pub uts: PathBuf,
}

impl PodNamespaces {
    /// Where `uid`'s namespaces live under the agent root.
    pub fn at(root: &Path, uid: &str) -> Self {
        Self {
            net: root.join("netns").join(uid),
            ipc: root.join("ipcns").join(uid),
            uts: root.join("utsns").join(uid),
        }
    }

    fn all(&self) -> [&Path; 3] {
        [&self.net, &self.ipc, &self.uts]
    }
}

/// Creating and removing persistent namespaces.
pub trait NamespaceOps: Send + Sync {
    /// Creates the namespaces (idempotent: existing mounts are kept), hostname set.
    fn create(&self, ns: &PodNamespaces, hostname: &str) -> Result<(), SandboxError>;
    /// Unmounts and removes them (idempotent).
    fn remove(&self, ns: &PodNamespaces) -> Result<(), SandboxError>;
    /// Pod uids that have any namespace file under `root`.
    fn list(&self, root: &Path) -> Result<BTreeSet<String>, SandboxError>;
}

/// Real namespaces through `unshare(1)` and `nsenter(1)`.
pub struct UnshareNamespaces {
    mounter: Box<dyn Mounter>,
}

impl UnshareNamespaces {
    /// Uses `mounter` to unmount namespace files.
    pub fn new(mounter: Box<dyn Mounter>) -> Self {
        Self { mounter }
    }
}

fn run(cmd: &mut Command, what: &Path) -> Result<(), SandboxError> {
    let out = cmd.output().map_err(|source| SandboxError::Helper {
        path: what.to_path_buf(),
        message: format!("{cmd:?}: {source} (is util-linux installed?)"),
    })?;
    if out.status.success() {
        return Ok(());
    }
    Err(SandboxError::Helper {
        path: what.to_path_buf(),
        message: format!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    })
}

impl NamespaceOps for UnshareNamespaces {
    fn create(&self, ns: &PodNamespaces, hostname: &str) -> Result<(), SandboxError> {
        if ns.all().iter().all(|p| is_mount_point(p)) {
            return Ok(());
        }
        self.remove(ns)?;
        for path in ns.all() {
            let dir = path.parent().unwrap_or(Path::new("/"));
            std::fs::create_dir_all(dir).map_err(|e| SandboxError::io(dir, e))?;
            std::fs::write(path, b"").map_err(|e| SandboxError::io(path, e))?;
        }
        let created = run(
            Command::new("unshare")
                .arg(format!("--net={}", ns.net.display()))
                .arg(format!("--ipc={}", ns.ipc.display()))
                .arg(format!("--uts={}", ns.uts.display()))
                .args(["hostname", hostname]),
            &ns.net,
        )
        .and_then(|()| {
            run(
                Command::new("nsenter")
                    .arg(format!("--net={}", ns.net.display()))
                    .args(["ip", "link", "set", "lo", "up"]),
                &ns.net,
            )
        });
        if created.is_err() {
            let _ = self.remove(ns);
        }
        created
    }

    fn remove(&self, ns: &PodNamespaces) -> Result<(), SandboxError> {
        for path in ns.all() {
            if self.mounter.is_mounted(path) {
                self.mounter.unmount(path)?;
            }
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(SandboxError::io(path, e)),
            }
        }
        Ok(())
    }

    fn list(&self, root: &Path) -> Result<BTreeSet<String>, SandboxError> {
        list_files(root)
    }
}

fn list_files(root: &Path) -> Result<BTreeSet<String>, SandboxError> {
    let mut uids = BTreeSet::new();
    for (_, dir) in KINDS {
        let dir = root.join(dir);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(SandboxError::io(&dir, e)),
        };
        uids.extend(
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned()),
        );
    }
    Ok(uids)
}

/// Namespaces as plain files, for unit tests and hollow nodes.
#[derive(Debug, Default)]
pub struct FakeNamespaces {
    /// Hostnames set per net namespace path.
    pub hostnames: Mutex<Vec<(PathBuf, String)>>,
}

impl NamespaceOps for FakeNamespaces {
    fn create(&self, ns: &PodNamespaces, hostname: &str) -> Result<(), SandboxError> {
        for path in ns.all() {
            let dir = path.parent().unwrap_or(Path::new("/"));
            std::fs::create_dir_all(dir).map_err(|e| SandboxError::io(dir, e))?;
            std::fs::write(path, b"").map_err(|e| SandboxError::io(path, e))?;
        }
        let mut names = self.hostnames.lock().unwrap_or_else(|e| e.into_inner());
        names.push((ns.net.clone(), hostname.to_string()));
        Ok(())
    }

    fn remove(&self, ns: &PodNamespaces) -> Result<(), SandboxError> {
        for path in ns.all() {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(SandboxError::io(path, e)),
            }
        }
        Ok(())
    }

    fn list(&self, root: &Path) -> Result<BTreeSet<String>, SandboxError> {
        list_files(root)
    }
}
