//! One plugin call: the CNI_* environment, the stdin document, and turning
//! what the plugin printed into a result or a typed error.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::attachment::Attachment;
use crate::error::{Error, PluginError, Result};
use crate::exec::{Command, ExecFailure, ExecRequest, PluginExec};
use crate::result::{CniResult, ErrorObject};
use crate::version::PluginVersions;

/// How much of a crashed plugin's stderr is kept in the error.
const STDERR_TAIL: usize = 2048;

/// The CNI_* environment for `command`. VERSION, STATUS and GC carry no
/// attachment; DEL may carry an empty netns (the pod's netns is gone).
pub(crate) fn protocol_env(
    command: Command,
    attachment: Option<&Attachment>,
    search_path: &[PathBuf],
) -> Vec<(String, String)> {
    let mut env = vec![("CNI_COMMAND".to_string(), command.as_str().to_string())];
    if let Some(a) = attachment {
        env.push(("CNI_CONTAINERID".into(), a.container_id.clone()));
        env.push(("CNI_NETNS".into(), a.netns.display().to_string()));
        env.push(("CNI_IFNAME".into(), a.ifname.clone()));
        env.push(("CNI_ARGS".into(), a.cni_args()));
    }
    let joined: Vec<String> = search_path
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    env.push(("CNI_PATH".into(), joined.join(":")));
    env
}

/// One call to run: who, what, and the stdin document.
pub(crate) struct Call<'a> {
    /// The plugin's `type`.
    pub plugin: &'a str,
    /// The network it belongs to (for error messages).
    pub network: &'a str,
    /// The resolved binary.
    pub path: &'a Path,
    /// The command.
    pub command: Command,
    /// The CNI_* environment.
    pub env: Vec<(String, String)>,
    /// The stdin document.
    pub stdin: Map<String, Value>,
}

/// Runs a call and returns the plugin's stdout on success.
pub(crate) fn run(exec: &dyn PluginExec, call: Call<'_>) -> Result<Vec<u8>> {
    let stdin =
        serde_json::to_vec(&Value::Object(call.stdin)).expect("a JSON map always serializes");
    let request = ExecRequest {
        path: call.path.to_path_buf(),
        command: call.command,
        env: call.env,
        stdin,
    };
    tracing::debug!(plugin = call.plugin, command = %call.command, network = call.network, "running CNI plugin");
    let output = exec.exec(&request).map_err(|failure| match failure {
        ExecFailure::Io(source) => Error::Spawn {
            plugin: call.plugin.into(),
            path: call.path.to_path_buf(),
            source,
        },
        ExecFailure::TimedOut(timeout) => Error::Timeout {
            plugin: call.plugin.into(),
            command: call.command,
            timeout,
        },
    })?;
    if output.success {
        return Ok(output.stdout);
    }
    if let Some(obj) = ErrorObject::parse(&output.stdout) {
        return Err(Error::Plugin(Box::new(PluginError {
            plugin: call.plugin.into(),
            network: call.network.into(),
            command: call.command,
            code: obj.code,
            msg: obj.msg,
            details: obj.details,
        })));
    }
    let text = if output.stderr.iter().any(|b| !b.is_ascii_whitespace()) {
        &output.stderr
    } else {
        &output.stdout
    };
    let text = String::from_utf8_lossy(text);
    let trimmed = text.trim();
    let tail_start = trimmed.len().saturating_sub(STDERR_TAIL);
    let tail_start = (tail_start..=trimmed.len())
        .find(|i| trimmed.is_char_boundary(*i))
        .unwrap_or(0);
    Err(Error::PluginCrashed {
        plugin: call.plugin.into(),
        command: call.command,
        status: output.status,
        stderr: trimmed[tail_start..].to_string(),
    })
}

/// Parses an ADD (or CHECK-with-output) stdout into raw JSON plus its typed view.
pub(crate) fn parse_result(
    plugin: &str,
    command: Command,
    stdout: &[u8],
) -> Result<(Value, CniResult)> {
    let invalid = |reason: String| Error::InvalidResult {
        plugin: plugin.into(),
        command,
        reason,
    };
    if stdout.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid("empty output (ADD must print a result)".into()));
    }
    let raw: Value =
        serde_json::from_slice(stdout).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let typed = CniResult::from_value(&raw).map_err(invalid)?;
    Ok((raw, typed))
}

/// Asks a plugin which versions it speaks.
pub(crate) fn query_versions(
    exec: &dyn PluginExec,
    plugin: &str,
    network: &str,
    path: &Path,
    search_path: &[PathBuf],
) -> Result<PluginVersions> {
    let mut stdin = Map::new();
    stdin.insert("cniVersion".into(), Value::String("1.0.0".into()));
    let call = Call {
        plugin,
        network,
        path,
        command: Command::Version,
        env: protocol_env(Command::Version, None, search_path),
        stdin,
    };
    let stdout = run(exec, call)?;
    serde_json::from_slice(&stdout).map_err(|e| Error::InvalidResult {
        plugin: plugin.into(),
        command: Command::Version,
        reason: format!("not a version answer: {e}"),
    })
}
