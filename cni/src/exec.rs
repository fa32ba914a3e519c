//! Running a plugin binary: the narrow `PluginExec` seam, its real
//! implementation (a child process with a timeout), plugin lookup in CNI_PATH
//! and the CNI environment variables.

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The CNI_PATH used when none is configured.
pub const DEFAULT_CNI_PATH: &str = "/usr/lib/cni:/opt/cni/bin";

/// The environment variables that carry the protocol, cleared from the
/// inherited environment before each call so a caller's own values never leak.
const CNI_VARS: [&str; 6] = [
    "CNI_COMMAND",
    "CNI_CONTAINERID",
    "CNI_NETNS",
    "CNI_IFNAME",
    "CNI_ARGS",
    "CNI_PATH",
];

/// A CNI command (`CNI_COMMAND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// Attach a container to the network.
    Add,
    /// Detach it.
    Del,
    /// Verify the attachment is as ADD left it.
    Check,
    /// Report supported spec versions.
    Version,
    /// Report whether the plugin is ready for ADDs (1.1.0).
    Status,
    /// Collect resources of attachments that no longer exist (1.1.0).
    Gc,
}

impl Command {
    /// The value of `CNI_COMMAND`.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Status => "STATUS",
            Command::Gc => "GC",
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One plugin invocation: binary, CNI environment and stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    /// The plugin binary.
    pub path: PathBuf,
    /// The command (also present as `CNI_COMMAND` in `env`).
    pub command: Command,
    /// The CNI_* variables, in the order they are set.
    pub env: Vec<(String, String)>,
    /// The JSON written to the plugin's stdin.
    pub stdin: Vec<u8>,
}

impl ExecRequest {
    /// The value of a CNI_* variable, if set.
    pub fn env_var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What a plugin left behind.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecOutput {
    /// Whether it exited with status 0.
    pub success: bool,
    /// The exit status as text (`exit status 1`, `signal 9`).
    pub status: String,
    /// Everything it printed on stdout (a result or an error object).
    pub stdout: Vec<u8>,
    /// Everything it printed on stderr (logs; never parsed).
    pub stderr: Vec<u8>,
}

/// Why a plugin could not be run at all.
#[derive(Debug)]
pub enum ExecFailure {
    /// It could not be started or its pipes failed.
    Io(std::io::Error),
    /// It ran past the timeout and was killed.
    TimedOut(Duration),
}

/// The seam between the CNI protocol and the processes it runs. The real one
/// is [`ProcessExec`]; unit tests use [`crate::fake::ScriptedExec`]; a test
/// can wrap either (e.g. to run plugins inside a test network namespace).
pub trait PluginExec: Send + Sync {
    /// Runs the plugin to completion (blocking).
    fn exec(&self, request: &ExecRequest) -> Result<ExecOutput, ExecFailure>;

