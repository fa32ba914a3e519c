//! runc and crun through their command line, with `--root` under the agent's
//! state dir. Both speak the same verbs (`create`, `start`, `state`, `kill`,
//! `delete`); `create` runs inside our shim so the container survives the agent.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{ContainerRuntime, ContainerState, CreateRequest, RuntimeError, Status};
use crate::shim::{ShimArgs, read_exit};

/// Which OCI runtime binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    /// opencontainers/runc.
    Runc,
    /// containers/crun.
    Crun,
}

impl RuntimeKind {
    /// The binary's name.
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Runc => "runc",
            RuntimeKind::Crun => "crun",
        }
    }

    /// Parses `runc` or `crun`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "runc" => Some(RuntimeKind::Runc),
            "crun" => Some(RuntimeKind::Crun),
            _ => None,
        }
    }
}

/// Finds `name` in `$PATH` and the sbin directories.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain([
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
        ])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// An OCI runtime driven through its CLI.
#[derive(Debug, Clone)]
pub struct OciRuntime {
    kind: RuntimeKind,
    binary: PathBuf,
    state_root: PathBuf,
    shim: PathBuf,
    seccomp: bool,
}

/// Whether `binary --version` says it was built with seccomp (runc: `libseccomp: x.y`,
/// crun: `+SECCOMP`).
fn seccomp_built_in(binary: &Path) -> bool {
    Command::new(binary)
        .arg("--version")
        .output()
        .map(|out| {
            let text = String::from_utf8_lossy(&out.stdout);
            text.contains("+SECCOMP") || text.lines().any(|l| l.starts_with("libseccomp:"))
        })
        .unwrap_or(false)
}

impl OciRuntime {
    /// A runtime of `kind` at `binary`, keeping state in `state_root`, containers under `shim`.
    /// Asks the binary whether it supports seccomp.
    pub fn new(kind: RuntimeKind, binary: PathBuf, state_root: PathBuf, shim: PathBuf) -> Self {
        Self {
            kind,
            seccomp: seccomp_built_in(&binary),
            binary,
            state_root,
            shim,
        }
    }

    /// `preferred` if installed, else runc, else crun.
    pub fn detect(
        preferred: Option<RuntimeKind>,
        state_root: PathBuf,
        shim: PathBuf,
    ) -> Result<Self, RuntimeError> {
        let order = match preferred {
            Some(kind) => vec![kind],
            None => vec![RuntimeKind::Runc, RuntimeKind::Crun],
        };
        order
            .into_iter()
            .find_map(|kind| {
                find_binary(kind.as_str())
                    .map(|b| Self::new(kind, b, state_root.clone(), shim.clone()))
            })
            .ok_or(RuntimeError::NoRuntime)
    }

    /// Which runtime this is.
    pub fn kind(&self) -> RuntimeKind {
        self.kind
    }

    /// The `--root` state directory.
    pub fn state_root(&self) -> &Path {
        &self.state_root
    }

    fn command(&self, args: &[&str]) -> Result<String, RuntimeError> {
        let out = Command::new(&self.binary)
            .arg("--root")
            .arg(&self.state_root)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| RuntimeError::io(&self.binary, e))?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        Err(RuntimeError::Command {
            command: format!("{} {}", self.binary.display(), args.join(" ")),
            message: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }

    fn known(&self, id: &str) -> bool {
        self.state_root.join(id).exists()
    }
}

impl ContainerRuntime for OciRuntime {
    fn name(&self) -> &str {
        self.kind.as_str()
    }

    fn supports_seccomp(&self) -> bool {
        self.seccomp
    }

    fn create(&self, request: &CreateRequest) -> Result<u32, RuntimeError> {
        std::fs::create_dir_all(&request.bundle)
            .map_err(|e| RuntimeError::io(&request.bundle, e))?;
        std::fs::create_dir_all(&self.state_root)
            .map_err(|e| RuntimeError::io(&self.state_root, e))?;
        let config = request.bundle.join("config.json");
        request
            .spec
            .save(&config)
            .map_err(|e| RuntimeError::Command {
                command: format!("write {}", config.display()),
                message: e.to_string(),
            })?;
        for stale in ["exit", "pid"] {
            let _ = std::fs::remove_file(request.bundle.join(stale));
        }
        let args = ShimArgs {
            runtime: self.binary.clone(),
            root: self.state_root.clone(),
            id: request.id.clone(),
            bundle: request.bundle.clone(),
            log: request.log_path.clone(),
            max_log_bytes: crate::shim::log_copy::MAX_LOG_BYTES,
        };
        let shim_log = request.bundle.join("shim.log");
        let stderr =
            std::fs::File::create(&shim_log).map_err(|e| RuntimeError::io(&shim_log, e))?;
        let mut child = Command::new(&self.shim)
            .args(args.to_args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .map_err(|e| RuntimeError::io(&self.shim, e))?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        // The shim lives as long as the container; reap it whenever it exits.
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        let line = line.trim();
        match line.strip_prefix("ok ") {
            Some(pid) => pid.parse().map_err(|_| RuntimeError::Command {
                command: format!("{} create {}", self.kind.as_str(), request.id),
                message: format!("bad shim answer {line:?}"),
            }),
            None => Err(RuntimeError::Command {
                command: format!("{} create {}", self.kind.as_str(), request.id),
                message: line.strip_prefix("error ").unwrap_or(line).to_string(),
            }),
        }
    }

    fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.command(&["start", id]).map(drop)
    }

    fn state(&self, id: &str) -> Result<Option<ContainerState>, RuntimeError> {
        if !self.known(id) {
            return Ok(None);
        }
        let text = match self.command(&["state", id]) {
            Ok(text) => text,
            Err(_) if !self.known(id) => return Ok(None),
            Err(e) => return Err(e),
        };
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| RuntimeError::Command {
                command: format!("{} state {id}", self.kind.as_str()),
                message: e.to_string(),
            })?;
        let status = match v["status"].as_str().unwrap_or("") {
            "created" => Status::Created,
            "running" => Status::Running,
            "paused" => Status::Paused,
            _ => Status::Stopped,
        };
        let pid = v["pid"]
            .as_u64()
            .filter(|p| *p > 0 && status != Status::Stopped)
            .map(|p| p as u32);
        let exit = match status {
            Status::Stopped => v["bundle"].as_str().and_then(|b| read_exit(Path::new(b))),
            _ => None,
        };
        Ok(Some(ContainerState { status, pid, exit }))
    }

    fn kill(&self, id: &str, signal: i32) -> Result<(), RuntimeError> {
        match self.command(&["kill", id, &signal.to_string()]) {
            Ok(_) => Ok(()),
            Err(e) => match self.state(id)? {
                None => Ok(()),
                Some(s) if s.status == Status::Stopped => Ok(()),
                Some(_) => Err(e),
            },
        }
    }

    fn delete(&self, id: &str) -> Result<(), RuntimeError> {
        if !self.known(id) {
            return Ok(());
        }
        match self.command(&["delete", "--force", id]) {
            Ok(_) => Ok(()),
            Err(_) if !self.known(id) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn list(&self) -> Result<Vec<String>, RuntimeError> {
        let entries = match std::fs::read_dir(&self.state_root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(RuntimeError::io(&self.state_root, e)),
        };
        let mut ids: Vec<String> = entries
            .flatten()
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        ids.sort();
        Ok(ids)
    }
}
