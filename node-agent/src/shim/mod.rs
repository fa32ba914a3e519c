//! The container shim: one small process per container, between the agent and the
//! container, so that containers outlive the agent and their exit codes are never lost.
//!
//! The agent starts `coxswain-shim` (or any binary calling [`main`]) in its own process
//! group. The shim
//! 1. becomes a child subreaper, so the container's init is re-parented to it once
//!    `runc create` exits and the shim can `waitpid` it for the real exit status;
//! 2. runs `<runtime> create` with the container's stdout/stderr on two pipes, and
//!    copies them to the log file in the CRI format ([`crate::logs`]);
//! 3. prints `ok <pid>` (or `error <message>`) on its stdout, which the agent reads,
//!    then points its stdout at /dev/null;
//! 4. waits for the container's init and writes `<bundle>/exit` (JSON: code, signal,
//!    finish time in nanoseconds), after the logs are flushed, then exits.

mod exit_file;
pub mod log_copy;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

pub use exit_file::{read_exit, write_exit};

use nix::sys::wait::{WaitStatus, waitpid};

/// What the shim is told on its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimArgs {
    /// The runtime binary (runc or crun).
    pub runtime: PathBuf,
    /// The runtime's `--root`.
    pub root: PathBuf,
    /// The container id.
    pub id: String,
    /// The bundle directory.
    pub bundle: PathBuf,
    /// The CRI log file.
    pub log: PathBuf,
    /// Rotate the log file past this many bytes.
    pub max_log_bytes: u64,
}

impl ShimArgs {
    /// The command-line form, parsed back by [`ShimArgs::parse`].
    pub fn to_args(&self) -> Vec<String> {
        [&self.runtime, &self.root]
            .iter()
            .map(|p| p.display().to_string())
            .chain([
                self.id.clone(),
                self.bundle.display().to_string(),
                self.log.display().to_string(),
                self.max_log_bytes.to_string(),
            ])
            .collect()
    }

    /// Parses `runtime root id bundle log [max-log-bytes]`.
    pub fn parse(args: &[String]) -> Option<Self> {
        let (runtime, root, id, bundle, log, max) = match args {
            [runtime, root, id, bundle, log] => (runtime, root, id, bundle, log, None),
            [runtime, root, id, bundle, log, max] => {
                (runtime, root, id, bundle, log, Some(max.parse().ok()?))
            }
            _ => return None,
        };
        Some(Self {
            runtime: runtime.into(),
            root: root.into(),
            id: id.clone(),
            bundle: bundle.into(),
            log: log.into(),
            max_log_bytes: max.unwrap_or(log_copy::MAX_LOG_BYTES),
        })
    }
}

/// Runs the shim with `args` (without the program name); returns the exit code.
pub fn main(args: &[String]) -> i32 {
    let Some(args) = ShimArgs::parse(args) else {
        eprintln!("usage: coxswain-shim RUNTIME ROOT ID BUNDLE LOG [MAX_LOG_BYTES]");
        return 2;
    };
    match run(&args) {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("coxswain-shim {}: {message}", args.id);
            1
        }
    }
}

fn report(line: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn run(args: &ShimArgs) -> Result<(), String> {
    nix::sys::prctl::set_child_subreaper(true).map_err(|e| format!("set child subreaper: {e}"))?;
    let (out_r, out_w) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let (err_r, err_w) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let runtime_log = args.bundle.join("runtime.log");
    let pid_file = args.bundle.join("pid");
    let mut create = Command::new(&args.runtime);
    create
        .arg("--root")
        .arg(&args.root)
        .arg(format!("--log={}", runtime_log.display()))
        .args(["create", "--bundle"])
        .arg(&args.bundle)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(&args.id)
        .stdin(Stdio::null())
        .stdout(out_w)
        .stderr(err_w);
    let child = create.spawn();
    drop(create); // closes our copies of the pipes' write ends
    let mut child = child.map_err(|e| {
        let msg = format!("{}: {e}", args.runtime.display());
        report(&format!("error {msg}"));
        msg
    })?;
    let copier =
        log_copy::LogCopier::start(&args.log, args.max_log_bytes, out_r, err_r).map_err(|e| {
            report(&format!("error log {}: {e}", args.log.display()));
            e.to_string()
        })?;
    let status = child.wait().map_err(|e| format!("wait for runtime: {e}"))?;
    if !status.success() {
        let detail = std::fs::read_to_string(&runtime_log).unwrap_or_default();
        let detail = detail
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_string();
        let msg = format!(
            "{} create: {status}: {}",
            args.runtime.display(),
            detail.trim()
        );
        report(&format!("error {msg}"));
        copier.finish(Duration::from_millis(200));
        return Err(msg);
    }
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| format!("{}: no pid", pid_file.display()))?;
    report(&format!("ok {pid}"));
    if let Ok(null) = std::fs::File::options().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(&null);
    }
    let (code, signal) = wait_for(pid);
    copier.finish(Duration::from_secs(2));
    write_exit(&args.bundle, code, signal, SystemTime::now()).map_err(|e| e.to_string())
}

/// Waits for `pid` (re-parented to us) and returns (code, signal); reaps other orphans.
fn wait_for(pid: i32) -> (i32, Option<i32>) {
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => return (code, None),
            Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == pid => {
                return (128 + sig as i32, Some(sig as i32));
            }
            Ok(_) | Err(nix::Error::EINTR) => continue,
            Err(_) => {
                // Not our child (no subreaper support): poll until it is gone.
                while std::path::Path::new(&format!("/proc/{pid}")).exists() {
                    std::thread::sleep(Duration::from_millis(50));
                }
                return (255, None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shim_args_round_trip() {
        let args = ShimArgs {
            runtime: "/usr/sbin/runc".into(),
            root: "/r".into(),
            id: "u_c".into(),
            bundle: "/b".into(),
            log: "/l/0.log".into(),
            max_log_bytes: 1234,
        };
        assert_eq!(ShimArgs::parse(&args.to_args()), Some(args));
        assert_eq!(ShimArgs::parse(&["a".into()]), None);
    }
}