    /// Finds the binary for `plugin` in `search_path`, in order.
    fn find_plugin(&self, plugin: &str, search_path: &[PathBuf]) -> Option<PathBuf> {
        search_path
            .iter()
            .map(|dir| dir.join(plugin))
            .find(|p| is_executable(p))
    }
}

/// Splits a CNI_PATH-style list (`dir:dir`), dropping empty entries.
pub fn parse_cni_path(value: &str) -> Vec<PathBuf> {
    value
        .split(':')
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .collect()
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs plugins as child processes, killing any that outlive `timeout`.
#[derive(Debug, Clone)]
pub struct ProcessExec {
    timeout: Duration,
}

impl ProcessExec {
    /// A runner with the given per-call timeout.
    pub fn new(timeout: Duration) -> Self {
        ProcessExec { timeout }
    }
}

impl Default for ProcessExec {
    /// 60 s, generous enough for IPAM plugins that wait on a lock.
    fn default() -> Self {
        ProcessExec::new(Duration::from_secs(60))
    }
}

impl PluginExec for ProcessExec {
    fn exec(&self, request: &ExecRequest) -> Result<ExecOutput, ExecFailure> {
        let mut cmd = std::process::Command::new(&request.path);
        for var in CNI_VARS {
            cmd.env_remove(var);
        }
        cmd.envs(request.env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(ExecFailure::Io)?;
        let deadline = Instant::now() + self.timeout;

        // stdin, stdout and stderr each get a thread so that a plugin that
        // writes before reading cannot deadlock us on a full pipe.
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let input = request.stdin.clone();
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let (tx, rx) = mpsc::channel();
        let out = spawn_reader(child.stdout.take().expect("stdout is piped"), 0, tx.clone());
        let err = spawn_reader(child.stderr.take().expect("stderr is piped"), 1, tx);

        // Both pipes closing is the usual sign the plugin exited; waiting on
        // that (rather than polling) keeps the measured latency honest.
        let mut outputs = [Vec::new(), Vec::new()];
        for _ in 0..2 {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok((index, bytes)) => outputs[index] = bytes,
                Err(_) => return Err(kill(&mut child, self.timeout)),
            }
        }
        // The exit usually lands within microseconds of the pipes closing;
        // back off from 50 µs so a plugin that keeps running is not spun on.
        let mut pause = Duration::from_micros(50);
        let status = loop {
            match child.try_wait().map_err(ExecFailure::Io)? {
                Some(status) => break status,
                None if Instant::now() >= deadline => return Err(kill(&mut child, self.timeout)),
                None => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(5));
                }
            }
        };
        let _ = out.join();
        let _ = err.join();
        // A plugin that exits without reading stdin breaks the pipe; that is
        // its business, the exit status and output tell the story.
        let _ = writer.join();
        let [stdout, stderr] = outputs;
        let status_text = match (
            status.code(),
            std::os::unix::process::ExitStatusExt::signal(&status),
        ) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(sig)) => format!("signal {sig}"),
            _ => status.to_string(),
        };
        Ok(ExecOutput {
            success: status.success(),
            status: status_text,
            stdout,
            stderr,
        })
    }
}

fn spawn_reader(
    mut pipe: impl Read + Send + 'static,
    index: usize,
    tx: mpsc::Sender<(usize, Vec<u8>)>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        let _ = tx.send((index, buf));
    })
}

fn kill(child: &mut Child, timeout: Duration) -> ExecFailure {
    let _ = child.kill();
    let _ = child.wait();
    ExecFailure::TimedOut(timeout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn request(path: PathBuf, stdin: &str) -> ExecRequest {
        let env = vec![
            ("CNI_COMMAND".into(), "ADD".into()),
            ("CNI_IFNAME".into(), "eth0".into()),
        ];
        ExecRequest {
            path,
            command: Command::Add,
            env,
            stdin: stdin.as_bytes().to_vec(),
        }
    }

    #[test]
    fn passes_env_and_stdin_and_collects_output() {
        let dir = tempfile::tempdir().unwrap();
        let path = script(
            dir.path(),
            "echo",
            "cat; printf \" $CNI_COMMAND $CNI_IFNAME\"; echo log >&2; exit 3",
        );
        let out = ProcessExec::default()
            .exec(&request(path, "{\"a\":1}"))
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "{\"a\":1} ADD eth0");
        assert_eq!(out.stderr, b"log\n");
        assert!(!out.success);
        assert_eq!(out.status, "exit status 3");
    }

    #[test]
    fn kills_plugins_that_hang() {
        let dir = tempfile::tempdir().unwrap();
        let path = script(dir.path(), "hang", "exec sleep 30");
        let result = ProcessExec::new(Duration::from_millis(200)).exec(&request(path, "{}"));
        assert!(matches!(result, Err(ExecFailure::TimedOut(_))));
    }

    #[test]
    fn finds_plugins_in_search_order_and_skips_non_executables() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        std::fs::write(first.path().join("bridge"), "not executable").unwrap();
        let real = script(second.path(), "bridge", "exit 0");
        let search = vec![
            PathBuf::from("/nonexistent"),
            first.path().to_path_buf(),
            second.path().to_path_buf(),
        ];
        assert_eq!(
            ProcessExec::default().find_plugin("bridge", &search),
            Some(real)
        );
        assert_eq!(ProcessExec::default().find_plugin("portmap", &search), None);
        assert_eq!(
            parse_cni_path("/a::/b:"),
            vec![PathBuf::from("/a"), PathBuf::from("/b")]
        );
    }
}
