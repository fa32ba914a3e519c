//! A scripted fake of the plugin binaries, for unit tests here and in the
//! node agent: plugins "exist" by name, answer VERSION with the versions they
//! are given, and answer every other command from a script; every call is
//! recorded (command, env, stdin) so tests can assert on order and content.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::exec::{Command, ExecFailure, ExecOutput, ExecRequest, PluginExec};

/// The directory the fake's plugins live in (put it in the search path).
pub const FAKE_PLUGIN_DIR: &str = "/fake/cni/bin";

/// How a fake plugin answers one command.
#[derive(Clone)]
pub enum Reply {
    /// ADD: the `prevResult` (or an empty result) with one interface named
    /// after the plugin appended; other commands: empty success.
    Default,
    /// Print this JSON and exit 0.
    Json(Value),
    /// Print a CNI error object and exit 1.
    Error {
        /// Error code.
        code: u32,
        /// Message.
        msg: String,
    },
    /// Print this text on stderr (nothing on stdout) and exit 2.
    Crash(String),
    /// Exit 0 with this (possibly broken) stdout.
    Raw(String),
    /// Compute the reply from the request.
    With(Arc<dyn Fn(&ExecRequest) -> Reply + Send + Sync>),
}

/// One recorded call.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedCall {
    /// The plugin's binary name.
    pub plugin: String,
    /// The command.
    pub command: Command,
    /// The CNI_* environment.
    pub env: Vec<(String, String)>,
    /// The stdin document.
    pub stdin: Value,
}

struct FakePlugin {
    versions: Vec<String>,
    replies: HashMap<Command, Reply>,
}

/// A [`PluginExec`] that runs no processes.
#[derive(Default)]
pub struct ScriptedExec {
    plugins: Mutex<HashMap<String, FakePlugin>>,
    calls: Mutex<Vec<RecordedCall>>,
}

impl ScriptedExec {
    /// An empty fake (no plugins exist).
    pub fn new() -> Self {
        ScriptedExec::default()
    }

    /// Adds a plugin speaking 0.3.0 to 1.0.0 that answers with [`Reply::Default`].
    pub fn with_plugin(self, name: &str) -> Self {
        self.with_versioned_plugin(name, &["0.3.0", "0.3.1", "0.4.0", "1.0.0"])
    }

    /// Adds a plugin advertising exactly `versions`.
    pub fn with_versioned_plugin(self, name: &str, versions: &[&str]) -> Self {
        let plugin = FakePlugin {
            versions: versions.iter().map(|v| v.to_string()).collect(),
            replies: HashMap::new(),
        };
        self.plugins
            .lock()
            .expect("fake lock")
            .insert(name.to_string(), plugin);
        self
    }

    /// Scripts `plugin`'s answer to `command`.
    pub fn reply(&self, plugin: &str, command: Command, reply: Reply) {
        let mut plugins = self.plugins.lock().expect("fake lock");
        let entry = plugins
            .get_mut(plugin)
            .unwrap_or_else(|| panic!("fake plugin {plugin} not registered"));
        entry.replies.insert(command, reply);
    }

    /// Every call so far, VERSION included.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.calls.lock().expect("fake lock").clone()
    }

    /// `(plugin, command)` of every call except VERSION, in order.
    pub fn sequence(&self) -> Vec<(String, Command)> {
        self.calls()
            .into_iter()
            .filter(|c| c.command != Command::Version)
            .map(|c| (c.plugin, c.command))
            .collect()
    }

    /// Forgets recorded calls.
    pub fn clear_calls(&self) {
        self.calls.lock().expect("fake lock").clear();
    }
}

impl PluginExec for ScriptedExec {
    fn exec(&self, request: &ExecRequest) -> Result<ExecOutput, ExecFailure> {
        let name = request
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let stdin: Value = serde_json::from_slice(&request.stdin).unwrap_or(Value::Null);
        self.calls.lock().expect("fake lock").push(RecordedCall {
            plugin: name.clone(),
            command: request.command,
            env: request.env.clone(),
            stdin: stdin.clone(),
        });
        let (versions, reply) = {
            let plugins = self.plugins.lock().expect("fake lock");
            let Some(plugin) = plugins.get(&name) else {
                return Err(ExecFailure::Io(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such fake plugin",
                )));
            };
            (
                plugin.versions.clone(),
                plugin
                    .replies
                    .get(&request.command)
                    .cloned()
                    .unwrap_or(Reply::Default),
            )
        };
        if request.command == Command::Version {
            return Ok(ok(
                json!({"cniVersion": "1.0.0", "supportedVersions": versions}),
            ));
        }
        Ok(answer(&name, request, &stdin, reply))
    }

    fn find_plugin(&self, plugin: &str, search_path: &[PathBuf]) -> Option<PathBuf> {
        let registered = self.plugins.lock().expect("fake lock").contains_key(plugin);
        let dir = Path::new(FAKE_PLUGIN_DIR);
        (registered && search_path.iter().any(|p| p == dir)).then(|| dir.join(plugin))
    }
}

fn answer(name: &str, request: &ExecRequest, stdin: &Value, reply: Reply) -> ExecOutput {
    match reply {
        Reply::Default if request.command == Command::Add => {
            let mut result = stdin
                .get("prevResult")
                .cloned()
                .unwrap_or_else(|| json!({"interfaces": []}));
            result["cniVersion"] = stdin["cniVersion"].clone();
            if let Some(list) = result.get_mut("interfaces").and_then(Value::as_array_mut) {
                list.push(json!({"name": name}));
            } else {
                result["interfaces"] = json!([{"name": name}]);
            }
            ok(result)
        }
        Reply::Default => ExecOutput {
            success: true,
            status: "exit status 0".into(),
            ..Default::default()
        },
        Reply::Json(value) => ok(value),
        Reply::Error { code, msg } => ExecOutput {
            success: false,
            status: "exit status 1".into(),
            stdout: serde_json::to_vec(&json!({"cniVersion": "1.0.0", "code": code, "msg": msg}))
                .unwrap_or_default(),
            stderr: Vec::new(),
        },
        Reply::Crash(text) => ExecOutput {
            success: false,
            status: "exit status 2".into(),
            stdout: Vec::new(),
            stderr: text.into_bytes(),
        },
        Reply::Raw(text) => ExecOutput {
            success: true,
            status: "exit status 0".into(),
            stdout: text.into_bytes(),
            stderr: Vec::new(),
        },
        Reply::With(f) => answer(name, request, stdin, f(request)),
    }
}

fn ok(value: Value) -> ExecOutput {
    ExecOutput {
        success: true,
        status: "exit status 0".into(),
        stdout: serde_json::to_vec(&value).unwrap_or_default(),
        stderr: Vec::new(),
    }
}
